using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Processes;
using DiffusionCore.Pipelines;
using DiffusionCore.Training.Checkpointing;
using NUnit.Framework;

namespace DiffusionCore.Tests.Pipelines;

/// <summary>
/// The public model and pipeline API: typed configs and their JSON, DiffusionModel.Create/Save/Load, a training
/// session that resumes bit for bit whatever its new total, and the generation pipeline's checks and outputs.
/// </summary>
public sealed class PipelineTests
{
    private string _root = "";

    [SetUp]
    public void MakeDirectory() => _root = Path.Combine(Path.GetTempPath(), "diffusioncore-pipeline-tests-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void RemoveDirectory()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public void ConfigsRoundTripThroughJson()
    {
        var model = ModelConfig.Create("unet-s", "mnist", "ncsn", classes: 10, new ProcessConfig { SigmaMax = 2.5, Levels = 7 }, pUncond: 0.2);
        string json = model.ToJson();
        Assert.That(json, Does.Contain("\"network\":\"unet-s\"").And.Contain("\"sigma_max\":2.5").And.Contain("\"kind\":\"ncsn\""));
        var back = ModelConfig.FromJson(json, "test");
        Assert.That(back with { Process = model.Process, Objective = model.Objective }, Is.EqualTo(model));
        Assert.That((back.Process, back.Objective), Is.EqualTo((model.Process, model.Objective)));
        var training = new TrainingConfig { Steps = 7, WarmupSteps = 3, EmaDecay = null, Seed = ulong.MaxValue };
        Assert.That(TrainingConfig.FromJson(training.ToJson(), "test"), Is.EqualTo(training));
        var e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson("{\"network\":\"mlp-2d\",\"colour\":3}", "file.safetensors"))!;
        Assert.That(e.Message, Does.StartWith("file.safetensors: the model config is not valid"));
    }

    [TestCase("unet-s", "8gaussians", "ddpm", 0, "model unet-s needs image data (mnist)")]
    [TestCase("mlp-2d", "mnist", "ddpm", 0, "needs 2-D toy data")]
    [TestCase("mlp-2d", "9gaussians", "ddpm", 0, "unknown 2-D toy data set '9gaussians'")]
    [TestCase("mlp-2d", "two-moons", "gan", 0, "objective 'gan' is unknown")]
    [TestCase("mlp-2d", "two-moons", "ddpm", 10, "classes needs a class-conditional U-Net")]
    [TestCase("unet-s", "mnist", "ddpm", 7, "classes 7 does not match mnist's 10 labels")]
    [TestCase("unet-s", "mnist", "ssm", 0, "ssm (sliced score matching) is offered for 2-D toy data only")]
    public void InvalidConfigsSayWhy(string network, string data, string objective, int classes, string message)
    {
        var e = Assert.Throws<ConfigException>(() => ModelConfig.Create(network, data, objective, classes).Validate())!;
        Assert.That(e.Message, Does.Contain(message));
    }

    [Test]
    public void ASavedModelLoadsBackToTheSameFunction()
    {
        var config = ModelConfig.Create("mlp-2d", "two-moons", "vp");
        var model = DiffusionModel.Create(config, new Generator(5));
        string path = Path.Combine(_root, "model.safetensors");
        model.Save(path);
        var loaded = DiffusionModel.Load(path);
        Assert.That(loaded.Config, Is.EqualTo(config));
        Assert.That(loaded.Sde, Is.TypeOf<VpSde>());
        Assert.That(loaded.UsesEmaWeights, Is.False, "a weights-only file has no EMA");
        var x = new Generator(6).Normal([8, 2]);
        var level = loaded.Sde!.Level(0.3);
        Assert.That(loaded.ScoreModel.Epsilon(x, level).ToArray(), Is.EqualTo(model.ScoreModel.Epsilon(x, level).ToArray()), "bit for bit");
    }

