using System.Diagnostics;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Sampling.Samplers;
using DiffusionCore.Training;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Metrics;
using DiffusionCore.Training.Plotting;
using DiffusionCore.Cli.Commands;

namespace DiffusionCore.Cli.Runs;

/// <summary>What `train` shows at the end of a run, and the pictures `sample` writes.</summary>
internal static class Evaluate
{
    /// <summary>Switches to the EMA weights (what is sampled) and reports on the trained model.</summary>
    public static int AfterTraining(RunModel run, Trainer trainer, string outDir, CancellationToken cancel)
    {
        trainer.Ema?.CopyTo(run.Network.Parameters());
        run.Network.SetTraining(false);
        var g = new Generator(run.Config.Seed).Split(4);
        switch (run.Network)
        {
            case CnfDynamics dynamics:
                FlowReport(dynamics, run.Config, outDir, g);
                break;
            case NoisyClassifier classifier:
                ClassifierReport(run, classifier, g);
                break;
            default:
                if (run.Config.IsToy) ToyReport(run, run.ScoreModel, SamplerChoice.Default(run), 2000, g, outDir, cancel);
                else
                {
                    string sampler = run.Schedule is not null ? "ddim" : run.Sigmas is not null ? "als" : "ode-heun";
                    int steps = sampler == "als" ? 20 : 50;
                    var path = Path.Combine(outDir, "samples.png");
                    ImageSamples(run, run.ScoreModel, sampler, steps, 36, g, null, path, cancel);
                }
                break;
        }
        return 0;
    }

    /// <summary>Samples images and writes a grid; returns the samples' description.</summary>
    public static string ImageSamples(RunModel run, ScoreModel model, string sampler, int steps, int count, Generator g, int[]? labels, string path, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        int size = run.Config.IsImage ? Mnist.PaddedSize : 0;
        var bar = new ConsoleProgress("sample", SamplerChoice.Expected(sampler, steps, run));
        var (x, description) = SamplerChoice.Sample(run, model, sampler, [count, 1, size, size], steps, 0.0, g, labels,
            new SyncProgress<int>(i => bar.Update(i)), cancel);
        int cols = (int)Math.Ceiling(Math.Sqrt(count));
        int rows = (count + cols - 1) / cols;
        ImageGrid.Save(path, x.ToArray(), count, 1, size, size, rows, cols, scale: 2);
        Console.WriteLine($"sampled {count} images with {description} in {clock.Elapsed.TotalSeconds:F1} s; wrote {path}");
        return description;
    }

    /// <summary>
    /// 2-D: samples, a scatter next to fresh data, the energy distance against fresh data with its floor (another
    /// data draw) and the N(0, I) prior's level, and a plot of probability-flow trajectories where the model has
    /// a continuous SDE.
    /// </summary>
    public static void ToyReport(RunModel run, ScoreModel model, string sampler, int count, Generator g, string outDir, CancellationToken cancel,
        int? steps = null, string? scatterPath = null)
    {
        var kind = Toy2d.Parse(run.Config.Data);
        int n = steps ?? SamplerChoice.DefaultSteps(sampler, run);
        var clock = Stopwatch.StartNew();
        var bar = new ConsoleProgress("sample", SamplerChoice.Expected(sampler, n, run));
        var (x, description) = SamplerChoice.Sample(run, model, sampler, [count, 2], n, 0.0, g, null, new SyncProgress<int>(i => bar.Update(i)), cancel);
        var samples = x.ToArray();
        Console.WriteLine($"sampled {count} points with {description} in {clock.Elapsed.TotalSeconds:F1} s");
        ReportToySamples(kind, samples, run.Config.Seed, outDir, scatterPath, description);
        if (run.ContinuousSde is { } sde)
        {
            string trajectories = Path.Combine(outDir, "trajectories.png");
            SaveTrajectories(trajectories, model, sde, kind, g.Split(9));
            Console.WriteLine($"wrote {trajectories} (probability-flow ODE paths from the prior to the data)");
        }
    }

