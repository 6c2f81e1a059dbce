using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Pipelines;
using DiffusionCore.Training.Evaluation;

namespace DiffusionCore.Cli.Commands;

/// <summary>
/// `diffusion evaluate`: samples an MNIST checkpoint and scores the samples with the bundled clean classifier
/// (<see cref="SampleQuality"/>, <see cref="MnistEvaluator"/>): requested-class accuracy for class-conditional samples
/// and the Fréchet distance in the classifier's feature space beside its train-vs-test floor; appends the scores to a
/// CSV and writes a grid with one row per class.
/// </summary>
internal sealed class EvaluateCommand : ICliCommand
{
    private readonly Option<string?> _checkpoint = CliOptions.Text("--checkpoint", "the MNIST checkpoint (written by `diffusion train`)", "FILE");
    private readonly SamplerChoice _sampler = new();
    private readonly Option<int?> _count = CliOptions.Int("--count", "samples to draw and score; class labels cycle 0-9", 2, 1 << 20, 1000);
    private readonly Option<int?> _batch = CliOptions.Int("--batch", "samples per sampler call", 1, 1 << 16, 100);
    private readonly Option<double?> _guidance = CliOptions.Double("--guidance", "guidance scale: classifier-free for a class-conditional model, else with --classifier", 0, 100);
    private readonly Option<string?> _classifier = CliOptions.Text("--classifier", "a classifier-s checkpoint, for classifier guidance of an unconditional model", "FILE");
    private readonly Option<ulong> _seed = CliOptions.Seed();
    private readonly Option<string?> _csv = CliOptions.Text("--csv", "the CSV the scores are appended to (default: evaluate.csv beside the checkpoint)", "FILE.csv");
    private readonly Option<string?> _grid = CliOptions.Text("--grid", "the grid of samples, one row per class (default: evaluate-grid.png beside the checkpoint)", "FILE.png");
    private readonly Option<string?> _scorer = CliOptions.Text("--scorer", "weights of the judging classifier, written by `diffusion train-classifier` (default: the bundled one)", "FILE");
    private readonly Option<string> _device = DeviceOption.Create();

    public int Order => 4;

    public Command Build(CliContext context)
    {
        var command = new Command("evaluate",
            "score MNIST samples with the bundled classifier: % classified as the requested class (per class), and the Fréchet distance in its feature space beside its floor (training vs test images)")
        {
            _checkpoint, _count, _batch, _guidance, _classifier, _seed, _csv, _grid, _scorer, _device,
        };
        _checkpoint.Required = true;
        _sampler.AddTo(command);
        command.SetAction(result => Run(result, context.Cancel));
        return command;
    }

    private int Run(ParseResult result, CancellationToken cancel)
    {
        string checkpoint = result.GetValue(_checkpoint)!;
        int count = result.GetValue(_count)!.Value, batch = result.GetValue(_batch)!.Value;
        string? csvPath = result.GetValue(_csv), gridPath = result.GetValue(_grid), scorerPath = result.GetValue(_scorer);
        // Output paths are checked before any work: a long sampling run must not fail at its end.
        if (csvPath is not null) OutputPaths.CheckFile(csvPath, "--csv", ".csv");
        if (gridPath is not null) OutputPaths.CheckFile(gridPath, "--grid", ".png");
        var device = DeviceOption.Resolve(result.GetValue(_device)!);
        using var onDevice = DeviceOption.Use(device);

        var model = CheckpointFiles.LoadModel(checkpoint, "--checkpoint", device);
        var classifierPath = result.GetValue(_classifier);
        if (classifierPath is not null && model.Config.Classes > 0)
            throw new UsageException("--classifier is for unconditional models; this one is class-conditional and is guided classifier-free");
        if (model.Config.Classes == 0 && classifierPath is null && result.Given(_guidance))
            throw new UsageException("this model is unconditional: --guidance needs --classifier FILE (a classifier-s checkpoint); without both, evaluate scores the Fréchet distance only");
        var classifier = classifierPath is null ? null : CheckpointFiles.LoadModel(classifierPath, "--classifier", device);
        var pipeline = new DiffusionPipeline(model, classifier);
        var generation = _sampler.Read(result, model, new GenerationOptions
        {
            Guidance = result.GetValue(_guidance),
            Generator = new Generator(result.GetValue(_seed)).Split(41),
        });
        long total = SampleQuality.ProgressTotal(pipeline, generation, count, batch);
        string dir = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
        csvPath = OutputPaths.CheckFile(csvPath ?? Path.Combine(dir, "evaluate.csv"), "--csv", ".csv");
        gridPath = OutputPaths.CheckFile(gridPath ?? Path.Combine(dir, "evaluate-grid.png"), "--grid", ".png");

        using var evaluator = OpenEvaluator(scorerPath);
        Console.WriteLine($"scorer: {scorerPath ?? "the bundled MNIST classifier"} ({evaluator.Classifier.ParameterCount:N0} parameters), " +
            $"{100 * evaluator.TestAccuracy:F1}% right on the {evaluator.TestCount} test images");
        var clock = Stopwatch.StartNew();
        SampleQualityReport report;
        using (var bar = ConsoleProgress.Start("sample", total))
            report = SampleQuality.Evaluate(pipeline, evaluator, generation, count, batch, new SyncProgress<long>(i => bar.Update(i)), cancel);
        string guidance = report.Labels is null ? "unconditional"
            : model.Config.Classes > 0 ? (generation.Guidance is double g ? $"classifier-free guidance {g.ToString(CultureInfo.InvariantCulture)}" : "conditional, no guidance")
            : $"classifier guidance {(generation.Guidance ?? 1).ToString(CultureInfo.InvariantCulture)}";
        Console.WriteLine($"sampled {count} images with {report.Description} ({guidance}) in {clock.Elapsed.TotalSeconds:F1} s");
        foreach (string line in report.Scores.Describe()) Console.WriteLine(line);

        var context = new List<KeyValuePair<string, string>>
        {
            new("time_utc", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)),
            new("checkpoint", Path.GetFullPath(checkpoint)),
            new("sampler", generation.Sampler!),
            new("steps", (generation.Steps ?? SamplerCatalog.DefaultSteps(generation.Sampler!, model)).ToString(CultureInfo.InvariantCulture)),
            new("eta", generation.Eta.ToString("R", CultureInfo.InvariantCulture)),
            new("guidance", generation.Guidance?.ToString("R", CultureInfo.InvariantCulture) ?? ""),
            new("seed", result.GetValue(_seed).ToString(CultureInfo.InvariantCulture)),
            new("scorer", scorerPath is null ? "bundled" : Path.GetFullPath(scorerPath)),
        };
        try { report.Scores.AppendCsv(csvPath, context); }
        catch (InvalidDataException e) { throw new UsageException(e.Message); }
        Console.WriteLine($"appended the scores to {csvPath}");
        report.SaveGrid(gridPath);
        Console.WriteLine($"wrote {gridPath} ({(report.Labels is null ? "one row per predicted class" : "one row per requested class; red: classified otherwise")})");
        return 0;
    }

    private static MnistEvaluator OpenEvaluator(string? scorerPath)
    {
        if (scorerPath is null) return MnistEvaluator.CreateBundled();
        if (!File.Exists(scorerPath)) throw new UsageException($"--scorer: no classifier weights at {scorerPath}");
        try { return new MnistEvaluator(MnistClassifierWeights.Load(scorerPath)); }
        catch (Exception e) when (e is IOException or InvalidDataException) { throw new UsageException($"--scorer: {e.Message}"); }
    }
}
