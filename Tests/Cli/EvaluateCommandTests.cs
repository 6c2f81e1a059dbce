using System.Globalization;
using DiffusionCore.Cli;
using DiffusionCore.Cli.Commands;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Training.Checkpointing;
using NUnit.Framework;

namespace DiffusionCore.Tests.Cli;

/// <summary>
/// `diffusion evaluate` end to end, in-process, on untrained unet-s checkpoints (step 0) and a handful of samples from
/// a 2-step DDIM: checks what is printed, the CSV rows and the grid, and the errors; not sample quality (untrained
/// models score near chance, which is all these tests may assume).
/// </summary>
[TestFixture]
[NonParallelizable] // The commands write to Console.Out, which the tests swap process-wide to read it.
public sealed class EvaluateCommandTests
{
    private string _root = "";

    [OneTimeSetUp]
    public void CreateRoot()
    {
        _root = Path.Combine(Path.GetTempPath(), "diffusioncore-evaluate-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
    }

    [OneTimeTearDown]
    public void RemoveRoot()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    // An untrained unet-s checkpoint as `diffusion train` writes it (config in the metadata, raw weights).
    private string UntrainedCheckpoint(string name, int classes)
    {
        var config = new RunConfig { Model = "unet-s", Data = "mnist", Objective = "ddpm", Classes = classes, Batch = 2 };
        var run = RunModel.Build(config, new Generator(1));
        string path = Path.Combine(_root, name, "checkpoint.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Checkpoint.Save(path, new TrainingState(run.Network, new Adam(run.Network.Parameters()), null, new Generator(2), 0) { Config = config.ToMetadata() });
        return path;
    }

    private static (int Code, string Output) Invoke(params string[] args)
    {
        var previous = Console.Out;
        using var writer = new StringWriter(CultureInfo.InvariantCulture);
        Console.SetOut(writer);
        try
        {
            int code = EvaluateCommand.Run(new Arguments(args), CancellationToken.None);
            return (code, writer.ToString());
        }
        finally
        {
            Console.SetOut(previous);
            TestContext.Out.Write(writer.ToString());
        }
    }

    private static double Field(string[] header, string[] row, string column) =>
        double.Parse(row[Array.IndexOf(header, column)], CultureInfo.InvariantCulture);

    [Test]
    public void ClassConditionalModelGetsAccuracyDistanceFloorCsvAndGrid()
    {
        string checkpoint = UntrainedCheckpoint("conditional", classes: 10);
        string csv = Path.Combine(_root, "conditional", "scores.csv"), grid = Path.Combine(_root, "conditional", "grid.png");
        string[] args = ["--checkpoint", checkpoint, "--count", "20", "--sampler", "ddim", "--steps", "2", "--guidance", "2", "--batch", "8", "--csv", csv, "--grid", grid];

        var (code, output) = Invoke(args);

        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("the bundled MNIST classifier").And.Contain("test images"));
        Assert.That(output, Does.Contain("sampled 20 images with DDIM").And.Contain("classifier-free guidance 2"));
        Assert.That(output, Does.Match(@"classified as the requested class: \d+\.\d% of 20 samples"));
        Assert.That(output, Does.Match(@"per class: 0: \d+\.\d%.*9: \d+\.\d%"));
        Assert.That(output, Does.Match(@"Fréchet distance in the classifier's feature space: \d+\.\d{3} \(floor \d+\.\d{3}: 20 training images vs the 1000 test images"));
        var lines = File.ReadAllLines(csv);
        Assert.That(lines, Has.Length.EqualTo(2));
        var header = lines[0].Split(',');
        Assert.That(header[..8], Is.EqualTo(new[] { "time_utc", "checkpoint", "sampler", "steps", "eta", "guidance", "seed", "scorer" }));
        var row = lines[1].Split(',');
        Assert.That(row, Has.Length.EqualTo(header.Length));
        Assert.That(row[Array.IndexOf(header, "sampler")], Is.EqualTo("ddim"));
        Assert.That(row[Array.IndexOf(header, "scorer")], Is.EqualTo("bundled"));
        Assert.That(Field(header, row, "count"), Is.EqualTo(20));
        Assert.That(Field(header, row, "accuracy"), Is.InRange(0.0, 1.0));
        // 20 samples with labels cycling 0-9: two per class, so each class's accuracy is 0, 0.5 or 1.
        for (int c = 0; c < 10; c++) Assert.That(new[] { 0.0, 0.5, 1.0 }, Does.Contain(Field(header, row, $"accuracy_{c}")));
        Assert.That(Field(header, row, "frechet_distance"), Is.GreaterThanOrEqualTo(0));
        Assert.That(Field(header, row, "frechet_floor"), Is.GreaterThan(0));
        Assert.That(Field(header, row, "floor_count"), Is.EqualTo(20));
        Assert.That(File.ReadAllBytes(grid)[1..4], Is.EqualTo("PNG"u8.ToArray()));

        // A second evaluation appends a row under the same header; the same seed samples the same images.
        (code, _) = Invoke(args);
        Assert.That(code, Is.Zero);
        lines = File.ReadAllLines(csv);
        Assert.That(lines, Has.Length.EqualTo(3));
        Assert.That(lines[2].Split(',')[1..], Is.EqualTo(lines[1].Split(',')[1..]), "everything but the time is reproduced");
    }

    [Test]
    public void UnconditionalModelGetsTheDistanceOnly()
    {
        string checkpoint = UntrainedCheckpoint("unconditional", classes: 0);
        var (code, output) = Invoke("--checkpoint", checkpoint, "--count", "12", "--sampler", "ddim", "--steps", "2");

        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Not.Contain("classified as the requested class"));
        Assert.That(output, Does.Contain("Fréchet distance").And.Contain("floor").And.Contain("predicted classes"));
        string dir = Path.GetDirectoryName(checkpoint)!;
        var lines = File.ReadAllLines(Path.Combine(dir, "evaluate.csv"));
        var header = lines[0].Split(',');
        var row = lines[1].Split(',');
        Assert.That(row[Array.IndexOf(header, "accuracy")], Is.Empty);
        Assert.That(row[Array.IndexOf(header, "accuracy_3")], Is.Empty);
        Assert.That(Field(header, row, "frechet_distance"), Is.GreaterThanOrEqualTo(0));
        Assert.That(File.Exists(Path.Combine(dir, "evaluate-grid.png")));
    }

