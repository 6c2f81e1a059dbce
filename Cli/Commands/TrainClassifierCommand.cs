using System.CommandLine;
using System.Globalization;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Training;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Evaluation;

namespace DiffusionCore.Cli.Commands;

/// <summary>
/// `diffusion train-classifier`: trains the clean MNIST classifier that `evaluate` scores samples with
/// (<see cref="MnistClassifierTraining"/>) on the bundled training split, on the CPU, and writes its weights and
/// per-epoch log. The bundled weights (Training/Data/Mnist/classifier.safetensors) came from this command with its defaults.
/// </summary>
internal sealed class TrainClassifierCommand : ICliCommand
{
    /// <summary>Name of the per-epoch log the command writes beside the weights.</summary>
    public const string LogFileName = "classifier-train-log.csv";

    private static readonly MnistClassifierTrainingOptions Defaults = new();

    private readonly Option<string?> _out = CliOptions.Text("--out", $"output directory: {MnistClassifierWeights.BundledFileName} and {LogFileName}", "DIR", "runs/classifier");
    private readonly Option<int?> _epochs = CliOptions.Int("--epochs", "passes over the 9,000 training images", 1, 1000, Defaults.Epochs);
    private readonly Option<int?> _batch = CliOptions.Int("--batch", "images per step", 1, 4096, Defaults.BatchSize);
    private readonly Option<double?> _lr = CliOptions.Double("--lr", "peak Adam learning rate, decayed on a half cosine to 0", 1e-7, 1, Defaults.LearningRate);
    private readonly Option<int?> _shift = CliOptions.Int("--shift", "augmentation: random shifts of up to this many pixels on each axis (0: none)", 0, 8, Defaults.MaxShift);
    private readonly Option<double?> _dropout = CliOptions.Double("--dropout", "dropout on the 128 penultimate features", 0, 0.95, Defaults.Dropout);
    private readonly Option<ulong> _seed = CliOptions.Seed();

    public int Order => 5;

    public Command Build(CliContext context)
    {
        var command = new Command("train-classifier", "train the clean MNIST classifier behind `evaluate` on the bundled training split (CPU); writes its weights and per-epoch log")
        {
            _out, _epochs, _batch, _lr, _shift, _dropout, _seed,
        };
        command.SetAction(result => Run(result, context.Cancel));
        return command;
    }

    private int Run(ParseResult result, CancellationToken cancel)
    {
        string outDir = OutputPaths.CheckDirectory(result.GetValue(_out)!, "--out");
        var options = new MnistClassifierTrainingOptions
        {
            Epochs = result.GetValue(_epochs)!.Value,
            BatchSize = result.GetValue(_batch)!.Value,
            LearningRate = result.GetValue(_lr)!.Value,
            MaxShift = result.GetValue(_shift)!.Value,
            Dropout = result.GetValue(_dropout)!.Value,
            Seed = result.GetValue(_seed),
        };
        int stepsPerEpoch = (Mnist.BundledTrainCount + options.BatchSize - 1) / options.BatchSize;
        IReadOnlyList<MnistClassifierEpoch> log;
        Models.Networks.MnistClassifier net;
        using (var bar = ConsoleProgress.Start("train", (long)stepsPerEpoch * options.Epochs))
        {
            net = MnistClassifierTraining.TrainOnBundled(options, out log,
                new SyncProgress<TrainingProgress>(p => bar.Update(p.Step, $"loss {p.Loss:F4}")),
                new SyncProgress<MnistClassifierEpoch>(e => Console.WriteLine(
                    $"epoch {e.Epoch}: train loss {e.TrainLoss:F4}, train accuracy {100 * e.TrainAccuracy:F2}% (augmented), test accuracy {100 * e.TestAccuracy:F2}%, " +
                    $"{e.CpuSeconds:F0} s CPU, {e.WallSeconds:F0} s wall")),
                cancel);
        }
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
        Console.WriteLine($"MnistClassifier ({net.ParameterCount:N0} parameters): {100 * last.TestAccuracy:F2}% on the {Mnist.BundledTestCount} test images " +
            $"after {options.Epochs} epochs ({last.Step} steps, {last.CpuSeconds:F0} s CPU, {last.WallSeconds:F0} s wall)");
        Console.WriteLine($"wrote {weights} ({new FileInfo(weights).Length:N0} bytes) and {logPath}");
        return 0;
    }
}
