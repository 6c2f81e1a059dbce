using System.Diagnostics;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion likelihood`: log p(x) and bits/dim through the probability-flow ODE (or a CNF).</summary>
internal static class LikelihoodCommand
{
    public const string Usage = """
  likelihood  log-likelihood of held-out data through the probability-flow ODE (RK45) or the CNF
           --checkpoint FILE  --data mnist-test|NAME (2-D: fresh draws)  --count N (64 images, 1000 points)
           --probes K (1; Hutchinson)  --exact (exact divergence; default for 2-D)  --rtol X --atol X (1e-5)  --seed N
""";

    public static int Run(Arguments args, CancellationToken cancel)
    {
        string checkpoint = args.OptionalString("checkpoint") ?? throw new UsageException("likelihood needs --checkpoint FILE");
        var run = LoadedRun.Open(checkpoint);
        string data = args.String("data", run.Config.IsImage ? "mnist-test" : run.Config.Data);
        int count = args.Int("count", run.Config.IsImage ? 64 : 1000, 1, 1 << 20);
        int probes = args.Int("probes", 1, 1, 10000);
        bool exact = args.Flag("exact") || !run.Config.IsImage;
        double rtol = args.Double("rtol", 1e-5, 1e-12, 1), atol = args.Double("atol", 1e-5, 1e-12, 1);
        var g = new Generator((ulong)args.Int("seed", 0, 0)).Split(21);
        args.RejectUnknown("likelihood");
        var method = exact ? DivergenceMethod.Exact : DivergenceMethod.HutchinsonRademacher;
        var clock = Stopwatch.StartNew();

        if (run.Network is CnfDynamics dynamics)
        {
            var x = ToyData(data, count, g);
            var flow = new ContinuousFlow(dynamics, new FlowOptions { Divergence = method, RelativeTolerance = rtol, AbsoluteTolerance = atol });
            var logp = flow.LogLikelihood(x, g).ToDoubleArray();
            Console.WriteLine($"NLL {-logp.Average():F4} nats over {count} points of {data} ({flow.LastStatistics?.FunctionEvaluations} NFE, {clock.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }

        var sde = run.ContinuousSde ?? throw new UsageException($"likelihoods need a continuous SDE; a {run.Config.Objective} model with a {run.Config.Schedule} schedule of {run.Config.Timesteps} steps has none (train with --objective vp/subvp/ve, or ddpm with the linear 1000-step schedule)");
        var options = new LikelihoodOptions { Divergence = method, Probes = probes, RelativeTolerance = rtol, AbsoluteTolerance = atol };
        if (!run.Config.IsImage)
        {
            var x = ToyData(data, count, g);
            var r = ProbabilityFlowLikelihood.LogLikelihood(run.ScoreModel, sde, x, g, options, cancellationToken: cancel);
            Console.WriteLine($"NLL {-r.LogLikelihood.Average():F4} nats over {count} points of {data} ({sde.Name} probability-flow ODE, {(exact ? "exact divergence" : $"{probes} Hutchinson probes")}, {r.FunctionEvaluations} NFE, {clock.Elapsed.TotalSeconds:F1} s)");
            return 0;
        }

        if (data is not ("mnist-test" or "mnist-train")) throw new UsageException($"--data for an image model must be mnist-test or mnist-train, got '{data}'");
        using var set = Mnist.LoadBundled(data == "mnist-test" ? MnistSplit.Test : MnistSplit.Train);
        count = Math.Min(count, set.Count);
        const int batch = 16;
        var bits = new List<double>();
        var errors = new List<double>();
        long nfe = 0;
        var bar = new ConsoleProgress("likelihood", count);
        long dims = set.Images.Count / set.Count;
        for (int start = 0; start < count; start += batch)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = TensorScope.Begin();
            int b = Math.Min(batch, count - start);
            var x = ProbabilityFlowLikelihood.Dequantize(Ops.Slice(set.Images, 0, start, b), g);
            var r = ProbabilityFlowLikelihood.LogLikelihood(run.ScoreModel, sde, x, g, options, cancellationToken: cancel);
            nfe += r.FunctionEvaluations;
            bits.AddRange(r.LogLikelihood.Select(l => ProbabilityFlowLikelihood.BitsPerDim(l, dims)));
            errors.AddRange(r.StandardError.Select(e => e / (dims * Math.Log(2))));
            bar.Update(start + b, $"{bits.Average():F3} bits/dim");
        }
        double mean = bits.Average();
        double spread = Math.Sqrt(bits.Select(v => (v - mean) * (v - mean)).Sum() / Math.Max(1, bits.Count - 1) / bits.Count);
        Console.WriteLine($"{data}: {mean:F3} bits/dim over {count} images (+- {spread:F3} standard error over images{(probes > 1 ? $", mean probe standard error {errors.Average():F4}" : "")}); " +
            $"{sde.Name} probability-flow ODE, RK45 rtol {rtol} atol {atol}, {(exact ? "exact divergence" : $"{probes} Hutchinson probe(s)")}, uniform dequantisation; " +
            $"{nfe} NFE, {clock.Elapsed.TotalSeconds / count:F2} s per image");
        return 0;
    }

    private static Tensor ToyData(string name, int count, Generator g)
    {
        Toy2dKind kind;
        try { kind = Toy2d.Parse(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return Tensor.FromArray(Toy2d.Sample(kind, count, g.Split(1).Seed), count, 2);
    }
}
