using System.Globalization;
using DiffusionCore.Training.Evaluation;

namespace DiffusionCore.Cli.Commands;

/// <summary>
/// `diffusion train-classifier`: trains the clean MNIST classifier that `evaluate` scores samples with
/// (<see cref="MnistClassifierTraining"/>) on the bundled training split, and writes its weights and per-epoch log.
/// The bundled weights (Training/Data/Mnist/classifier.safetensors) came from this command with its defaults.
/// </summary>
internal static class TrainClassifierCommand
{
    public const string Usage = """
  train-classifier  train the clean MNIST classifier behind `evaluate` on the bundled training split
           --out DIR (writes classifier.safetensors and classifier-train-log.csv)  --epochs N (12)  --batch N (64)
           --lr X (2e-3, cosine decay)  --shift N (2; random shifts in pixels)  --dropout P (0.25)  --seed N (0)
""";

    /// <summary>Name of the per-epoch log the command writes beside the weights.</summary>
    public const string LogFileName = "classifier-train-log.csv";

    public static int Run(Arguments args, CancellationToken cancel)
    {
        var defaults = new MnistClassifierTrainingOptions();
        string outDir = args.OptionalString("out") ?? throw new UsageException("train-classifier needs --out DIR");
        var options = new MnistClassifierTrainingOptions
        {
            Epochs = args.Int("epochs", defaults.Epochs, 1, 1000),
            BatchSize = args.Int("batch", defaults.BatchSize, 1, 4096),
            LearningRate = args.Double("lr", defaults.LearningRate, 1e-7, 1),
            MaxShift = args.Int("shift", defaults.MaxShift, 0, 8),
            Dropout = args.Double("dropout", defaults.Dropout, 0, 0.95),
            Seed = (ulong)args.Int("seed", 0, 0),
        };
        args.RejectUnknown("train-classifier");
        int stepsPerEpoch = (Training.Data.Mnist.BundledTrainCount + options.BatchSize - 1) / options.BatchSize;
        var bar = new ConsoleProgress("train", (long)stepsPerEpoch * options.Epochs);
        var net = MnistClassifierTraining.TrainOnBundled(options, out var log,
            new SyncProgress<Training.TrainingProgress>(p => bar.Update(p.Step, $"loss {p.Loss:F4}")),
            new SyncProgress<MnistClassifierEpoch>(e => Console.WriteLine(
                $"epoch {e.Epoch}: train loss {e.TrainLoss:F4}, train accuracy {100 * e.TrainAccuracy:F2}% (augmented), test accuracy {100 * e.TestAccuracy:F2}%, " +
                $"{e.CpuSeconds:F0} s CPU, {e.WallSeconds:F0} s wall")),
            cancel);
        var last = log[^1];
        string weights = Path.Combine(outDir, MnistClassifierWeights.BundledFileName), logPath = Path.Combine(outDir, LogFileName);
        string Invariant(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        MnistClassifierWeights.Save(weights, net, new Dictionary<string, string>
        {
            ["command"] = $"diffusion train-classifier --epochs {options.Epochs} --batch {options.BatchSize} --lr {Invariant(options.LearningRate)} " +
                          $"--shift {options.MaxShift} --dropout {Invariant(options.Dropout)} --seed {options.Seed}",
            ["data"] = "bundled MNIST training split (9,000 images, 32 x 32 padded, [-1, 1])",
            ["test_accuracy"] = last.TestAccuracy.ToString("F4", CultureInfo.InvariantCulture),
        });
        MnistClassifierTraining.WriteLog(logPath, log);
        Console.WriteLine($"MnistClassifier ({net.ParameterCount:N0} parameters): {100 * last.TestAccuracy:F2}% on the {Training.Data.Mnist.BundledTestCount} test images " +
            $"after {options.Epochs} epochs ({last.Step} steps, {last.CpuSeconds:F0} s CPU, {last.WallSeconds:F0} s wall)");
        Console.WriteLine($"wrote {weights} ({new FileInfo(weights).Length:N0} bytes) and {logPath}");
        return 0;
    }
}