    /// <summary>Energy distances and the scatter plot of 2-D samples.</summary>
    public static void ReportToySamples(Toy2dKind kind, float[] samples, ulong seed, string outDir, string? scatterPath, string title)
    {
        int count = samples.Length / 2;
        var root = new Generator(seed);
        var reference = Toy2d.Sample(kind, count, root.Split(5).Seed);
        var fresh = Toy2d.Sample(kind, count, root.Split(6).Seed);
        double energy = SampleDistance.EnergyDistance(samples, reference, 2);
        double floor = SampleDistance.EnergyDistance(fresh, reference, 2);
        double prior = SampleDistance.EnergyDistance(new Generator(root.Split(7).Seed).NormalHost(count * 2), reference, 2);
        Console.WriteLine("energy distance to a fresh data draw (lower is better):");
        Console.WriteLine($"  model samples      {energy:F4}");
        Console.WriteLine($"  another data draw  {floor:F4}   (the floor: sampling noise alone)");
        Console.WriteLine($"  standard normal    {prior:F4}   (the prior, an untrained model's level)");
        string path = scatterPath ?? Path.Combine(outDir, "samples.png");
        var palette = Rgb.Palette;
        ScatterPlot.Save(path,
        [
            new ScatterPanel($"data: {Toy2d.Name(kind)}", [new ScatterSeries(reference, palette[0])]),
            new ScatterPanel(title.Length > 40 ? title[..40] : title, [new ScatterSeries(samples, palette[1])]),
        ]);
        Console.WriteLine($"wrote {path}");
    }

    /// <summary>64 probability-flow ODE paths from the prior (t = T) to the data (t = 1e-3), drawn over the data.</summary>
    public static void SaveTrajectories(string path, ScoreModel model, Sde sde, Toy2dKind kind, Generator g)
    {
        const int paths = 64;
        var points = new List<float[]>();
        var x0 = sde.SamplePrior([paths, 2], g);
        var first = x0.ToArray();
        points.Add(first);
        ProbabilityFlow.Integrate(model, sde, x0, sde.T, 1e-3, OdeSolverOptions.Fixed(OdeMethod.Heun, 100), onStep: (_, y) => points.Add(y[0].ToArray()));
        var data = Toy2d.Sample(kind, 2000, g.Seed);
        var canvas = new Canvas(480, 480, new Rgb(255, 255, 255));
        double lo = -4, hi = 4;
        int Px(double v) => (int)Math.Round((v - lo) / (hi - lo) * (canvas.Width - 1));
        int Py(double v) => (int)Math.Round((hi - v) / (hi - lo) * (canvas.Height - 1));
        for (int i = 0; i < data.Length / 2; i++) canvas.DrawPoint(Px(data[2 * i]), Py(data[2 * i + 1]), 1.5f, new Rgb(200, 200, 200));
        var palette = Rgb.Palette;
        for (int p = 0; p < paths; p++)
        {
            var color = palette[p % palette.Count];
            for (int s = 1; s < points.Count; s++)
                canvas.DrawLine(Px(points[s - 1][2 * p]), Py(points[s - 1][2 * p + 1]), Px(points[s][2 * p]), Py(points[s][2 * p + 1]), color);
            canvas.DrawPoint(Px(points[^1][2 * p]), Py(points[^1][2 * p + 1]), 2.5f, new Rgb(0, 0, 0));
        }
        canvas.DrawText(6, 6, $"probability-flow paths ({sde.Name}), prior to data", new Rgb(0, 0, 0));
        canvas.SavePng(path);
    }

    /// <summary>
    /// A CNF: held-out NLL (exact divergence) against the best Gaussian fitted to data (the level an identity-like
    /// flow reaches), samples next to data, and the learned density on a grid.
    /// </summary>
    public static void FlowReport(CnfDynamics dynamics, RunConfig config, string outDir, Generator g)
    {
        var kind = Toy2d.Parse(config.Data);
        var flow = new ContinuousFlow(dynamics, new FlowOptions { Divergence = DivergenceMethod.Exact });
        var heldOut = Toy2d.Sample(kind, 2000, g.Split(1).Seed);
        var clock = Stopwatch.StartNew();
        var logp = flow.LogLikelihood(Tensor.FromArray(heldOut, 2000, 2), g).ToDoubleArray();
        double nll = -logp.Average();
        double gaussian = GaussianFitNll(Toy2d.Sample(kind, 20000, g.Split(2).Seed), heldOut);
        Console.WriteLine($"held-out NLL (2000 fresh points, exact divergence, RK45): {nll:F3} nats; the best Gaussian: {gaussian:F3} nats ({clock.Elapsed.TotalSeconds:F1} s, {flow.LastStatistics?.FunctionEvaluations} NFE)");
        var samples = flow.Sample(2000, g.Split(3)).ToArray();
        ReportToySamples(kind, samples, config.Seed, outDir, null, "CNF samples");
        string density = Path.Combine(outDir, "density.png");
        SaveDensity(density, flow, g.Split(4));
        Console.WriteLine($"wrote {density}");
    }

