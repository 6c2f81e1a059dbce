using System.Diagnostics;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Pipelines;
using DiffusionCore.Plotting;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Sampling.Samplers;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Metrics;

namespace DiffusionCore.Cli.Runs;

/// <summary>What `train` shows at the end of a run, and the pictures `sample` writes.</summary>
internal static class Evaluate
{
    /// <summary>
    /// Switches to the EMA weights (what is sampled) and reports on the trained model with <paramref name="samples"/>
    /// samples (null: 2000 points or 36 images; 0: no report), writing its pictures to <paramref name="outDir"/>.
    /// </summary>
    public static int AfterTraining(TrainingSession session, string outDir, CancellationToken cancel, int? samples = null)
    {
        var model = session.FinishedModel();
        if (samples == 0) return 0;
        ulong seed = session.Training.Seed;
        var g = new Generator(seed).Split(4);
        switch (model.Network)
        {
            case CnfDynamics dynamics:
                FlowReport(dynamics, model.Config, seed, outDir, g);
                break;
            case NoisyClassifier classifier:
                ClassifierReport(model, classifier, g);
                break;
            default:
                var pipeline = new DiffusionPipeline(model);
                if (!model.Config.IsImage)
                {
                    ToyReport(pipeline, new GenerationOptions { Count = samples ?? 2000, Generator = g }, seed, Path.Combine(outDir, "samples.png"), Path.Combine(outDir, "trajectories.png"), cancel);
                }
                else
                {
                    string sampler = model.Schedule is not null ? "ddim" : model.Sigmas is not null ? "als" : "ode-heun";
                    var options = new GenerationOptions { Count = samples ?? 36, Sampler = sampler, Steps = sampler == "als" ? 20 : 50, Generator = g };
                    ImageSamples(pipeline, options, Path.Combine(outDir, "samples.png"), null, cancel);
                }
                break;
        }
        return 0;
    }

    /// <summary>Draws samples with a progress bar.</summary>
    public static GeneratedSamples Generate(DiffusionPipeline pipeline, GenerationOptions options, CancellationToken cancel)
    {
        using var bar = ConsoleProgress.Start("sample", pipeline.ProgressTotal(options));
        return pipeline.Generate(options, new SyncProgress<int>(i => bar.Update(i)), cancel);
    }

    /// <summary>Samples images and writes a captioned grid to <paramref name="path"/> (and one file per image to <paramref name="imagesDir"/>).</summary>
    public static GeneratedSamples ImageSamples(DiffusionPipeline pipeline, GenerationOptions options, string path, string? imagesDir, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        var samples = Generate(pipeline, options, cancel);
        string title = samples.Labels is null ? $"{samples.Sampler}, {samples.Steps} steps" : $"{samples.Sampler}, {samples.Steps} steps, guidance {options.Guidance ?? 1}, class above each";
        // One row per class when every class is shown, so that the grid reads as a table.
        int? columns = samples.Labels is not null && options.Class is null && pipeline.GuidableClasses is int k and > 0 && samples.Count >= k ? k : null;
        samples.SaveGrid(path, columns, title);
        Console.WriteLine($"sampled {samples.Count} images with {samples.Description} in {clock.Elapsed.TotalSeconds:F1} s; wrote {path}");
        if (imagesDir is not null) Console.WriteLine($"wrote {samples.SaveImages(imagesDir).Count} images to {imagesDir}");
        return samples;
    }

    /// <summary>
    /// 2-D: samples, a scatter next to fresh data, the energy distance against fresh data with its floor (another data
    /// draw) and the N(0, I) prior's level, and, where the model has a continuous SDE and <paramref name="trajectoriesPath"/>
    /// is set, a plot of probability-flow trajectories.
    /// </summary>
    public static void ToyReport(DiffusionPipeline pipeline, GenerationOptions options, ulong seed, string scatterPath, string? trajectoriesPath, CancellationToken cancel)
    {
        var model = pipeline.Model;
        var kind = Toy2d.Parse(model.Config.Data);
        var clock = Stopwatch.StartNew();
        var samples = Generate(pipeline, options, cancel);
        Console.WriteLine($"sampled {samples.Count} points with {samples.Description} in {clock.Elapsed.TotalSeconds:F1} s");
        ReportToySamples(kind, samples.Samples.ToArray(), seed, scatterPath, samples.Description);
        if (trajectoriesPath is not null && model.ContinuousSde is { } sde && model.ScoreNetwork is not null)
        {
            SaveTrajectories(trajectoriesPath, model.ScoreModel, sde, kind, (options.Generator ?? new Generator(options.Seed)).Split(9));
            Console.WriteLine($"wrote {trajectoriesPath} (probability-flow ODE paths from the prior to the data)");
        }
    }

