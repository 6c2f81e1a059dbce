using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Guidance;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion sample`: any sampler on a trained checkpoint, with classifier or classifier-free guidance.</summary>
internal static class SampleCommand
{
    public const string Usage = """
  sample   draw samples from a checkpoint; images -> a grid PNG, 2-D -> scatter + trajectories PNGs
           --checkpoint FILE  --sampler ddpm|ddim|als|em|pc|ode|ode-heun|ode-rk4|ode-rk45|dpm2m|flow
           --steps N  --count N (64 images, 2000 points)  --eta X (DDIM)  --seed N  --out FILE.png
           --guidance G --class Y (class-conditional model: classifier-free; else --classifier FILE)
""";

    public static int Run(Arguments args, CancellationToken cancel)
    {
        string checkpoint = args.OptionalString("checkpoint") ?? throw new UsageException("sample needs --checkpoint FILE (written by `diffusion train`)");
        string? samplerName = args.OptionalString("sampler");
        int? steps = args.OptionalString("steps") is null ? null : args.Int("steps", 0, 1);
        double eta = args.Double("eta", 0.0, 0, 1);
        ulong seed = (ulong)args.Int("seed", 0, 0);
        double? guidance = args.OptionalString("guidance") is null ? null : args.Double("guidance", 1.0, 0, 100);
        int? label = args.OptionalString("class") is null ? null : args.Int("class", 0, 0);
        string? classifierPath = args.OptionalString("classifier");
        string? outPath = args.OptionalString("out");
        var run = LoadedRun.Open(checkpoint);
        int count = args.Int("count", run.Config.IsImage ? 64 : 2000, 1, 1 << 20);
        args.RejectUnknown("sample");
        string sampler = samplerName ?? SamplerChoice.Default(run);
        int n = steps ?? SamplerChoice.DefaultSteps(sampler, run);
        string dir = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
        outPath ??= Path.Combine(dir, $"samples-{sampler}.png");
        var g = new Generator(seed).Split(11);

        var (model, labels) = Guide(run, guidance, label, classifierPath, count);
        if (run.Config.IsImage) Evaluate.ImageSamples(run, model!, sampler, n, count, g, labels, outPath, cancel);
        else if (run.Network is Models.Networks.Cnf.CnfDynamics)
        {
            var (x, description) = SamplerChoice.Sample(run, model!, sampler, [count, 2], n, eta, g, null, null, cancel);
            Console.WriteLine($"sampled {count} points with {description}");
            Evaluate.ReportToySamples(Toy2d.Parse(run.Config.Data), x.ToArray(), run.Config.Seed, dir, outPath, description);
        }
        else Evaluate.ToyReport(run, model!, sampler, count, g, dir, cancel, n, outPath);
        return 0;
    }

    /// <summary>The score model to sample, guided when asked, and the labels to sample with.</summary>
    private static (ScoreModel? Model, int[]? Labels) Guide(RunModel run, double? gamma, int? label, string? classifierPath, int count)
    {
        if (run.Network is Models.Networks.Cnf.CnfDynamics) return (null, null);
        var baseModel = run.ScoreModel;
        if (gamma is null && label is null) return (baseModel, run.Config.Classes > 0 ? Enumerable.Repeat(run.Config.Classes, count).ToArray() : null);
        if (!run.Config.IsImage) throw new UsageException("guidance needs a class-labelled data set (--data mnist)");
        // Without --class, one row per class: sample i gets label i mod 10, so the grid shows every digit.
        var labels = Enumerable.Range(0, count).Select(i => label ?? i % Mnist.Classes).ToArray();
        double g = gamma ?? 1.0;
        if (run.Config.Classes > 0) return (Guidance.ClassifierFree(baseModel, g, run.Config.Classes), labels);
        if (classifierPath is null)
            throw new UsageException("this model is unconditional: guidance needs --classifier FILE (a checkpoint of `train --model classifier-s`), or train with --classes 10 for classifier-free guidance");
        var classifierRun = LoadedRun.Open(classifierPath);
        if (classifierRun.Network is not NoisyClassifier classifier) throw new UsageException($"{classifierPath} is not a noisy-classifier checkpoint");
        return (Guidance.Classifier(baseModel, (x, level) => classifier.Forward(x, Tensor.Full([x.Shape[0]], level.Condition, x.DType, x.Device)), g), labels);
    }
}