    [Test]
    public void ErrorsSayWhatIsAccepted()
    {
        string unconditional = UntrainedCheckpoint("errors", classes: 0);
        Assert.That(Assert.Throws<UsageException>(() => Invoke("--count", "5"))!.Message, Does.Contain("evaluate needs --checkpoint"));
        Assert.That(Assert.Throws<UsageException>(() => Invoke("--checkpoint", unconditional, "--guidance", "2"))!.Message,
            Does.Contain("--guidance needs --classifier FILE"));
        Assert.That(Assert.Throws<UsageException>(() => Invoke("--checkpoint", unconditional, "--count", "1"))!.Message, Does.Contain("--count must be an integer in [2,"));
        Assert.That(Assert.Throws<UsageException>(() => Invoke("--checkpoint", unconditional, "--temperature", "1"))!.Message, Does.Contain("'evaluate' does not take --temperature"));
        Assert.That(Assert.Throws<UsageException>(() => Invoke("--checkpoint", unconditional, "--scorer", Path.Combine(_root, "none.safetensors")))!.Message,
            Does.Contain("--scorer").And.Contain("none.safetensors"));

        var toy = new RunConfig { Model = "mlp-2d", Data = "8gaussians", Objective = "ddpm" };
        var run = RunModel.Build(toy, new Generator(1));
        string toyPath = Path.Combine(_root, "toy.safetensors");
        Checkpoint.Save(toyPath, new TrainingState(run.Network, new Adam(run.Network.Parameters()), null, new Generator(2), 0) { Config = toy.ToMetadata() });
        Assert.That(Assert.Throws<UsageException>(() => Invoke("--checkpoint", toyPath))!.Message, Does.Contain("evaluate scores MNIST image models"));
    }
}
