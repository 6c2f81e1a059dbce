using System.Diagnostics;
using System.Globalization;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Guidance;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Evaluation;

namespace DiffusionCore.Cli.Commands;

/// <summary>
/// `diffusion evaluate`: samples an MNIST checkpoint and scores the samples with the bundled clean classifier
/// (<see cref="MnistEvaluator"/>): requested-class accuracy for class-conditional samples, and the Fréchet distance
/// in the classifier's feature space beside its train-vs-test floor; appends the scores to a CSV and writes a
/// grid with one row per class.
/// </summary>
internal static class EvaluateCommand
{
    public const string Usage = """
  evaluate score MNIST samples with the bundled classifier: % classified as the requested class (per class),
           Fréchet distance in its feature space beside the floor (training vs test images); a CSV row and a grid
           --checkpoint FILE  --count N (1000; labels cycle 0-9)  --sampler NAME  --steps N  --eta X  --batch N (100)
           --guidance G (classifier-free; an unconditional model takes --classifier FILE)  --seed N
           --csv FILE (evaluate.csv beside the checkpoint, appended)  --grid FILE.png  --scorer FILE (default: bundled)
""";

    // Samples shown per class in the grid.
    private const int GridColumns = 10;

    public static int Run(Arguments args, CancellationToken cancel)
    {
        string checkpoint = args.OptionalString("checkpoint") ?? throw new UsageException("evaluate needs --checkpoint FILE (an MNIST model written by `diffusion train`)");
        int count = args.Int("count", 1000, 2, 1 << 20);
        string? samplerName = args.OptionalString("sampler");
        int? steps = args.OptionalString("steps") is null ? null : args.Int("steps", 0, 1);
        double eta = args.Double("eta", 0.0, 0, 1);
        int batch = args.Int("batch", 100, 1, 1 << 16);
        double? guidance = args.OptionalString("guidance") is null ? null : args.Double("guidance", 1.0, 0, 100);
        string? classifierPath = args.OptionalString("classifier");
        ulong seed = (ulong)args.Int("seed", 0, 0);
        string? csvPath = args.OptionalString("csv");
        string? gridPath = args.OptionalString("grid");
        string? scorerPath = args.OptionalString("scorer");
        var run = LoadedRun.Open(checkpoint);
        args.RejectUnknown("evaluate");
        if (!run.Config.IsImage || run.Network is not ScoreNetwork)
            throw new UsageException($"evaluate scores MNIST image models; {checkpoint} is a {run.Config.Model} model trained on {run.Config.Data} with --objective {run.Config.Objective}");
        string sampler = samplerName ?? SamplerChoice.Default(run);
        int n = steps ?? SamplerChoice.DefaultSteps(sampler, run);
        string dir = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
        csvPath ??= Path.Combine(dir, "evaluate.csv");
        gridPath ??= Path.Combine(dir, "evaluate-grid.png");

        var (model, labels, guidanceText) = Guide(run, guidance, classifierPath, count);
        using var evaluator = OpenEvaluator(scorerPath);
        Console.WriteLine($"scorer: {(scorerPath ?? "the bundled MNIST classifier")} ({evaluator.Classifier.ParameterCount:N0} parameters), " +
            $"{100 * evaluator.TestAccuracy:F1}% right on the {evaluator.TestCount} test images");

        var clock = Stopwatch.StartNew();
        var g = new Generator(seed).Split(41);
        int plane = Mnist.PaddedSize * Mnist.PaddedSize;
        var pixels = new float[(long)count * plane];
        int perBatch = SamplerChoice.Expected(sampler, n, run);
        var bar = new ConsoleProgress("sample", (long)perBatch * ((count + batch - 1) / batch));
        string description = "";
        for (int start = 0, index = 0; start < count; start += batch, index++)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = TensorScope.Begin();
            int b = Math.Min(batch, count - start);
            long done = (long)index * perBatch;
            var (x, d) = SamplerChoice.Sample(run, model, sampler, [b, 1, Mnist.PaddedSize, Mnist.PaddedSize], n, eta, g, labels?[start..(start + b)],
                new SyncProgress<int>(i => bar.Update(done + i)), cancel);
            bar.Update(done + perBatch);
            x.ToArray().CopyTo(pixels.AsSpan(start * plane));
            description = d;
        }
        Console.WriteLine($"sampled {count} images with {description}{guidanceText} in {clock.Elapsed.TotalSeconds:F1} s");