    /// <summary>Energy distances and the scatter plot of 2-D samples.</summary>
    public static void ReportToySamples(Toy2dKind kind, float[] samples, ulong seed, string scatterPath, string title)
    {
        int count = samples.Length / 2;
        var root = new Generator(seed);
        var reference = Toy2d.Sample(kind, count, root.Split(5).Seed);
        var fresh = Toy2d.Sample(kind, count, root.Split(6).Seed);
        var finite = samples.All(float.IsFinite);
        double energy = finite ? SampleDistance.EnergyDistance(samples, reference, 2) : double.NaN;
        double floor = SampleDistance.EnergyDistance(fresh, reference, 2);
        double prior = SampleDistance.EnergyDistance(new Generator(root.Split(7).Seed).NormalHost(count * 2), reference, 2);
        Console.WriteLine("energy distance to a fresh data draw (lower is better):");
        Console.WriteLine($"  model samples      {(finite ? energy.ToString("F4", System.Globalization.CultureInfo.InvariantCulture) : "not finite (some samples are NaN or infinite)")}");
        Console.WriteLine($"  another data draw  {floor:F4}   (the floor: sampling noise alone)");
        Console.WriteLine($"  standard normal    {prior:F4}   (the prior, an untrained model's level)");
        var palette = Rgb.Palette;
        ScatterPlot.Save(scatterPath,
        [
            new ScatterPanel($"data: {Toy2d.Name(kind)}", [new ScatterSeries(reference, palette[0], $"{count} data points")]),
            new ScatterPanel("model samples", [new ScatterSeries(samples, palette[1], title.Length > 44 ? title[..44] : title)]),
        ]);
        Console.WriteLine($"wrote {scatterPath}");
    }

    /// <summary>64 probability-flow ODE paths from the prior (t = T) to the data (t = 1e-3), drawn over the data.</summary>
    public static void SaveTrajectories(string path, ScoreModel model, Sde sde, Toy2dKind kind, Generator g)
    {
        const int paths = 64;
        var frames = new List<float[]>();
        var x0 = sde.SamplePrior([paths, 2], g);
        frames.Add(x0.ToArray());
        ProbabilityFlow.Integrate(model, sde, x0, sde.T, 1e-3, OdeSolverOptions.Fixed(OdeMethod.Heun, 100), onStep: (_, y) => frames.Add(y[0].ToArray()));
        var data = Toy2d.Sample(kind, 2000, g.Seed);
        TrajectoryPlot.Save(path, $"probability-flow ODE paths ({sde.Name})", frames, data, new AxisRange(-4, 4),
            new TrajectoryLabels($"data ({Toy2d.Name(kind)})", "path, one colour each", "start: prior draw (t = T)", "end: sample (t = 0.001)"));
    }

    /// <summary>
    /// A CNF: held-out NLL (exact divergence) against the best Gaussian fitted to data (the level an identity-like
    /// flow reaches), samples next to data, and the learned density on a grid with a colour bar.
    /// </summary>
    public static void FlowReport(CnfDynamics dynamics, ModelConfig config, ulong seed, string outDir, Generator g)
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
        ReportToySamples(kind, samples, seed, Path.Combine(outDir, "samples.png"), "CNF samples");
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

    /// <summary>The learned density p(x) = exp(log p) on a 64 x 64 grid over [-4, 4]^2, with a colour bar.</summary>
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
        var density = flow.LogLikelihood(Tensor.FromArray(grid, n * n, 2), g).ToDoubleArray().Select(Math.Exp).ToArray();
        DensityPlot.Save(path, "learned density p(x) of the CNF", density, n, new AxisRange(-4, 4), "p(x)");
    }

    /// <summary>Accuracy of a noisy classifier on the MNIST test split at a few noise levels.</summary>
    public static void ClassifierReport(DiffusionModel model, NoisyClassifier classifier, Generator g)
    {
        using var noGrad = Autograd.NoGrad();
        using var test = Mnist.LoadBundled(MnistSplit.Test);
        var schedule = model.Schedule!;
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
                    for (int k = 1; k < Mnist.Classes; k++)
                        if (logits[i * Mnist.Classes + k] > logits[i * Mnist.Classes + best]) best = k;
                    if (best == test.Labels[start + i]) correct++;
                    total++;
                }
            }
            Console.WriteLine($"test accuracy at DDPM step t = {t}: {100.0 * correct / total:F1}%");
        }
    }
}

/// <summary>Runs progress callbacks inline (Progress&lt;T&gt; would post them to the thread pool, out of order).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
