using System.Globalization;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Engine;
using DiffusionCore.Pipelines;
using NUnit.Framework;

namespace DiffusionCore.Tests.Cli;

/// <summary>
/// `diffusion evaluate` end to end, in-process through the real parser (<see cref="CliApp.Run"/>), on untrained unet-s checkpoints (step 0) and a handful of samples from
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

    // An untrained unet-s model saved as `diffusion train` writes its weights (config in the metadata).
    private string UntrainedCheckpoint(string name, int classes)
    {
        string path = Path.Combine(_root, name, "checkpoint.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        DiffusionModel.Create(ModelConfig.Create("unet-s", "mnist", "ddpm", classes: classes), new Generator(1)).Save(path);
        return path;
    }

    /// <summary>Runs `diffusion evaluate ARGS` with standard output and error captured (and echoed to the test log).</summary>
    private static (int Code, string Output, string Error) Invoke(params string[] args)
    {
        var (previousOut, previousError) = (Console.Out, Console.Error);
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            int code = CliApp.Run(["evaluate", .. args], CancellationToken.None);
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
            TestContext.Out.WriteLine($"$ diffusion evaluate {string.Join(' ', args)}");
            TestContext.Out.Write(output.ToString());
            TestContext.Out.Write(error.ToString());
        }
    }

    /// <summary>Runs a command line that must fail: exit code 2 and one line "error: ..." on standard error; returns the line.</summary>
    private static string Error(params string[] args)
    {
        var (code, _, error) = Invoke(args);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(code, Is.EqualTo(CliApp.UsageExit));
        Assert.That(lines, Has.Length.EqualTo(1), $"one line on standard error, got: {error}");
        Assert.That(lines[0], Does.StartWith("error: "));
        return lines[0];
    }

    private static double Field(string[] header, string[] row, string column) =>
        double.Parse(row[Array.IndexOf(header, column)], CultureInfo.InvariantCulture);

    [Test]
    public void ClassConditionalModelGetsAccuracyDistanceFloorCsvAndGrid()
    {
        string checkpoint = UntrainedCheckpoint("conditional", classes: 10);
        string csv = Path.Combine(_root, "conditional", "scores.csv"), grid = Path.Combine(_root, "conditional", "grid.png");
        string[] args = ["--checkpoint", checkpoint, "--count", "20", "--sampler", "ddim", "--steps", "2", "--guidance", "2", "--batch", "8", "--csv", csv, "--grid", grid];

        var (code, output, error) = Invoke(args);

        Assert.That(code, Is.Zero, error);
        Assert.That(error, Is.Empty);
        Assert.That(output, Does.Contain("the bundled MNIST classifier").And.Contain("test images"));
        Assert.That(output, Does.Contain("sampled 20 images with DDIM").And.Contain("(classifier-free guidance 2)"));
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
        (code, _, _) = Invoke(args);
        Assert.That(code, Is.Zero);
        lines = File.ReadAllLines(csv);
        Assert.That(lines, Has.Length.EqualTo(3));
        Assert.That(lines[2].Split(',')[1..], Is.EqualTo(lines[1].Split(',')[1..]), "everything but the time is reproduced");
    }

    [Test]
    public void UnconditionalModelGetsTheDistanceOnly()
    {
        string checkpoint = UntrainedCheckpoint("unconditional", classes: 0);
        var (code, output, error) = Invoke("--checkpoint", checkpoint, "--count", "12", "--sampler", "ddim", "--steps", "2");

        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("(unconditional)"));
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
        Assert.That(Error("--count", "5"), Does.Contain("--checkpoint FILE is required"));
        Assert.That(Error("--checkpoint", unconditional, "--guidance", "2"), Does.Contain("--guidance needs --classifier FILE"));
        Assert.That(Error("--checkpoint", unconditional, "--count", "1"), Does.Contain("--count must be an integer in [2,"));
        Assert.That(Error("--checkpoint", unconditional, "--temperature", "1"), Does.Contain("'diffusion evaluate' does not take --temperature"));
        Assert.That(Error("--checkpoint", unconditional, "--scorer", Path.Combine(_root, "none.safetensors")), Does.Contain("--scorer: no classifier weights at").And.Contain("none.safetensors"));
        Assert.That(Error("--checkpoint", unconditional, "--sampler", "ddpm", "--steps", "5"), Does.Contain("--steps does not apply to --sampler ddpm"));

        string toy = Path.Combine(_root, "toy.safetensors");
        DiffusionModel.Create(ModelConfig.Create("mlp-2d", "8gaussians", "ddpm"), new Generator(1)).Save(toy);
        Assert.That(Error("--checkpoint", toy), Does.Contain("needs a model of 1 x 32 x 32 images"));
    }
}
