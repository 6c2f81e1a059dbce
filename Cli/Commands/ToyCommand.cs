using System.Diagnostics;
using System.Globalization;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Samplers;
using DiffusionCore.Training;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Metrics;
using DiffusionCore.Training.Objectives;
using DiffusionCore.Training.Plotting;

namespace DiffusionCore.Cli.Commands;

/// <summary>DDPM on the 2-D toy sets: the demo and `train --model mlp-2d`.</summary>
internal static class ToyCommand
{
    public static int Demo(Arguments args, CancellationToken cancel)
    {
        var settings = ToySettings.Read(args, defaultSteps: 10000, defaultOut: "runs/demo");
        args.RejectUnknown("demo");
        Console.WriteLine($"DiffusionCore demo: DDPM (L_simple, {settings.Timesteps} linear-beta steps) with the mlp-2d score net on '{Toy2d.Name(settings.Data)}', {settings.Steps} Adam steps of batch {settings.Batch}, on {CpuInfo()}");
        return Run(settings, cancel);
    }

    public static int Train(Arguments args, CancellationToken cancel)
    {
        string model = args.String("model", "mlp-2d");
        string objective = args.String("objective", "ddpm");
        if (model != "mlp-2d") throw new UsageException($"--model '{model}' is not available yet; this build trains: mlp-2d");
        if (objective != "ddpm") throw new UsageException($"--objective '{objective}' is not available yet; this build trains: ddpm");
        var settings = ToySettings.Read(args, defaultSteps: 5000, defaultOut: "runs/train");
        args.RejectUnknown("train");
        return Run(settings, cancel);
    }

    private static string CpuInfo() => $"{Environment.ProcessorCount} CPU cores";

    private static int Run(ToySettings s, CancellationToken cancel)
    {
        Directory.CreateDirectory(s.Out);
        var root = new Generator(s.Seed);
        var model = new Mlp2d(root.Split(1));
        var schedule = DdpmSchedule.Create(s.Schedule, s.Timesteps);
        var dataStream = root.Split(2);
        Trainer? trainer = null;
        trainer = new Trainer(model, g =>
        {
            var batch = Toy2d.Sample(s.Data, s.Batch, dataStream.Split((ulong)trainer!.Step).Seed);
            return DdpmObjective.SimpleLoss(model, schedule, Tensor.FromArray(batch, s.Batch, 2), g);
        }, new TrainerOptions { Steps = s.Steps, LearningRate = s.LearningRate, WarmupSteps = Math.Min(100, s.Steps / 10), EmaDecay = 0.999 }, root.Split(3));

        var clock = Stopwatch.StartNew();
        var bar = new ConsoleProgress("train", s.Steps);
        double smoothed = double.NaN;
        trainer.Run(new SyncProgress<TrainingProgress>(p =>
        {
            smoothed = double.IsNaN(smoothed) ? p.Loss : 0.98 * smoothed + 0.02 * p.Loss;
            bar.Update(p.Step, $"loss {smoothed:F4}");
        }), cancel);
        double trainSeconds = clock.Elapsed.TotalSeconds;
        trainer.Ema?.CopyTo(model.Parameters());
        model.SetTraining(false);

        clock.Restart();
        var sampleBar = new ConsoleProgress("sample", schedule.Steps);
        var samples = DdpmAncestral.Sample(ScoreModel.FromNetwork(model, Parameterisation.Epsilon), schedule, [s.Samples, 2], root.Split(4),
            progress: new SyncProgress<int>(i => sampleBar.Update(i)), cancellationToken: cancel);
        var sampled = samples.ToArray();
        double sampleSeconds = clock.Elapsed.TotalSeconds;

        var reference = Toy2d.Sample(s.Data, s.Samples, root.Split(5).Seed);
        var fresh = Toy2d.Sample(s.Data, s.Samples, root.Split(6).Seed);
        double energy = SampleDistance.EnergyDistance(sampled, reference, 2);
        double floor = SampleDistance.EnergyDistance(fresh, reference, 2);
        double baseline = SampleDistance.EnergyDistance(new Generator(root.Split(7).Seed).NormalHost(s.Samples * 2), reference, 2);

        string scatter = Path.Combine(s.Out, "samples.png");
        string lossPlot = Path.Combine(s.Out, "loss.png");
        ToyPlots.SaveScatter(scatter, Toy2d.Name(s.Data), reference, sampled);
        ToyPlots.SaveLoss(lossPlot, trainer.Losses);
        File.WriteAllLines(Path.Combine(s.Out, "loss.csv"), trainer.Losses.Select((l, i) => string.Create(CultureInfo.InvariantCulture, $"{i + 1},{l}")).Prepend("step,loss"));

        Console.WriteLine();
        Console.WriteLine($"trained {s.Steps} steps in {trainSeconds:F1} s ({s.Steps / trainSeconds:F0} steps/s); sampled {s.Samples} points with {schedule.Steps} ancestral steps in {sampleSeconds:F1} s");
        Console.WriteLine($"final loss (mean of last 100 steps): {trainer.Losses.TakeLast(100).Average():F4}");
        Console.WriteLine("energy distance to a fresh data draw (lower is better):");
        Console.WriteLine($"  model samples      {energy:F4}");
        Console.WriteLine($"  another data draw  {floor:F4}   (the floor: sampling noise alone)");
        Console.WriteLine($"  standard normal    {baseline:F4}   (the prior, an untrained model's level)");
        Console.WriteLine($"wrote {scatter}, {lossPlot} and loss.csv");
        return 0;
    }

    /// <summary>Runs progress callbacks inline (Progress&lt;T&gt; would post them to the thread pool, out of order).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    private sealed record ToySettings(Toy2dKind Data, int Steps, int Batch, int Samples, double LearningRate, ulong Seed, string Out, BetaSchedule Schedule, int Timesteps)
    {
        public static ToySettings Read(Arguments a, int defaultSteps, string defaultOut)
        {
            Toy2dKind data;
            try { data = Toy2d.Parse(a.String("data", "two-moons")); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            string schedule = a.String("schedule", "linear");
            var kind = schedule switch
            {
                "linear" => BetaSchedule.Linear,
                "cosine" => BetaSchedule.Cosine,
                _ => throw new UsageException($"--schedule must be linear or cosine, got '{schedule}'"),
            };
            return new ToySettings(data, a.Int("steps", defaultSteps, 1), a.Int("batch", 512, 1, 1 << 20), a.Int("samples", 2000, 2, 1 << 20),
                a.Double("lr", 2e-3, 1e-8, 10), (ulong)a.Int("seed", 0, 0), a.String("out", defaultOut), kind, a.Int("timesteps", 1000, 2, 100000));
        }
    }
}