    /// <summary>NLL of <paramref name="test"/> under the Gaussian with the mean and covariance of <paramref name="fit"/>.</summary>
    public static double GaussianFitNll(float[] fit, float[] test)
    {
        int n = fit.Length / 2;
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) { mx += fit[2 * i]; my += fit[2 * i + 1]; }
        mx /= n; my /= n;
        double sxx = 0, syy = 0, sxy = 0;
        for (int i = 0; i < n; i++)
        {
            double dx = fit[2 * i] - mx, dy = fit[2 * i + 1] - my;
            sxx += dx * dx; syy += dy * dy; sxy += dx * dy;
        }
        sxx /= n; syy /= n; sxy /= n;
        double det = sxx * syy - sxy * sxy;
        double total = 0;
        int m = test.Length / 2;
        for (int i = 0; i < m; i++)
        {
            double dx = test[2 * i] - mx, dy = test[2 * i + 1] - my;
            double q = (syy * dx * dx - 2 * sxy * dx * dy + sxx * dy * dy) / det;
            total += 0.5 * q + Math.Log(2 * Math.PI) + 0.5 * Math.Log(det);
        }
        return total / m;
    }

    /// <summary>The learned density exp(log p) on a 64 x 64 grid over [-4, 4]^2, brighter = denser.</summary>
    public static void SaveDensity(string path, ContinuousFlow flow, Generator g)
    {
        const int n = 64;
        var grid = new float[n * n * 2];
        for (int r = 0; r < n; r++)
            for (int c = 0; c < n; c++)
            {
                grid[2 * (r * n + c)] = (float)(-4 + 8.0 * (c + 0.5) / n);
                grid[2 * (r * n + c) + 1] = (float)(4 - 8.0 * (r + 0.5) / n);
            }
        var logp = flow.LogLikelihood(Tensor.FromArray(grid, n * n, 2), g).ToDoubleArray();
        double max = logp.Max();
        var image = logp.Select(v => (float)(2 * Math.Exp(v - max) - 1)).ToArray();
        ImageGrid.Save(path, image, 1, 1, n, n, 1, 1, scale: 6);
    }

    /// <summary>Accuracy of a noisy classifier on the MNIST test split at a few noise levels.</summary>
    public static void ClassifierReport(RunModel run, NoisyClassifier classifier, Generator g)
    {
        using var noGrad = Autograd.NoGrad();
        var test = Training.Data.Mnist.LoadBundled(MnistSplit.Test);
        var schedule = run.Schedule!;
        foreach (int t in new[] { 0, schedule.Steps / 4, schedule.Steps / 2 })
        {
            using var scope = TensorScope.Begin();
            int correct = 0, total = 0;
            for (int start = 0; start < test.Count; start += 100)
            {
                int b = Math.Min(100, test.Count - start);
                var x0 = Ops.Slice(test.Images, 0, start, b);
                var eps = g.Normal(x0.Shape);
                var level = schedule.Level(t);
                var xt = Ops.Add(Ops.Scale(x0, level.Alpha), Ops.Scale(eps, level.Sigma));
                var logits = classifier.Forward(xt, Tensor.Full([b], t)).ToArray();
                for (int i = 0; i < b; i++)
                {
                    int best = 0;
                    for (int k = 1; k < Training.Data.Mnist.Classes; k++)
                        if (logits[i * Training.Data.Mnist.Classes + k] > logits[i * Training.Data.Mnist.Classes + best]) best = k;
                    if (best == test.Labels[start + i]) correct++;
                    total++;
                }
            }
            Console.WriteLine($"test accuracy at DDPM step t = {t}: {100.0 * correct / total:F1}%");
        }
    }
}