        MnistEvaluation result;
        using (var samples = Tensor.FromArray(pixels, count, 1, Mnist.PaddedSize, Mnist.PaddedSize))
        {
            try { result = evaluator.Evaluate(samples, labels); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
        }
        foreach (string line in result.Describe()) Console.WriteLine(line);

        var context = new List<KeyValuePair<string, string>>
        {
            new("time_utc", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
            new("checkpoint", Path.GetFullPath(checkpoint)),
            new("sampler", sampler),
            new("steps", n.ToString(CultureInfo.InvariantCulture)),
            new("eta", eta.ToString("R", CultureInfo.InvariantCulture)),
            new("guidance", guidance?.ToString("R", CultureInfo.InvariantCulture) ?? ""),
            new("seed", seed.ToString(CultureInfo.InvariantCulture)),
            new("scorer", scorerPath is null ? "bundled" : Path.GetFullPath(scorerPath)),
        };
        try { result.AppendCsv(csvPath, context); }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
        Console.WriteLine($"appended the scores to {csvPath}");

        // Rows are the requested classes (misses framed in red), or the classifier's for an unconditional model.
        LabelledGrid.Save(gridPath, pixels, Mnist.PaddedSize, Mnist.PaddedSize, labels ?? result.Predictions, labels is null ? null : result.Predictions,
            Mnist.Classes, GridColumns);
        Console.WriteLine($"wrote {gridPath} ({(labels is null ? "one row per predicted class" : "one row per requested class; red: classified otherwise")})");
        return 0;
    }

    private static MnistEvaluator OpenEvaluator(string? scorerPath)
    {
        if (scorerPath is null) return MnistEvaluator.CreateBundled();
        try { return new MnistEvaluator(MnistClassifierWeights.Load(scorerPath)); }
        catch (Exception e) when (e is IOException or InvalidDataException) { throw new UsageException($"--scorer: {e.Message}"); }
    }

    /// <summary>
    /// The score model to sample and the requested labels (cycling 0-9; null for an unguided unconditional model):
    /// a class-conditional model samples each label, with classifier-free guidance when --guidance is given; an
    /// unconditional one takes classifier guidance with --classifier.
    /// </summary>
    private static (ScoreModel Model, int[]? Labels, string Text) Guide(RunModel run, double? gamma, string? classifierPath, int count)
    {
        var baseModel = run.ScoreModel;
        var cycling = Enumerable.Range(0, count).Select(i => i % Mnist.Classes).ToArray();
        if (run.Config.Classes > 0)
        {
            if (classifierPath is not null) throw new UsageException("--classifier is for unconditional models; this one is class-conditional (use --guidance G for classifier-free guidance)");
            return gamma is double g
                ? (Guidance.ClassifierFree(baseModel, g, run.Config.Classes), cycling, $", classifier-free guidance {g}")
                : (baseModel, cycling, ", conditional (no guidance)");
        }
        if (gamma is null && classifierPath is null) return (baseModel, null, ", unconditional");
        if (classifierPath is null)
            throw new UsageException("this model is unconditional: --guidance needs --classifier FILE (a checkpoint of `train --model classifier-s`); without both, evaluate scores the Fréchet distance only");
        var classifierRun = LoadedRun.Open(classifierPath);
        if (classifierRun.Network is not NoisyClassifier classifier) throw new UsageException($"{classifierPath} is not a noisy-classifier checkpoint");
        double gc = gamma ?? 1.0;
        var guided = Guidance.Classifier(baseModel, (x, level) => classifier.Forward(x, Tensor.Full([x.Shape[0]], level.Condition, x.DType, x.Device)), gc);
        return (guided, cycling, $", classifier guidance {gc}");
    }
}
