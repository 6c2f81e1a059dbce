using System.Diagnostics;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Training;

namespace DiffusionCore.Cli.Commands;

/// <summary>
/// `diffusion demo`: the whole pipeline on built-in data with no arguments. Part 1 trains DDPM with the
/// mlp-2d net on a 2-D toy set (about 30 s) and scores its samples; part 2 trains unet-s on the bundled
/// MNIST subset for a bounded time and writes a grid of DDIM samples.
/// </summary>
internal static class DemoCommand
{
    public const string Usage = """
  demo     the whole pipeline on built-in data (no downloads): DDPM on a 2-D toy set (~30 s), then
           unet-s on the bundled MNIST for --minutes and a grid of samples
           --data NAME (two-moons)  --steps N (10000)  --minutes X (4; 0 skips MNIST)  --seed N  --out DIR (runs/demo)
""";

    public static int Run(Arguments args, CancellationToken cancel)
    {
        string data = args.String("data", "two-moons");
        int steps = args.Int("steps", 10000, 1);
        double minutes = args.Double("minutes", 4, 0, 10000);
        ulong seed = (ulong)args.Int("seed", 0, 0);
        string outDir = args.String("out", "runs/demo");
        args.RejectUnknown("demo");

        Console.WriteLine($"== part 1: DDPM (L_simple, 1000 linear-beta steps) with mlp-2d on {data}, {steps} Adam steps of batch 512, {Environment.ProcessorCount} CPU cores");
        var toy = new RunConfig { Model = "mlp-2d", Data = data, Objective = "ddpm", Steps = steps, Batch = 512, LearningRate = 2e-3, Seed = seed };
        var toyRun = RunModel.Build(toy, new Generator(seed).Split(1));
        string toyDir = Path.Combine(outDir, "toy");
        var toyTrainer = new Trainer(toyRun.Network, toyRun.Loss(DataSource.Open(data)),
            new TrainerOptions { Steps = steps, LearningRate = toy.LearningRate, WarmupSteps = Math.Min(100, steps / 10), EmaDecay = 0.999, OutputDirectory = toyDir, Config = toy.ToMetadata() },
            new Generator(seed).Split(3));
        var clock = Stopwatch.StartNew();
        TrainCommand.TrainLoop(toyTrainer, cancel);
        Console.WriteLine($"trained {steps} steps in {clock.Elapsed.TotalSeconds:F1} s ({steps / clock.Elapsed.TotalSeconds:F0} steps/s); wrote {toyTrainer.CheckpointPath} and {toyTrainer.LossPlotPath}");
        Evaluate.AfterTraining(toyRun, toyTrainer, toyDir, cancel);
        if (minutes <= 0) return 0;

        Console.WriteLine();
        Console.WriteLine($"== part 2: DDPM with unet-s (1.1M parameters) on the bundled MNIST (9,000 digits, 32x32), batch 32, for {minutes} minutes");
        var mnist = new RunConfig { Model = "unet-s", Data = "mnist", Objective = "ddpm", Steps = 1_000_000, Batch = 32, LearningRate = 5e-4, Seed = seed };
        var mnistRun = RunModel.Build(mnist, new Generator(seed).Split(1));
        string mnistDir = Path.Combine(outDir, "mnist");
        // A short run: an EMA half-life of ~70 steps, so the sampled weights are not still near their initialisation.
        var trainer = new Trainer(mnistRun.Network, mnistRun.Loss(DataSource.Open("mnist")),
            new TrainerOptions { Steps = mnist.Steps, LearningRate = mnist.LearningRate, WarmupSteps = 100, EmaDecay = 0.99, OutputDirectory = mnistDir, Config = mnist.ToMetadata() },
            new Generator(seed).Split(3));
        TrainCommand.ConnectDropout(mnistRun, trainer);
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        budget.CancelAfter(TimeSpan.FromMinutes(minutes));
        clock.Restart();
        try { TrainCommand.TrainLoop(trainer, budget.Token); }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested) { Console.WriteLine(); }
        Console.WriteLine($"trained {trainer.Step} steps in {clock.Elapsed.TotalSeconds:F0} s ({trainer.Step / clock.Elapsed.TotalSeconds:F2} steps/s); checkpoint {trainer.CheckpointPath}");
        Console.WriteLine($"(a longer run: diffusion train --model unet-s --data mnist --steps 20000 --out runs/mnist, resumable with --resume)");
        return Evaluate.AfterTraining(mnistRun, trainer, mnistDir, cancel);
    }
}
