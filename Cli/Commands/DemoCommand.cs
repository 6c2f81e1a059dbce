using System.CommandLine;
using System.Diagnostics;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Pipelines;

namespace DiffusionCore.Cli.Commands;

/// <summary>
/// `diffusion demo`: the whole pipeline on built-in data with no arguments. Part 1 trains DDPM with the mlp-2d net on
/// a 2-D toy set (about 30 s) and scores its samples; part 2 trains unet-s on the bundled MNIST subset for a bounded
/// time and writes a grid of DDIM samples.
/// </summary>
internal sealed class DemoCommand : ICliCommand
{
    private readonly Option<string?> _data = CliOptions.Choice("--data", "the 2-D toy set of part 1", DiffusionCore.Training.Data.Toy2d.ValidNames, "two-moons");
    private readonly Option<int?> _steps = CliOptions.Int("--steps", "training steps of part 1", 1, 10_000_000, 10_000);
    private readonly Option<double?> _minutes = CliOptions.Double("--minutes", "training time of part 2 (MNIST); 0 skips it", 0, 10_000, 4);
    private readonly Option<ulong> _seed = CliOptions.Seed();
    private readonly Option<string?> _out = CliOptions.Text("--out", "output directory (toy/ and mnist/ inside)", "DIR", "runs/demo");
    private readonly Option<string> _device = DeviceOption.Create();

    public int Order => 0;

    public Command Build(CliContext context)
    {
        var command = new Command("demo", "the whole pipeline on built-in data (no downloads): DDPM on a 2-D toy set (~30 s), then unet-s on the bundled MNIST for --minutes and a grid of samples")
        {
            _data, _steps, _minutes, _seed, _out, _device,
        };
        command.SetAction(result => Run(result, context.Cancel));
        return command;
    }

    private int Run(ParseResult result, CancellationToken cancel)
    {
        string data = result.GetValue(_data)!;
        int steps = result.GetValue(_steps)!.Value;
        double minutes = result.GetValue(_minutes)!.Value;
        ulong seed = result.GetValue(_seed);
        string outDir = result.GetValue(_out)!;
        var device = DeviceOption.Resolve(result.GetValue(_device)!);
        string toyDir = Path.Combine(outDir, "toy"), mnistDir = Path.Combine(outDir, "mnist");
        foreach (string dir in minutes > 0 ? new[] { toyDir, mnistDir } : [toyDir])
        {
            if (File.Exists(Path.Combine(dir, DiffusionCore.Training.Trainer.CheckpointFileName)))
                throw new UsageException($"--out {outDir} already holds a demo run ({dir}); give another --out");
            OutputPaths.CheckDirectory(dir, "--out");
        }
        using var onDevice = DeviceOption.Use(device);

        Console.WriteLine($"== part 1: DDPM (L_simple, 1000 linear-beta steps) with mlp-2d on {data}, {steps} Adam steps of batch 512, on {device.Name} ({Environment.ProcessorCount} CPU cores)");
        var toyModel = ModelConfig.Create("mlp-2d", data, "ddpm");
        var toyTraining = new TrainingConfig { Steps = steps, Batch = 512, LearningRate = 2e-3, WarmupSteps = 100, EmaDecay = 0.999, Seed = seed };
        using (var toy = TrainingSession.Start(toyModel, toyTraining, toyDir, device: device))
        {
            var clock = Stopwatch.StartNew();
            TrainCommand.TrainLoop(toy, cancel);
            Console.WriteLine($"trained {steps} steps in {clock.Elapsed.TotalSeconds:F1} s ({steps / clock.Elapsed.TotalSeconds:F0} steps/s); wrote {toy.Trainer.CheckpointPath} and {toy.LossPlotPath}");
            Evaluate.AfterTraining(toy, toyDir, cancel);
        }
        if (minutes <= 0) return 0;

        Console.WriteLine();
        Console.WriteLine($"== part 2: DDPM with unet-s (1.1M parameters) on the bundled MNIST (9,000 digits, 32x32), batch 32, for {minutes} minutes");
        // A run bounded by time, not steps: the step total is only a ceiling. A short run wants a short EMA (half-life
        // ~70 steps), so the sampled weights are not still near their initialisation.
        var mnistModel = ModelConfig.Create("unet-s", "mnist", "ddpm");
        var mnistTraining = new TrainingConfig { Steps = 100_000_000, Batch = 32, LearningRate = 5e-4, WarmupSteps = 100, EmaDecay = 0.99, Seed = seed };
        using var mnist = TrainingSession.Start(mnistModel, mnistTraining, mnistDir, device: device);
        var budget = TimeSpan.FromMinutes(minutes);
        using var timeUp = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        timeUp.CancelAfter(budget);
        var watch = Stopwatch.StartNew();
        try
        {
            using var bar = ConsoleProgress.ForDuration($"train ({minutes:0.##} min)", budget);
            TrainCommand.TrainLoop(mnist, timeUp.Token, bar, _ => Math.Min(watch.Elapsed.TotalSeconds, budget.TotalSeconds));
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
        }
        long trained = mnist.Trainer.Step;
        Console.WriteLine($"trained {trained} steps in {watch.Elapsed.TotalSeconds:F0} s ({trained / watch.Elapsed.TotalSeconds:F2} steps/s); checkpoint {mnist.Trainer.CheckpointPath}");
        Console.WriteLine("(a longer run: diffusion train --model unet-s --data mnist --steps 20000 --out runs/mnist, resumable with --resume)");
        return Evaluate.AfterTraining(mnist, mnistDir, cancel);
    }
}
