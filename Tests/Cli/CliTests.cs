using System.Globalization;
using System.Text.RegularExpressions;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Pipelines;
using NUnit.Framework;

namespace DiffusionCore.Tests.Cli;

/// <summary>
/// The `diffusion` command end to end, in-process through its real parser (<see cref="CliApp.Run"/>): train, resume,
/// sample with several samplers, likelihood, a CNF run, help, and the errors a user meets. Runs are tiny (tens of
/// steps, few samples): these tests check that the pipeline is wired and writes what it promises, not that the models
/// are good (Tests/Training/ToyObjectiveEndToEndTests does that). Every error must be one line starting "error: " on
/// standard error with exit code 2, and nothing on standard error otherwise.
/// </summary>
[TestFixture]
[NonParallelizable] // The commands write to Console.Out and Console.Error, which the tests swap process-wide to read them.
public class CliTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private string _root = "";
    private string _ddpmDir = "";
    private string _trainOutput = "";

    private string Checkpoint => Path.Combine(_ddpmDir, "checkpoint.safetensors");

    /// <summary>
    /// One DDPM run (linear 1000-step schedule, so it also has a VP-SDE view) shared by the sample and likelihood tests;
    /// a warm-up of 6 steps so that 60 steps move the model off its initialisation.
    /// </summary>
    [OneTimeSetUp]
    public void TrainSharedRun()
    {
        _root = Path.Combine(Path.GetTempPath(), "diffusioncore-cli-tests-" + Guid.NewGuid().ToString("N"));
        _ddpmDir = Path.Combine(_root, "ddpm");
        (int code, _trainOutput, string error) = Run("train", "--model", "mlp-2d", "--data", "8gaussians", "--steps", "60", "--batch", "64", "--warmup", "6",
            "--samples", "300", "--out", _ddpmDir);
        Assert.That(code, Is.Zero, _trainOutput + error);
    }

    [OneTimeTearDown]
    public void RemoveTemporaryFiles()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>Runs the command line with standard output and error captured (and echoed to the test log).</summary>
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var (previousOut, previousError) = (Console.Out, Console.Error);
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        Console.SetOut(output);
        Console.SetError(error);
        try
        {
            int code = CliApp.Run(args, CancellationToken.None);
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetOut(previousOut);
            Console.SetError(previousError);
            TestContext.Out.WriteLine($"$ diffusion {string.Join(' ', args)}");
            TestContext.Out.Write(output.ToString());
            TestContext.Out.Write(error.ToString());
        }
    }

    /// <summary>Runs a command line that must fail: exit code 2 and exactly one line "error: ..." on standard error; returns the line.</summary>
    private static string Error(params string[] args)
    {
        var (code, _, error) = Run(args);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(code, Is.EqualTo(CliApp.UsageExit), $"exit code of: diffusion {string.Join(' ', args)}");
        Assert.That(lines, Has.Length.EqualTo(1), $"one line on standard error, got: {error}");
        Assert.That(lines[0], Does.StartWith("error: "));
        Assert.That(error, Does.Not.Contain("   at "), "no stack trace");
        return lines[0];
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

    private string CopyRun(string name)
    {
        string dir = Path.Combine(_root, name);
        Directory.CreateDirectory(dir);
        foreach (var file in new[] { "checkpoint.safetensors", "train_log.csv" }) File.Copy(Path.Combine(_ddpmDir, file), Path.Combine(dir, file));
        return dir;
    }

    /// <summary>A fresh (untrained) model saved through the public API: enough for paths that fail before or right after sampling.</summary>
    private string SavedModel(string name, ModelConfig config)
    {
        string path = Path.Combine(_root, "models", name + ".safetensors");
        DiffusionModel.Create(config, new Generator(1)).Save(path);
        return path;
    }

    [Test]
    public void TrainWritesCheckpointLogPlotsAndScoresItsSamples()
    {
        Assert.That(File.Exists(Checkpoint));
        var metadata = SafeTensors.Load(Checkpoint).Metadata;
        var config = ModelConfig.FromJson(metadata[ModelConfig.MetadataKey], "test");
        Assert.That((config.Network, config.Data, config.Objective.Name), Is.EqualTo(("mlp-2d", "8gaussians", "ddpm")));
        var training = TrainingConfig.FromJson(metadata[TrainingConfig.MetadataKey], "test");
        Assert.That((training.Steps, training.Batch, training.WarmupSteps), Is.EqualTo((60, 64, 6)));
        var log = ReadLog(_ddpmDir);
        Assert.That(log.Select(r => r.Step), Is.EqualTo(Enumerable.Range(1, 60).Select(i => (long)i)));
        Assert.That(log.All(r => double.IsFinite(r.Loss)));
        AssertPng(Path.Combine(_ddpmDir, "train_loss.png"));
        AssertPng(Path.Combine(_ddpmDir, "samples.png"));
        // The linear 1000-step DDPM schedule is the VP SDE's discretisation, so the run also draws its probability-flow paths.
        AssertPng(Path.Combine(_ddpmDir, "trajectories.png"));
        Assert.That(_trainOutput, Does.Contain("energy distance"));
        Assert.That(_trainOutput, Does.Match(@"model samples\s+\d+\.\d+"));
        Assert.That(Directory.GetFiles(_ddpmDir).Select(Path.GetFileName), Has.None.EndsWith(".tmp"), "no temporary file is left");
    }

    [Test]
    public void ResumeContinuesTheSameRunToTheNewStepCount()
    {
        string dir = CopyRun("resumed");
        var before = ReadLog(dir);

        var (code, output, _) = Run("train", "--out", dir, "--resume", "--steps", "90", "--samples", "0");

        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("resumed").And.Contain("at step 60 of 90"));
        var log = ReadLog(dir);
        Assert.That(log.Select(r => r.Step), Is.EqualTo(Enumerable.Range(1, 90).Select(i => (long)i)), "one row per step, none repeated or missing");
        Assert.That(log.Take(60).Select(r => r.Loss), Is.EqualTo(before.Select(r => r.Loss)), "the first 60 steps' rows are kept as they were");
        var metadata = SafeTensors.Load(Path.Combine(dir, "checkpoint.safetensors")).Metadata;
        Assert.That(TrainingConfig.FromJson(metadata[TrainingConfig.MetadataKey], "test").Steps, Is.EqualTo(90));
        AssertPng(Path.Combine(dir, "train_loss.png"));
    }

    /// <summary>
    /// 10 steps, then resumed to 20, ends in the same bytes as 20 straight: the warm-up (here the default, 100 steps, longer
    /// than either run) is the run's own and does not depend on the total.
    /// </summary>
    [Test]
    public void ResumeToANewTotalIsBitIdenticalToAStraightRun()
    {
        string split = Path.Combine(_root, "split"), straight = Path.Combine(_root, "straight");
        string[] common = ["--data", "two-moons", "--batch", "16", "--samples", "0", "--checkpoint-every", "0"];
        Assert.That(Run(["train", .. common, "--steps", "10", "--out", split]).Code, Is.Zero);
        Assert.That(Run(["train", "--out", split, "--resume", "--steps", "20", "--samples", "0"]).Code, Is.Zero);
        Assert.That(Run(["train", .. common, "--steps", "20", "--out", straight]).Code, Is.Zero);
        var a = SafeTensors.Load(Path.Combine(split, "checkpoint.safetensors"));
        var b = SafeTensors.Load(Path.Combine(straight, "checkpoint.safetensors"));
        Assert.That(a.Names, Is.EquivalentTo(b.Names));
        var differing = a.Names.Where(n => !a.Tensors[n].Data.SequenceEqual(b.Tensors[n].Data)).ToArray();
        Assert.That(differing, Is.Empty, "tensors that differ between the resumed and the straight run");
    }

    [TestCase("ddim", "DDIM")]
    [TestCase("em", "Euler-Maruyama (vp)")]
    [TestCase("ode-rk45", "probability-flow ODE (vp")]
    public void SampleWritesAScatterPlotBesideItsOutput(string sampler, string description)
    {
        string trajectories = Path.Combine(_ddpmDir, "trajectories.png");
        var runTrajectories = File.ReadAllBytes(trajectories);
        string png = Path.Combine(_root, "elsewhere", $"sample-{sampler}.png");
        string[] steps = sampler == "ode-rk45" ? [] : ["--steps", "20"];
        var (code, output, error) = Run(["sample", "--checkpoint", Checkpoint, "--sampler", sampler, .. steps, "--count", "200", "--out", png]);
        Assert.That(code, Is.Zero, error);
        Assert.That(error, Is.Empty);
        Assert.That(output, Does.Contain(description));
        Assert.That(output, Does.Contain("sampled 200 points"));
        AssertPng(png);
        AssertPng(Path.Combine(_root, "elsewhere", $"sample-{sampler}-trajectories.png"));
        Assert.That(File.ReadAllBytes(trajectories), Is.EqualTo(runTrajectories), "the run's own trajectories.png is not touched");
    }

    [Test]
    public void LikelihoodPrintsAPlausibleNllAndItsProgress()
    {
        var (code, output, _) = Run("likelihood", "--checkpoint", Checkpoint, "--count", "50");
        Assert.That(code, Is.Zero);
        var match = Regex.Match(output, @"NLL (-?\d+\.\d+) nats over 50 points of 8gaussians \(vp probability-flow ODE");
        Assert.That(match.Success, output);
        Assert.That(output, Does.Contain("likelihood [##############################] 100.0%"), "the progress line of the finished ODE");
        double nll = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        // An NLL is a cross-entropy, at least the data's entropy: eight Gaussians of std 0.174 (1.07 apart, six
        // stds) have ln 8 + ln(2 pi e 0.174^2) = 1.42 nats; 0.5 below that leaves room for the spread of a 50-point
        // mean. A 60-step model is still near N(0, I), whose cross-entropy on this unit-variance data is
        // ln(2 pi) + 1 = 2.84 nats; twice that would mean a broken ODE or divergence term.
        Assert.That(nll, Is.InRange(1.42 - 0.5, 2 * 2.84));
    }

    [Test]
    public void CnfTrainsAndSamplesWithTheFlow()
    {
        string dir = Path.Combine(_root, "cnf");
        var (code, output, _) = Run("train", "--model", "cnf-2d", "--data", "8gaussians", "--steps", "20", "--batch", "64", "--out", dir);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("held-out NLL"));
        AssertPng(Path.Combine(dir, "samples.png"));
        AssertPng(Path.Combine(dir, "density.png"));

        var (likelihoodCode, likelihood, _) = Run("likelihood", "--checkpoint", Path.Combine(dir, "checkpoint.safetensors"), "--count", "50");
        Assert.That(likelihoodCode, Is.Zero);
        Assert.That(likelihood, Does.Match(@"NLL \d+\.\d+ nats over 50 points of 8gaussians"));

        string png = Path.Combine(dir, "flow.png");
        (code, output, _) = Run("sample", "--checkpoint", Path.Combine(dir, "checkpoint.safetensors"), "--sampler", "flow", "--count", "200", "--out", png);
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("sampled 200 points with CNF decode"));
        AssertPng(png);
    }

    [Test]
    public void ImageModelsWriteACaptionedGuidedGridAndOneFilePerImage()
    {
        string checkpoint = SavedModel("cond", ModelConfig.Create("unet-s", "mnist", "ddpm", classes: 10));
        string grid = Path.Combine(_root, "guided", "grid.png"), images = Path.Combine(_root, "guided", "each");
        var (code, output, error) = Run("sample", "--checkpoint", checkpoint, "--sampler", "ddim", "--steps", "2", "--count", "10", "--guidance", "3", "--out", grid, "--images", images);
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("sampled 10 images with DDIM"));
        AssertPng(grid);
        var files = Directory.GetFiles(images).Select(Path.GetFileName).Order().ToArray();
        Assert.That(files, Is.EqualTo(Enumerable.Range(0, 10).Select(i => $"sample-{i:000}-class{i}.png")), "one file per image, named with its class");
        AssertPng(Path.Combine(images, files[0]!));
    }

    [Test]
    public void HelpListsTheCommandsAndEachCommandHasItsOwn()
    {
        var (code, output, error) = Run("help");
        Assert.That(code, Is.Zero);
        Assert.That(error, Is.Empty);
        foreach (var name in new[] { "demo", "train", "sample", "likelihood", "help" }) Assert.That(output, Does.Match($@"\n  {name}\s+\S"), $"'{name}' on a line of its own");

        (code, output, _) = Run("train", "--help");
        Assert.That(code, Is.Zero);
        Assert.That(output, Does.Contain("--steps <N>").And.Contain("--resume").And.Contain("--device <cpu|cuda[:N]|best>"));

        (code, output, _) = Run("help", "sample");
        Assert.That(code, Is.Zero);
        foreach (var sampler in SamplerCatalog.Names) Assert.That(output, Does.Contain($"  {sampler} "), "every sampler in the sample help");
        Assert.That(Run().Code, Is.Zero, "no arguments prints the list");
    }

    [Test]
    public void ParseErrorsAreOneLineAndSuggestTheNearestName()
    {
        string dir = Path.Combine(_root, "never-written");
        Assert.That(Error("train", "--steps"), Is.EqualTo("error: --steps needs a value"));
        Assert.That(Error("train", "--out"), Is.EqualTo("error: --out needs a value"));
        Assert.That(Error("train", "--steps", "3", "--steps", "4", "--out", dir), Is.EqualTo("error: --steps is given 2 times; give it once"));
        Assert.That(Error("train", "--resume", "no"), Is.EqualTo("error: --resume is a flag and takes no value, got 'no'"));
        Assert.That(Error("train", "--stesp", "10", "--out", dir), Does.Contain("'diffusion train' does not take --stesp; did you mean --steps?"));
        Assert.That(Error("trian"), Does.Contain("unknown command 'trian'; did you mean train?"));
        Assert.That(Error("help", "smaple"), Does.Contain("unknown command 'smaple'; did you mean sample?"));
        Assert.That(Error("train", "--steps", "-5"), Does.Contain("--steps must be an integer in [1, 100000000], got '-5'"));
        Assert.That(Error("train", "--steps", "ten"), Does.Contain("--steps must be an integer"));
        Assert.That(Error("train", "--lr", "NaN"), Does.Contain("--lr must be a number"));
        Assert.That(Error("train", "--model", "mlp-9d"), Does.Contain("--model 'mlp-9d' is unknown; did you mean mlp-2d?"));
        Assert.That(Error("train", "--objective", "gan"), Does.Contain("--objective 'gan' is unknown").And.Contain("ddpm"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--sampler", "ddpn"), Does.Contain("--sampler 'ddpn' is unknown; did you mean ddpm?"));
        Assert.That(Error("sample", "--sampler", "ddim"), Does.Contain("--checkpoint").And.Contain("required"));
        Assert.That(Error("likelihood", "--checkpoint", Checkpoint, "--sampler", "em"), Does.Contain("'diffusion likelihood' does not take --sampler"));
        Assert.That(Error("train", "steps", "10"), Does.Contain("unexpected argument 'steps'"));
        Assert.That(Error("train", "--device", "gpu"), Does.Contain("--device must be cpu, cuda, cuda:N or best, got 'gpu'"));
        Assert.That(Directory.Exists(dir), Is.False, "a rejected command line writes nothing");
    }

    [Test]
    public void BadCombinationsSayWhatIsAccepted()
    {
        string dir = Path.Combine(_root, "never-written-2");
        Assert.That(Error("train", "--model", "unet-s", "--data", "8gaussians", "--out", dir), Does.Contain("model unet-s needs image data (mnist)"));
        Assert.That(Error("train", "--model", "mlp-2d", "--data", "mnist", "--out", dir), Does.Contain("needs 2-D toy data"));
        Assert.That(Error("train", "--model", "cnf-2d", "--objective", "ddpm", "--out", dir), Does.Contain("cnf-2d goes with objective cnf"));
        Assert.That(Error("train", "--objective", "ddpm", "--importance", "--out", dir), Does.Contain("importance sampling applies to"));
        Assert.That(Error("train", "--objective", "ncsn", "--schedule", "cosine", "--out", dir), Does.Contain("--schedule does not apply to --objective ncsn"));
        Assert.That(Error("train", "--objective", "ddpm", "--levels", "5", "--out", dir), Does.Contain("--levels does not apply to --objective ddpm"));
        Assert.That(Error("train", "--resume", "--out", dir), Does.Contain("--resume: no checkpoint at"));
        Assert.That(Directory.Exists(dir), Is.False, "a rejected command line writes nothing");

        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--sampler", "als"), Does.Contain("als needs an NCSN-trained model"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--sampler", "ddpm", "--steps", "10"), Does.Contain("--steps does not apply to --sampler ddpm"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--sampler", "ode-rk45", "--steps", "10"), Does.Contain("--steps does not apply to --sampler ode-rk45"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--sampler", "em", "--eta", "0.5"), Does.Contain("--eta applies to --sampler ddim only, not em"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--guidance", "2"), Does.Contain("guidance and classes need a class-labelled data set"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--images", Path.Combine(_root, "x")), Does.Contain("this model samples 2-D points"));
        Assert.That(Error("likelihood", "--checkpoint", Checkpoint, "--probes", "4"), Does.Contain("--probes does not apply to a 2-D model"));
    }

    [Test]
    public void ClassLabelsOutsideTheModelsClassesAreRefused()
    {
        string conditional = SavedModel("cond10", ModelConfig.Create("unet-s", "mnist", "ddpm", classes: 10));
        Assert.That(Error("sample", "--checkpoint", conditional, "--class", "11"), Does.Contain("class 11 is out of range: the model knows classes 0 to 9"));
        Assert.That(Error("sample", "--checkpoint", conditional, "--guidance", "3", "--class", "12"), Does.Contain("class 12 is out of range"));
        string unconditional = SavedModel("uncond", ModelConfig.Create("unet-s", "mnist", "ddpm"));
        Assert.That(Error("sample", "--checkpoint", unconditional, "--guidance", "3"), Does.Contain("this model is unconditional"));
        Assert.That(Error("sample", "--checkpoint", conditional, "--classifier", unconditional), Does.Contain("--classifier is for unconditional models"));
        Assert.That(Error("sample", "--checkpoint", unconditional, "--classifier", conditional, "--guidance", "2"), Does.Contain("not a noisy classifier"));
    }

    [Test]
    public void OutputPathsAreCheckedBeforeAnyWork()
    {
        string file = Path.Combine(_root, "a-file");
        File.WriteAllText(file, "x");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.That(Error("train", "--steps", "100000", "--out", file), Does.Contain($"--out {file} is an existing file, not a directory"));
        Assert.That(Error("train", "--steps", "100000", "--out", Path.Combine(file, "sub")), Does.Contain("is a file, so no directory can be made under it"));
        Assert.That(Error("train", "--out", _ddpmDir), Does.Contain("already holds a checkpoint; continue it with --resume"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--out", _root), Does.Contain($"--out {_root} is a directory"));
        Assert.That(Error("sample", "--checkpoint", Checkpoint, "--out", Path.Combine(_root, "samples.jpg")), Does.Contain("must end in .png"));
        Assert.That(Error("demo", "--out", file), Does.Contain("is a file"));
        // Failing before training means failing at once; 100,000 steps would take minutes.
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(60));
    }

    [Test]
    public void ResumeRefusesDamagedCheckpointsAndChangedSettings()
    {
        string done = CopyRun("resume-at-or-below");
        Assert.That(Error("train", "--out", done, "--resume", "--steps", "60"), Does.Contain("already at step 60; a total of 60 steps leaves nothing to train"));
        Assert.That(Error("train", "--out", done, "--resume", "--steps", "30"), Does.Contain("already at step 60"));
        Assert.That(Error("train", "--out", done, "--resume", "--lr", "0.1"), Does.Contain("--lr cannot be changed"));

        string truncated = CopyRun("resume-truncated");
        var bytes = File.ReadAllBytes(Checkpoint);
        File.WriteAllBytes(Path.Combine(truncated, "checkpoint.safetensors"), bytes[..(bytes.Length / 2)]);
        Assert.That(Error("train", "--out", truncated, "--resume", "--steps", "90"), Does.Contain("truncated").Or.Contain("cut short").Or.Contain("extends"));

        string damaged = CopyRun("resume-damaged");
        File.WriteAllBytes(Path.Combine(damaged, "checkpoint.safetensors"), "not a checkpoint at all, just text"u8.ToArray());
        Assert.That(Error("train", "--out", damaged, "--resume", "--steps", "90"), Does.Contain(Path.Combine(damaged, "checkpoint.safetensors")));

        // The metadata of the run over tensors that do not fit it.
        string inconsistent = CopyRun("resume-inconsistent");
        var file = SafeTensors.Load(Checkpoint);
        var tensors = file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, n.EndsWith("trainer.step", StringComparison.Ordinal) ? SafeTensor.FromInt64([59]) : file.Tensors[n]));
        SafeTensors.Save(Path.Combine(inconsistent, "checkpoint.safetensors"), tensors, file.Metadata);
        Assert.That(Error("train", "--out", inconsistent, "--resume", "--steps", "90"), Does.Contain("disagree"));

        // Settings changed behind the run's back: the warm-up recorded for the trainer differs from the training config.
        string changed = CopyRun("resume-changed");
        var metadata = new Dictionary<string, string>(file.Metadata) { ["trainer.warmup_steps"] = "7" };
        SafeTensors.Save(Path.Combine(changed, "checkpoint.safetensors"), file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, file.Tensors[n])), metadata);
        Assert.That(Error("train", "--out", changed, "--resume", "--steps", "90"), Does.Contain("metadata 'trainer.warmup_steps' is '7', this run has '6'"));
    }

    [Test]
    public void BadCheckpointFilesAreProblemsOfTheFile()
    {
        string garbage = Path.Combine(_root, "garbage.safetensors");
        File.WriteAllBytes(garbage, "this is not a checkpoint at all"u8.ToArray());
        Assert.That(Error("sample", "--checkpoint", garbage), Does.Contain(garbage));

        // A checkpoint cut short, as by a full disk or an interrupted copy.
        string truncated = Path.Combine(_root, "truncated.safetensors");
        var bytes = File.ReadAllBytes(Checkpoint);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        Assert.That(Error("likelihood", "--checkpoint", truncated), Does.Contain(truncated));

        // A valid safetensors file that DiffusionCore did not write.
        string foreign = Path.Combine(_root, "foreign.safetensors");
        SafeTensors.Save(foreign, [new("weight", SafeTensor.FromFloats([1f, 2f], 2))]);
        Assert.That(Error("sample", "--checkpoint", foreign), Does.Contain(foreign).And.Contain("has no 'model_config'"));

        // Metadata naming a model this version does not know: the file's problem, not a --model the user never gave.
        var file = SafeTensors.Load(Checkpoint);
        string unknown = Path.Combine(_root, "unknown-model.safetensors");
        var config = ModelConfig.FromJson(file.Metadata[ModelConfig.MetadataKey], "test") with { Network = "mlp-9d" };
        SafeTensors.Save(unknown, file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, file.Tensors[n])),
            new Dictionary<string, string>(file.Metadata) { [ModelConfig.MetadataKey] = config.ToJson() });
        string message = Error("sample", "--checkpoint", unknown);
        Assert.That(message, Does.Contain($"checkpoint '{unknown}'").And.Contain("model 'mlp-9d' is unknown").And.Not.Contain("--model"));

        // Unreadable JSON in the metadata.
        string badJson = Path.Combine(_root, "bad-json.safetensors");
        SafeTensors.Save(badJson, file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, file.Tensors[n])),
            new Dictionary<string, string>(file.Metadata) { [ModelConfig.MetadataKey] = "{\"network\": 3" });
        Assert.That(Error("sample", "--checkpoint", badJson), Does.Contain(badJson).And.Contain("model config is not valid"));

        // NaN weights, named with the file and the tensor.
        string nan = Path.Combine(_root, "nan.safetensors");
        string poisoned = file.Names.First(n => n.StartsWith("ema.", StringComparison.Ordinal));
        var values = file.Tensors[poisoned].ToFloatArray();
        values[3] = float.NaN;
        SafeTensors.Save(nan, file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, n == poisoned ? SafeTensor.FromFloats(values, file.Tensors[n].Shape) : file.Tensors[n])), file.Metadata);
        Assert.That(Error("sample", "--checkpoint", nan), Does.Contain(nan).And.Contain($"tensor '{poisoned}' has 1 non-finite value (the first at flat index 3)"));

        // The metadata of a real run over tensors that do not fit it.
        string mismatched = Path.Combine(_root, "mismatched.safetensors");
        SafeTensors.Save(mismatched, [new("model.weight", SafeTensor.FromFloats([1f, 2f], 2))], file.Metadata);
        Assert.That(Error("sample", "--checkpoint", mismatched), Does.Contain(mismatched));

        Assert.That(Error("sample", "--checkpoint", _root), Does.Contain("is a directory; give the checkpoint file"));
        Assert.That(Error("sample", "--checkpoint", Path.Combine(_root, "missing.safetensors")), Does.Contain("no checkpoint at"));
    }

    /// <summary>Checkpoints written before the typed configs (flat metadata keys) still sample and resume.</summary>
    [Test]
    public void CheckpointsWithTheOlderFlatMetadataStillLoad()
    {
        string dir = CopyRun("legacy");
        string path = Path.Combine(dir, "checkpoint.safetensors");
        var file = SafeTensors.Load(Checkpoint);
        var metadata = file.Metadata.Where(kv => kv.Key is not (ModelConfig.MetadataKey or TrainingConfig.MetadataKey)).ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (key, value) in new Dictionary<string, string>
        {
            ["model"] = "mlp-2d", ["data"] = "8gaussians", ["objective"] = "ddpm", ["importance"] = "false", ["schedule"] = "linear", ["timesteps"] = "1000",
            ["sigma_max"] = "1", ["sigma_min"] = "0.01", ["levels"] = "10", ["classes"] = "0", ["p_uncond"] = "0.1", ["steps"] = "60", ["batch"] = "64",
            ["lr"] = "0.002", ["seed"] = "0",
        }) metadata[key] = value;
        SafeTensors.Save(path, file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, file.Tensors[n])), metadata);

        var (code, output, error) = Run("sample", "--checkpoint", path, "--sampler", "ddim", "--steps", "5", "--count", "50", "--out", Path.Combine(dir, "s.png"));
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("loaded").And.Contain("mlp-2d"));
        (code, output, error) = Run("train", "--out", dir, "--resume", "--steps", "65", "--samples", "0");
        Assert.That(code, Is.Zero, error);
        Assert.That(output, Does.Contain("at step 60 of 65"));
    }

    [Test]
    public void DevicesAreChosenOrRefusedClearly()
    {
        string png = Path.Combine(_root, "device.png");
        foreach (var device in new[] { "cpu", "best" })
        {
            var (code, _, error) = Run("sample", "--checkpoint", Checkpoint, "--sampler", "ddim", "--steps", "5", "--count", "20", "--out", png, "--device", device);
            Assert.That(code, Is.Zero, $"--device {device}: {error}");
        }
        Assert.That(Device.Default, Is.SameAs(Device.Cpu), "the command restores the default device");
        if (Device.CudaDeviceCount == 0)
        {
            Assert.That(Error("sample", "--checkpoint", Checkpoint, "--device", "cuda"), Does.Contain("--device cuda: no CUDA device found"));
            Assert.That(Error("train", "--device", "cuda:1", "--out", Path.Combine(_root, "never-cuda")), Does.Contain("--device cuda:1: no CUDA device found"));
            Assert.That(Error("likelihood", "--checkpoint", Checkpoint, "--device", "cuda:0"), Does.Contain("no CUDA device found"));
            Assert.That(Error("demo", "--device", "cuda", "--out", Path.Combine(_root, "never-demo")), Does.Contain("no CUDA device found"));
            Assert.That(Directory.Exists(Path.Combine(_root, "never-cuda")), Is.False);
        }
        else
        {
            Assert.That(Error("sample", "--checkpoint", Checkpoint, "--device", $"cuda:{Device.CudaDeviceCount}"), Does.Contain("CUDA device(s)"));
        }
    }

    [Test]
    public void EnvironmentErrorsAreOneLine()
    {
        // Permission denied is an UnauthorizedAccessException, not an IOException; as root no file can be made
        // unreadable, so the mapping is checked directly (and a directory given as a file reaches the same path).
        Assert.That(CliApp.Describe(new UnauthorizedAccessException("Access to the path '/x/checkpoint.safetensors' is denied.")),
            Is.EqualTo("permission denied: Access to the path '/x/checkpoint.safetensors' is denied."));
        Assert.That(CliApp.Describe(new IOException("disk full\nat block 7")), Is.EqualTo("disk full at block 7"), "one line");
        Assert.That(CliApp.Describe(new InvalidOperationException("a bug")), Is.Null, "a bug is not reported as bad input");
    }

    [Test]
    public void TheEntryPointReportsErrorsWithExitCode2()
    {
        var entry = typeof(CliApp).Assembly.EntryPoint!;
        var previous = Console.Error;
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        Console.SetError(error);
        int code;
        try { code = (int)entry.Invoke(null, [new[] { "train", "--model", "unet-s", "--data", "8gaussians", "--out", Path.Combine(_root, "never") }])!; }
        finally { Console.SetError(previous); }
        TestContext.Out.Write(error.ToString());
        Assert.That(code, Is.EqualTo(2));
        Assert.That(error.ToString(), Does.StartWith("error: model unet-s needs image data"));
    }
}
