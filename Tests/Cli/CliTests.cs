using System.Globalization;
using System.Text.RegularExpressions;
using DiffusionCore.Cli;
using DiffusionCore.Cli.Commands;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using NUnit.Framework;

namespace DiffusionCore.Tests.Cli;

/// <summary>
/// The `diffusion` command end to end, in-process: train, resume, sample with several samplers, likelihood,
/// a CNF run, and the errors a user meets (unknown options, combinations that do not fit, a corrupt
/// checkpoint). Runs are tiny (tens of steps): these tests check that the pipeline is wired and writes what it
/// promises, not that the models are good (Tests/Training/ToyObjectiveEndToEndTests does that).
/// </summary>
[TestFixture]
[NonParallelizable] // The commands write to Console.Out, which the tests swap process-wide to read it.
public class CliTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private string _root = "";
    private string _ddpmDir = "";
    private string _trainOutput = "";

    private string Checkpoint => Path.Combine(_ddpmDir, "checkpoint.safetensors");

    /// <summary>One DDPM run (linear 1000-step schedule, so it also has a VP-SDE view) shared by the sample and likelihood tests.</summary>
    [OneTimeSetUp]
    public void TrainSharedRun()
    {
        _root = Path.Combine(Path.GetTempPath(), "diffusioncore-cli-tests-" + Guid.NewGuid().ToString("N"));
        _ddpmDir = Path.Combine(_root, "ddpm");
        (int code, _trainOutput) = Invoke(TrainCommand.Run, "--model", "mlp-2d", "--data", "8gaussians", "--steps", "60", "--batch", "64", "--out", _ddpmDir);
        Assert.That(code, Is.Zero, _trainOutput);
    }

    [OneTimeTearDown]
    public void RemoveTemporaryFiles()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>Runs a command with its standard output captured (and echoed to the test log).</summary>
    private static (int Code, string Output) Invoke(Func<Arguments, CancellationToken, int> command, params string[] args)
    {
        var previous = Console.Out;
        using var writer = new StringWriter(CultureInfo.InvariantCulture);
        Console.SetOut(writer);
        try
        {
            int code = command(new Arguments(args), CancellationToken.None);
            return (code, writer.ToString());
        }
        finally
        {
            Console.SetOut(previous);
            TestContext.Out.Write(writer.ToString());
        }
    }

    /// <summary>The message of the <see cref="UsageException"/> the command must throw.</summary>
    private static string UsageError(Func<Arguments, CancellationToken, int> command, params string[] args)
    {
        var e = Assert.Throws<UsageException>(() => Invoke(command, args))!;
        TestContext.Out.WriteLine($"usage error: {e.Message}");
        return e.Message;
    }

    private static void AssertPng(string path)
    {
        Assert.That(File.Exists(path), $"{path} must exist");
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes.Length, Is.GreaterThan(PngSignature.Length + 100), $"{path} is too short for an image");
        Assert.That(bytes[..PngSignature.Length], Is.EqualTo(PngSignature), $"{path} must be a PNG");
    }

    /// <summary>The log's (step, loss) rows; the header must be the trainer's.</summary>
    private static (long Step, double Loss)[] ReadLog(string dir)
    {
        var lines = File.ReadAllLines(Path.Combine(dir, "train_log.csv"));
        Assert.That(lines[0], Is.EqualTo("step,loss,lr,steps_per_second"));
        return lines.Skip(1).Select(l => l.Split(',')).Select(f => (long.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[1], CultureInfo.InvariantCulture))).ToArray();
    }

    [Test]
    public void TrainWritesCheckpointLogPlotsAndScoresItsSamples()
    {
        Assert.That(File.Exists(Checkpoint));
        var file = SafeTensors.Load(Checkpoint);
        Assert.That(file.Metadata["model"], Is.EqualTo("mlp-2d"));
        Assert.That(file.Metadata["data"], Is.EqualTo("8gaussians"));
        Assert.That(file.Metadata["objective"], Is.EqualTo("ddpm"));
        var log = ReadLog(_ddpmDir);
        Assert.That(log.Select(r => r.Step), Is.EqualTo(Enumerable.Range(1, 60).Select(i => (long)i)));
        Assert.That(log.All(r => double.IsFinite(r.Loss)));
        AssertPng(Path.Combine(_ddpmDir, "train_loss.png"));
        AssertPng(Path.Combine(_ddpmDir, "samples.png"));
        // The linear 1000-step DDPM schedule is the VP SDE's discretisation, so the run also draws its probability-flow paths.
        AssertPng(Path.Combine(_ddpmDir, "trajectories.png"));
        Assert.That(_trainOutput, Does.Contain("energy distance"));
        Assert.That(_trainOutput, Does.Match(@"model samples\s+\d+\.\d+"));
    }

    [Test]
    public void ResumeContinuesTheSameRunToTheNewStepCount()
    {
        // Resume a copy, so that the shared run stays at step 60 for the other tests.
        string dir = Path.Combine(_root, "resumed");
        Directory.CreateDirectory(dir);
        foreach (var name in new[] { "checkpoint.safetensors", "train_log.csv" }) File.Copy(Path.Combine(_ddpmDir, name), Path.Combine(dir, name));
        var before = ReadLog(dir);

        var (code, output) = Invoke(TrainCommand.Run, "--out", dir, "--resume", "--steps", "90");

        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("resumed").And.Contain("at step 60 of 90"));
        var log = ReadLog(dir);
        Assert.That(log.Select(r => r.Step), Is.EqualTo(Enumerable.Range(1, 90).Select(i => (long)i)), "one row per step, none repeated or missing");
        Assert.That(log.Take(60).Select(r => r.Loss), Is.EqualTo(before.Select(r => r.Loss)), "the first 60 steps' rows are kept as they were");
        Assert.That(SafeTensors.Load(Path.Combine(dir, "checkpoint.safetensors")).Metadata["steps"], Is.EqualTo("90"));
        AssertPng(Path.Combine(dir, "samples.png"));
    }

    [TestCase("ddim", "DDIM")]
    [TestCase("em", "Euler-Maruyama (vp)")]
    [TestCase("ode-rk45", "probability-flow ODE (vp")]
    public void SampleWritesAScatterPlot(string sampler, string description)
    {
        string png = Path.Combine(_root, $"sample-{sampler}.png");
        var (code, output) = Invoke(SampleCommand.Run, "--checkpoint", Checkpoint, "--sampler", sampler, "--steps", "20", "--count", "200", "--out", png);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain(description));
        Assert.That(output, Does.Contain("sampled 200 points"));
        AssertPng(png);
    }

    [Test]
    public void LikelihoodPrintsAPlausibleNll()
    {
        var (code, output) = Invoke(LikelihoodCommand.Run, "--checkpoint", Checkpoint, "--count", "50");
        Assert.That(code, Is.Zero);
        var match = Regex.Match(output, @"NLL (-?\d+\.\d+) nats over 50 points of 8gaussians \(vp probability-flow ODE");
        Assert.That(match.Success, output);
        double nll = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        // An NLL is a cross-entropy, at least the data's entropy: eight Gaussians of std 0.174 (1.07 apart, six
        // stds) have ln 8 + ln(2 pi e 0.174^2) = 1.42 nats; 0.5 below that leaves room for the spread of a 50-point
        // mean. A 60-step model is still near N(0, I), whose cross-entropy on this unit-variance data is
        // ln(2 pi) + 1 = 2.84 nats (measured: 2.89); twice that would mean a broken ODE or divergence term.
        Assert.That(nll, Is.InRange(1.42 - 0.5, 2 * 2.84));
    }

    [Test]
    public void CnfTrainsAndSamplesWithTheFlow()
    {
        string dir = Path.Combine(_root, "cnf");
        var (code, output) = Invoke(TrainCommand.Run, "--model", "cnf-2d", "--data", "8gaussians", "--steps", "20", "--batch", "64", "--out", dir);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("held-out NLL"));
        AssertPng(Path.Combine(dir, "samples.png"));
        AssertPng(Path.Combine(dir, "density.png"));

        var (likelihoodCode, likelihood) = Invoke(LikelihoodCommand.Run, "--checkpoint", Path.Combine(dir, "checkpoint.safetensors"), "--count", "50");
        Assert.That(likelihoodCode, Is.Zero);
        Assert.That(likelihood, Does.Match(@"NLL \d+\.\d+ nats over 50 points of 8gaussians"));

        string png = Path.Combine(dir, "flow.png");
        (code, output) = Invoke(SampleCommand.Run, "--checkpoint", Path.Combine(dir, "checkpoint.safetensors"), "--sampler", "flow", "--count", "200", "--out", png);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("sampled 200 points with CNF decode"));
        AssertPng(png);
    }

    /// <summary>
    /// Every objective `train` accepts builds its loss: a finite scalar whose backward reaches the network's
    /// parameters (one step of batch 4, no training). The CNF case was missing from the loss once.
    /// </summary>
    [TestCase("mlp-2d", "ddpm", false)]
    [TestCase("mlp-2d", "ddpm-vlb", false)]
    [TestCase("mlp-2d", "ncsn", false)]
    [TestCase("mlp-2d", "vp", false)]
    [TestCase("mlp-2d", "subvp", false)]
    [TestCase("mlp-2d", "ve", false)]
    [TestCase("mlp-2d", "vp", true)]
    [TestCase("mlp-2d", "ssm", false)]
    [TestCase("cnf-2d", "cnf", false)]
    [TestCase("classifier-s", "classifier", false)]
    public void EveryObjectiveHasATrainingLoss(string model, string objective, bool importance)
    {
        var config = new RunConfig { Model = model, Data = model == "classifier-s" ? "mnist" : "8gaussians", Objective = objective, Importance = importance, Batch = 4 };
        var run = RunModel.Build(config, new Generator(1));
        var loss = run.Loss(DataSource.Open(config.Data))(new Generator(2));
        Assert.That(loss.Shape, Is.Empty, "a scalar loss");
        Assert.That(double.IsFinite(loss.Item()), $"loss {loss.Item()}");
        loss.Backward();
        var parameters = run.Network.Parameters();
        Assert.That(parameters.Any(p => p.Grad is { } g && g.ToArray().Any(v => v != 0)), "the loss must reach the parameters");
    }

    [Test]
    public void UnknownOptionsAreNamed()
    {
        Assert.That(UsageError(TrainCommand.Run, "--model", "mlp-2d", "--stesp", "10", "--out", Path.Combine(_root, "x")), Does.Contain("'train' does not take --stesp"));
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", Checkpoint, "--temperature", "2"), Does.Contain("'sample' does not take --temperature"));
        Assert.That(UsageError(LikelihoodCommand.Run, "--checkpoint", Checkpoint, "--sampler", "em"), Does.Contain("'likelihood' does not take --sampler"));
        Assert.That(UsageError(TrainCommand.Run, "steps", "10"), Does.Contain("unexpected argument 'steps'"));
    }

    [Test]
    public void BadValuesAndCombinationsSayWhatIsAccepted()
    {
        string dir = Path.Combine(_root, "never-written");
        Assert.That(UsageError(TrainCommand.Run, "--model", "unet-s", "--data", "8gaussians", "--out", dir), Does.Contain("needs image data (--data mnist)"));
        Assert.That(UsageError(TrainCommand.Run, "--model", "mlp-2d", "--data", "mnist", "--out", dir), Does.Contain("needs 2-D toy data"));
        Assert.That(UsageError(TrainCommand.Run, "--model", "cnf-2d", "--objective", "ddpm", "--out", dir), Does.Contain("cnf-2d goes with --objective cnf"));
        Assert.That(UsageError(TrainCommand.Run, "--model", "mlp-9d", "--out", dir), Does.Contain("--model 'mlp-9d' is unknown").And.Contain("mlp-2d"));
        Assert.That(UsageError(TrainCommand.Run, "--objective", "gan", "--out", dir), Does.Contain("--objective 'gan' is unknown").And.Contain("ddpm"));
        Assert.That(UsageError(TrainCommand.Run, "--data", "9gaussians", "--out", dir), Does.Contain("unknown 2-D toy data set '9gaussians'").And.Contain("8gaussians"));
        Assert.That(UsageError(TrainCommand.Run, "--objective", "ddpm", "--importance", "--out", dir), Does.Contain("--importance applies to"));
        Assert.That(UsageError(TrainCommand.Run, "--steps", "-5", "--out", dir), Does.Contain("--steps must be an integer in [1,"));
        Assert.That(UsageError(TrainCommand.Run, "--resume", "--out", dir), Does.Contain("--resume: no checkpoint at"));
        Assert.That(Directory.Exists(dir), Is.False, "a rejected command line writes nothing");

        Assert.That(UsageError(SampleCommand.Run, "--sampler", "ddim"), Does.Contain("needs --checkpoint"));
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", Checkpoint, "--sampler", "als"), Does.Contain("als needs an NCSN-trained model"));
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", Checkpoint, "--sampler", "heun"), Does.Contain("--sampler 'heun' is unknown").And.Contain("ode-heun"));
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", Checkpoint, "--guidance", "2"), Does.Contain("guidance needs a class-labelled data set"));
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", Path.Combine(_root, "missing.safetensors")), Does.Contain("no checkpoint at"));
    }

    [Test]
    public void CorruptCheckpointsGiveAClearError()
    {
        string garbage = Path.Combine(_root, "garbage.safetensors");
        File.WriteAllBytes(garbage, "this is not a checkpoint at all"u8.ToArray());
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", garbage), Does.Contain("cannot read checkpoint").And.Contain(garbage));

        // A checkpoint cut short, as by a full disk or an interrupted copy.
        string truncated = Path.Combine(_root, "truncated.safetensors");
        var bytes = File.ReadAllBytes(Checkpoint);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        Assert.That(UsageError(LikelihoodCommand.Run, "--checkpoint", truncated), Does.Contain("cannot read checkpoint").And.Contain("truncated"));

        // A valid safetensors file that `diffusion train` did not write.
        string foreign = Path.Combine(_root, "foreign.safetensors");
        SafeTensors.Save(foreign, [new("weight", SafeTensor.FromFloats([1f, 2f], 2))]);
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", foreign), Does.Contain("has no 'model' in its metadata"));

        // The metadata of a real run over tensors that do not fit it.
        string mismatched = Path.Combine(_root, "mismatched.safetensors");
        SafeTensors.Save(mismatched, [new("model.weight", SafeTensor.FromFloats([1f, 2f], 2))], SafeTensors.Load(Checkpoint).Metadata);
        Assert.That(UsageError(SampleCommand.Run, "--checkpoint", mismatched), Does.Contain(mismatched));
    }

    [Test]
    public void TheEntryPointReportsUsageErrorsWithExitCode2()
    {
        var entry = typeof(TrainCommand).Assembly.EntryPoint!;
        var previous = Console.Error;
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        Console.SetError(error);
        int code;
        try { code = (int)entry.Invoke(null, [new[] { "train", "--model", "unet-s", "--data", "8gaussians", "--out", Path.Combine(_root, "never") }])!; }
        finally { Console.SetError(previous); }
        TestContext.Out.Write(error.ToString());
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error.ToString(), Does.StartWith("error: --model unet-s needs image data"));

        Console.SetError(error);
        try { code = (int)entry.Invoke(null, [new[] { "fly" }])!; }
        finally { Console.SetError(previous); }
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error.ToString(), Does.Contain("unknown command 'fly'"));
    }
}