    [Test]
    public void LoadNamesTheFileForEveryKindOfBadCheckpoint()
    {
        Assert.Throws<FileNotFoundException>(() => DiffusionModel.Load(Path.Combine(_root, "missing.safetensors")));
        Directory.CreateDirectory(_root);
        Assert.That(Assert.Throws<CheckpointException>(() => DiffusionModel.Load(_root))!.Message, Does.Contain("is a directory").Or.Contain("this is a directory"));
        string path = Path.Combine(_root, "m.safetensors");
        DiffusionModel.Create(ModelConfig.Create("mlp-2d", "two-moons", "ddpm"), new Generator(1)).Save(path);
        var file = SafeTensors.Load(path);
        string first = file.Names.First(n => n.StartsWith("model.", StringComparison.Ordinal));
        var values = file.Tensors[first].ToFloatArray();
        values[0] = float.PositiveInfinity;
        values[2] = float.NaN;
        SafeTensors.Save(path, file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, n == first ? SafeTensor.FromFloats(values, file.Tensors[n].Shape) : file.Tensors[n])), file.Metadata);
        var e = Assert.Throws<CheckpointException>(() => DiffusionModel.Load(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain($"tensor '{first}' has 2 non-finite values (the first at flat index 0)"));
    }

    /// <summary>10 steps then resumed to 20 is the same run as 20 straight (every tensor bit for bit), whatever the warm-up.</summary>
    [TestCase(0)]
    [TestCase(15)]
    public void AResumedSessionMatchesAStraightOneWhateverItsNewTotal(int warmup)
    {
        var model = ModelConfig.Create("mlp-2d", "two-moons", "ddpm");
        var training = new TrainingConfig { Steps = 10, Batch = 16, WarmupSteps = warmup, Seed = 3 };
        string split = Path.Combine(_root, "split"), straight = Path.Combine(_root, "straight");
        using (var first = TrainingSession.Start(model, training, split)) first.Run();
        using (var resumed = TrainingSession.Resume(split, steps: 20))
        {
            Assert.That(resumed.StartStep, Is.EqualTo(10));
            Assert.That(resumed.Training.WarmupSteps, Is.EqualTo(warmup), "the warm-up comes from the checkpoint");
            resumed.Run();
        }
        using (var whole = TrainingSession.Start(model, training with { Steps = 20 }, straight)) whole.Run();
        Assert.That(File.ReadAllBytes(Path.Combine(split, "checkpoint.safetensors")), Is.EqualTo(File.ReadAllBytes(Path.Combine(straight, "checkpoint.safetensors"))));
        Assert.That(File.Exists(Path.Combine(split, TrainingSession.LossPlotFileName)), "the session draws the loss plot at each checkpoint");
        var e = Assert.Throws<ConfigException>(() => TrainingSession.Resume(split, steps: 20))!;
        Assert.That(e.Message, Does.Contain("already at step 20"));
    }

    [Test]
    public void ThePipelineChecksItsRequestAgainstTheModel()
    {
        var conditional = new DiffusionPipeline(DiffusionModel.Create(ModelConfig.Create("unet-s", "mnist", "ddpm", classes: 10), new Generator(1)));
        Assert.That(conditional.GuidableClasses, Is.EqualTo(10));
        string Fails(GenerationOptions o) => Assert.Throws<ConfigException>(() => conditional.Validate(o))!.Message;
        Assert.That(Fails(new() { Class = 10 }), Does.Contain("class 10 is out of range: the model knows classes 0 to 9"));
        Assert.That(Fails(new() { Count = 2, Labels = [1, -1] }), Does.Contain("class -1 is out of range"));
        Assert.That(Fails(new() { Count = 3, Labels = [1, 2] }), Does.Contain("2 labels for 3 samples"));
        Assert.That(Fails(new() { Sampler = "ddpm", Steps = 10 }), Does.Contain("sampler ddpm takes no step count"));
        Assert.That(Fails(new() { Sampler = "em", Eta = 0.5 }), Does.Contain("eta is a DDIM setting"));
        Assert.That(Fails(new() { Sampler = "als" }), Does.Contain("als needs an NCSN-trained model"));
        Assert.That(Fails(new() { Sampler = "heun" }), Does.Contain("sampler 'heun' is unknown"));
        Assert.That(Fails(new() { Count = 0 }), Does.Contain("count 0"));
        var toy = new DiffusionPipeline(DiffusionModel.Create(ModelConfig.Create("mlp-2d", "two-moons", "ddpm"), new Generator(1)));
        Assert.That(Assert.Throws<ConfigException>(() => toy.Validate(new() { Guidance = 2 }))!.Message, Does.Contain("class-labelled data set"));
    }

    [Test]
    public void ThePipelineWritesAGridAndOneFilePerImage()
    {
        var pipe = new DiffusionPipeline(DiffusionModel.Create(ModelConfig.Create("unet-s", "mnist", "ddpm", classes: 10), new Generator(1)));
        var samples = pipe.Generate(new GenerationOptions { Sampler = "ddim", Steps = 2, Guidance = 3, Class = 7, Count = 3, Seed = 1 });
        Assert.That(samples.Samples.Shape, Is.EqualTo(new[] { 3, 1, 32, 32 }));
        Assert.That(samples.Labels, Is.EqualTo(new[] { 7, 7, 7 }));
        Assert.That(samples.Description, Does.Contain("DDIM").And.Contain("2 steps"));
        string grid = Path.Combine(_root, "grid.png");
        samples.SaveGrid(grid);
        Assert.That(File.Exists(grid));
        var files = samples.SaveImages(Path.Combine(_root, "each"));
        Assert.That(files.Select(Path.GetFileName), Is.EqualTo(new[] { "sample-000-class7.png", "sample-001-class7.png", "sample-002-class7.png" }));
        Assert.That(files.All(File.Exists));

        var again = pipe.Generate(new GenerationOptions { Sampler = "ddim", Steps = 2, Guidance = 3, Class = 7, Count = 3, Seed = 1 });
        Assert.That(again.Samples.ToArray(), Is.EqualTo(samples.Samples.ToArray()), "the same seed gives the same images");

        var toy = new DiffusionPipeline(DiffusionModel.Create(ModelConfig.Create("mlp-2d", "two-moons", "ddpm"), new Generator(1)))
            .Generate(new GenerationOptions { Sampler = "ddim", Steps = 2, Count = 5 });
        Assert.That(toy.Samples.Shape, Is.EqualTo(new[] { 5, 2 }));
        Assert.Throws<InvalidOperationException>(() => toy.SaveGrid(Path.Combine(_root, "points.png")));
    }
}
