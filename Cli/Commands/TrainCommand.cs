using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Networks;
using DiffusionCore.Training;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion train`: any model on any data with any objective, checkpointed and resumable.</summary>
internal static class TrainCommand
{
    public const string Usage = """
  train    train a model; writes DIR/checkpoint.safetensors, train_log.csv, train_loss.png, then samples
           --model mlp-2d|unet-s|unet-b|ddpm-cifar10|cnf-2d|classifier-s   --data NAME|mnist
           --objective ddpm|ddpm-vlb|ncsn|vp|subvp|ve|ssm|cnf|classifier  (--importance for vp/subvp/ve)
           --steps N  --batch N  --lr X  --seed N  --out DIR  --checkpoint-every N (500)  --resume
           --schedule linear|cosine  --timesteps N (1000)  --sigma-max X --sigma-min X --levels N (NCSN)
           --classes N (class-conditional U-Net, e.g. 10 for MNIST)  --p-uncond X (0.1)
""";

    public static int Run(Arguments args, CancellationToken cancel)
    {
        string outDir = args.String("out", "runs/train");
        bool resume = args.Flag("resume");
        int checkpointEvery = args.Int("checkpoint-every", 500, 0);
        string checkpointPath = Path.Combine(outDir, Trainer.CheckpointFileName);
        RunConfig config;
        if (resume)
        {
            if (!File.Exists(checkpointPath)) throw new UsageException($"--resume: no checkpoint at {checkpointPath}");
            config = RunConfig.FromMetadata(SafeTensors.Load(checkpointPath).Metadata, checkpointPath);
            config = config with { Steps = args.Int("steps", config.Steps, 1) };
        }
        else config = Read(args);
        args.RejectUnknown("train");
        config.Validate();

        var root = new Generator(config.Seed);
        var run = RunModel.Build(config, root.Split(1));
        var data = DataSource.Open(config.Data);
        var trainer = new Trainer(run.Network, run.Loss(data), new TrainerOptions
        {
            Steps = config.Steps,
            LearningRate = config.LearningRate,
            WarmupSteps = Math.Min(config.IsImage ? 500 : 100, config.Steps / 10),
            EmaDecay = 0.999,
            OutputDirectory = outDir,
            CheckpointEvery = checkpointEvery,
            Config = config.ToMetadata(),
        }, root.Split(3));
        ConnectDropout(run, trainer);
        if (resume)
        {
            var info = trainer.Resume(checkpointPath);
            ConnectDropout(run, trainer);
            Console.WriteLine($"resumed {checkpointPath} at step {info.Step} of {config.Steps}");
        }
        Console.WriteLine($"training {config.Model} ({run.Network.ParameterCount:N0} parameters) on {config.Data} with --objective {config.Objective}, {config.Steps} steps of batch {config.Batch}, {Environment.ProcessorCount} CPU cores");
        TrainLoop(trainer, cancel);
        Console.WriteLine($"wrote {trainer.CheckpointPath}, {trainer.LogPath}, {trainer.LossPlotPath}");
        return Evaluate.AfterTraining(run, trainer, outDir, cancel);
    }

    /// <summary>Dropout layers draw their masks from the trainer's generator, so checkpoints capture that stream too.</summary>
    public static void ConnectDropout(RunModel run, Trainer trainer)
    {
        if (run.Network is ScoreNetwork score) score.DropoutGenerator = trainer.Generator;
        if (run.Network is NoisyClassifier classifier) classifier.DropoutGenerator = trainer.Generator;
    }

    /// <summary>Runs the trainer with a progress bar (smoothed loss, steps/s); Ctrl+C checkpoints and stops.</summary>
    public static void TrainLoop(Trainer trainer, CancellationToken cancel)
    {
        var bar = new ConsoleProgress("train", trainer.Options.Steps, trainer.Step);
        double smoothed = double.NaN;
        try
        {
            trainer.Run(new SyncProgress<TrainingProgress>(p =>
            {
                smoothed = double.IsNaN(smoothed) ? p.Loss : 0.98 * smoothed + 0.02 * p.Loss;
                bar.Update(p.Step, $"loss {smoothed:F4} {p.StepsPerSecond:F2} steps/s");
            }), cancel);
        }
        catch (TrainingDivergedException e)
        {
            Console.Error.WriteLine();
            Console.Error.WriteLine($"error: {e.Message}");
            throw new UsageException($"training stopped at step {e.Step}; {(e.LastCheckpoint is null ? "no checkpoint was written" : $"the last good checkpoint is {e.LastCheckpoint} (step {e.LastCheckpointStep}); lower --lr and run again, or --resume")}");
        }
    }

    private static RunConfig Read(Arguments a)
    {
        string model = a.String("model", "mlp-2d");
        string data = a.String("data", model is "unet-s" or "unet-b" or "ddpm-cifar10" or "classifier-s" ? "mnist" : "two-moons");
        string objective = a.String("objective", model switch { "cnf-2d" => "cnf", "classifier-s" => "classifier", _ => "ddpm" });
        bool image = data == "mnist";
        return new RunConfig
        {
            Model = model,
            Data = data,
            Objective = objective,
            Importance = a.Flag("importance"),
            Schedule = a.String("schedule", "linear"),
            Timesteps = a.Int("timesteps", 1000, 2, 100000),
            SigmaMax = a.Double("sigma-max", 1.0, 1e-6),
            SigmaMin = a.Double("sigma-min", 0.01, 1e-6),
            Levels = a.Int("levels", 10, 1, 10000),
            Classes = a.Int("classes", 0, 0, 1000),
            PUncond = a.Double("p-uncond", 0.1, 0, 1),
            Steps = a.Int("steps", image ? 2000 : 5000, 1),
            Batch = a.Int("batch", image ? 32 : 512, 1, 1 << 20),
            LearningRate = a.Double("lr", image ? 2e-4 : objective == "cnf" ? 1e-3 : 2e-3, 1e-8, 10),
            Seed = (ulong)a.Int("seed", 0, 0),
        };
    }
}

/// <summary>Runs progress callbacks inline (Progress&lt;T&gt; would post them to the thread pool, out of order).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
