using System.CommandLine;
using System.Diagnostics;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion likelihood`: log p(x) and bits/dim through the probability-flow ODE (or a CNF).</summary>
internal sealed class LikelihoodCommand : ICliCommand
{
    private const int ImageBatch = 16;

    private readonly Option<string?> _checkpoint = CliOptions.Text("--checkpoint", "the checkpoint (written by `diffusion train`)", "FILE");
    private readonly Option<string?> _data = CliOptions.Text("--data", "held-out data: mnist-test or mnist-train for image models (default mnist-test); a 2-D model draws fresh points of its own set", "NAME");
    private readonly Option<int?> _count = CliOptions.Int("--count", "data points (default 64 images, 1000 points)", 1, 1 << 20);
    private readonly Option<int?> _probes = CliOptions.Int("--probes", "Hutchinson probes per point (default 1; not with --exact)", 1, 10_000);
    private readonly Option<bool> _exact = CliOptions.Flag("--exact", "the exact divergence (d backward passes per step; the default for 2-D)");
    private readonly Option<double?> _rtol = CliOptions.Double("--rtol", "RK45 relative tolerance", 1e-12, 1, 1e-5);
    private readonly Option<double?> _atol = CliOptions.Double("--atol", "RK45 absolute tolerance", 1e-12, 1, 1e-5);
    private readonly Option<ulong> _seed = CliOptions.Seed();
    private readonly Option<string> _device = DeviceOption.Create();

    public int Order => 3;

    public Command Build(CliContext context)
    {
        var command = new Command("likelihood", "log-likelihood of held-out data through the probability-flow ODE (RK45) or the CNF, in nats or bits/dim")
        {
            _checkpoint, _data, _count, _probes, _exact, _rtol, _atol, _seed, _device,
        };
        _checkpoint.Required = true;
        command.SetAction(result => Run(result, context.Cancel));
        return command;
    }

    private int Run(ParseResult result, CancellationToken cancel)
    {
        var device = DeviceOption.Resolve(result.GetValue(_device)!);
        using var onDevice = DeviceOption.Use(device);
        var model = CheckpointFiles.LoadModel(result.GetValue(_checkpoint)!, "--checkpoint", device);
        bool image = model.Config.IsImage;
        string data = result.GetValue(_data) ?? (image ? "mnist-test" : model.Config.Data);
        int count = result.GetValue(_count) ?? (image ? 64 : 1000);
        bool exact = result.GetValue(_exact) || !image;
        if (result.Given(_probes) && exact)
            throw new UsageException(image ? "--probes sets the Hutchinson estimator; --exact computes the divergence exactly and takes none" : "--probes does not apply to a 2-D model, whose divergence is computed exactly");
        int probes = result.GetValue(_probes) ?? 1;
        double rtol = result.GetValue(_rtol)!.Value, atol = result.GetValue(_atol)!.Value;
        if (image && data is not ("mnist-test" or "mnist-train")) throw new UsageException($"--data for an image model must be mnist-test or mnist-train, got '{data}'");
        if (!image && data != model.Config.Data) ToyKind(data);
        var g = new Generator(result.GetValue(_seed)).Split(21);
        var method = exact ? DivergenceMethod.Exact : DivergenceMethod.HutchinsonRademacher;
        var clock = Stopwatch.StartNew();

        if (model.Network is CnfDynamics dynamics)
        {
            var x = ToyData(data, count, g);
            var flow = new ContinuousFlow(dynamics, new FlowOptions { Divergence = method, RelativeTolerance = rtol, AbsoluteTolerance = atol });
            var logp = flow.LogLikelihood(x, g).ToDoubleArray();
            Console.WriteLine($"NLL {-logp.Average():F4} nats over {count} points of {data} ({flow.LastStatistics?.FunctionEvaluations} NFE, {clock.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }

        var sde = model.ContinuousSde ?? throw new UsageException($"likelihoods need a continuous SDE; a {model.Config.Objective.Name} model with a {model.Config.Process.Schedule} schedule of {model.Config.Process.Timesteps} steps has none (train with --objective vp/subvp/ve, or ddpm with the linear 1000-step schedule)");
        var options = new LikelihoodOptions { Divergence = method, Probes = probes, RelativeTolerance = rtol, AbsoluteTolerance = atol };
        if (!image)
        {
            var x = ToyData(data, count, g);
            using var bar = ConsoleProgress.Start("likelihood", 1000, unit: "thousandths of the ODE time");
            var r = ProbabilityFlowLikelihood.LogLikelihood(Tracked(model.ScoreModel, sde, options, (f, _) => bar.Update(Math.Round(1000 * f))), sde, x, g, options, cancellationToken: cancel);
            bar.Update(1000);
            Console.WriteLine($"NLL {-r.LogLikelihood.Average():F4} nats over {count} points of {data} ({sde.Name} probability-flow ODE, {(exact ? "exact divergence" : $"{probes} Hutchinson probes")}, {r.FunctionEvaluations} NFE, {clock.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }

        using var set = Mnist.LoadBundled(CheckpointFiles.Split(data));
        count = Math.Min(count, set.Count);
        var bits = new List<double>();
        var errors = new List<double>();
        long nfe = 0;
        long dims = set.Images.Count / set.Count;
        // Progress in images, advanced within a batch by how far its ODE has integrated (one solve per probe).
        using var progress = ConsoleProgress.Start("likelihood", count, unit: "images");
        for (int start = 0; start < count; start += ImageBatch)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = TensorScope.Begin();
            int b = Math.Min(ImageBatch, count - start);
            int solves = exact ? 1 : probes, batchStart = start;
            var tracked = Tracked(model.ScoreModel, sde, options, (f, solve) => progress.Update(batchStart + b * (solve + f) / solves, bits.Count > 0 ? $"{bits.Average():F3} bits/dim so far" : ""));
            var x = ProbabilityFlowLikelihood.Dequantize(Ops.Slice(set.Images, 0, start, b), g);
            var r = ProbabilityFlowLikelihood.LogLikelihood(tracked, sde, x, g, options, cancellationToken: cancel);
            nfe += r.FunctionEvaluations;
            bits.AddRange(r.LogLikelihood.Select(l => ProbabilityFlowLikelihood.BitsPerDim(l, dims)));
            errors.AddRange(r.StandardError.Select(e => e / (dims * Math.Log(2))));
            progress.Update(start + b, $"{bits.Average():F3} bits/dim so far");
        }
        double mean = bits.Average();
        double spread = Math.Sqrt(bits.Select(v => (v - mean) * (v - mean)).Sum() / Math.Max(1, bits.Count - 1) / bits.Count);
        Console.WriteLine($"{data}: {mean:F3} bits/dim over {count} images (+- {spread:F3} standard error over images{(probes > 1 ? $", mean probe standard error {errors.Average():F4}" : "")}); " +
            $"{sde.Name} probability-flow ODE, RK45 rtol {rtol} atol {atol}, {(exact ? "exact divergence" : $"{probes} Hutchinson probe(s)")}, uniform dequantisation; " +
            $"{nfe} NFE, {clock.Elapsed.TotalSeconds / count:F2} s per image");
        return 0;
    }

    /// <summary>
    /// The score model with a probe on its noise level: each evaluation reports how far the ODE has come from its start
    /// time to T (as a fraction, read off the level's sigma_t, which grows with t) and which solve it is in (a new solve
    /// starts when the time falls back).
    /// </summary>
    private static ScoreModel Tracked(ScoreModel model, Sde sde, LikelihoodOptions options, Action<double, int> report)
    {
        const int grid = 1024;
        var times = Enumerable.Range(0, grid + 1).Select(i => options.StartTime + (sde.T - options.StartTime) * i / grid).ToArray();
        var sigmas = times.Select(t => sde.Level(t).Sigma).ToArray();
        int solve = 0;
        double last = 0;
        return ScoreModel.FromFunction((x, level, labels) =>
        {
            int i = Array.BinarySearch(sigmas, level.Sigma);
            double fraction = (i >= 0 ? i : Math.Clamp(~i, 0, grid)) / (double)grid;
            if (fraction + 0.25 < last) solve++;
            last = fraction;
            report(fraction, solve);
            return model.Output switch
            {
                Parameterisation.Score => model.Score(x, level, labels),
                Parameterisation.X0 => model.X0(x, level, labels),
                _ => model.Epsilon(x, level, labels),
            };
        }, model.Output);
    }

    private static Toy2dKind ToyKind(string name)
    {
        try { return Toy2d.Parse(name); }
        catch (ArgumentException e) { throw new UsageException($"--data: {e.Message}"); }
    }

    private static Tensor ToyData(string name, int count, Generator g) =>
        Tensor.FromArray(Toy2d.Sample(ToyKind(name), count, g.Split(1).Seed), count, 2);
}
