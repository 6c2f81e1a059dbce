using System.Globalization;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Tests.Engine;
using DiffusionCore.Training;
using DiffusionCore.Training.Checkpointing;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Objectives;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>
/// Checkpoints of a training run (weights, EMA, Adam state, generator, step, config) and the trainer's use of
/// them: bit-identical resume, divergence leaving the last checkpoint intact, a failed write leaving the previous
/// file loadable, the CSV log and the loss plot. Every run is mlp-2d shrunk to 16-wide hidden layers on a 50-step
/// DDPM, batch 16, for a dozen steps: the properties tested do not depend on size.
/// </summary>
[TestFixture]
public sealed class CheckpointTests
{
    private const int Batch = 16;
    private static readonly DdpmSchedule Schedule = DdpmSchedule.Linear(50);

    private string directory = "";

    [SetUp]
    public void CreateDirectory()
    {
        directory = Path.Combine(Path.GetTempPath(), "diffusioncore-checkpoint-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
    }

    [TearDown]
    public void DeleteDirectory()
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    private static Mlp2d TinyModel(ulong seed, int hidden = 16, int depth = 2) => new(new Generator(seed), embeddingDim: 8, hidden: hidden, depth: depth);

    // DDPM L_simple on two-moons, with the batch drawn from the trainer's generator (its Philox blocks, then the
    // offset moved past them), so that the generator's (seed, offset) is the run's whole random state.
    private static Func<Generator, Tensor> DdpmLoss(ScoreNetwork model) => g =>
    {
        var batch = Toy2d.Sample(Toy2dKind.TwoMoons, Batch, g.Seed, g.Offset);
        g.Offset += (ulong)(Toy2d.BlocksPerPoint * Batch);
        return DdpmObjective.SimpleLoss(model, Schedule, Tensor.FromArray(batch, Batch, 2), g);
    };

    private static TrainerOptions Options(int steps, string? outputDirectory, int checkpointEvery = 0, double? emaDecay = 0.9) => new()
    {
        Steps = steps,
        LearningRate = 1e-2,
        WarmupSteps = 3,
        EmaDecay = emaDecay,
        OutputDirectory = outputDirectory,
        CheckpointEvery = checkpointEvery,
        Config = new Dictionary<string, string> { ["model"] = "mlp-2d", ["objective"] = "ddpm", ["data"] = "two-moons" },
    };

    private static Trainer NewTrainer(TrainerOptions options, ulong modelSeed = 1, ulong streamSeed = 2, int hidden = 16)
    {
        var model = TinyModel(modelSeed, hidden);
        return new Trainer(model, DdpmLoss(model), options, new Generator(streamSeed));
    }

    private static int[] Bits(Tensor t) => t.ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();

    private static void AssertSameState(Trainer expected, Trainer actual)
    {
        Assert.That(actual.Step, Is.EqualTo(expected.Step), "step");
        var e = expected.Model.NamedParameters().ToList();
        var a = actual.Model.NamedParameters().ToList();
        for (int i = 0; i < e.Count; i++)
        {
            Assert.That(Bits(a[i].Tensor), Is.EqualTo(Bits(e[i].Tensor)), $"weight {e[i].Name}");
            Assert.That(Bits(actual.Ema!.Shadow[i]), Is.EqualTo(Bits(expected.Ema!.Shadow[i])), $"EMA {e[i].Name}");
        }
        foreach (var (name, t) in expected.Optimizer.State())
            Assert.That(Bits(actual.Optimizer.State()[name]), Is.EqualTo(Bits(t)), $"optimizer {name}");
        Assert.That(actual.Generator.Seed, Is.EqualTo(expected.Generator.Seed), "generator seed");
        Assert.That(actual.Generator.Offset, Is.EqualTo(expected.Generator.Offset), "generator offset");
        Assert.That(actual.Losses, Is.EqualTo(expected.Losses), "loss history");
    }

    [Test]
    public void ResumingFromAHalfwayCheckpointGivesBitIdenticalTraining()
    {
        const int steps = 12;
        string straightDir = Path.Combine(directory, "straight"), splitDir = Path.Combine(directory, "split");
        var straight = NewTrainer(Options(steps, straightDir, checkpointEvery: 4));
        straight.Run();

        var firstHalf = NewTrainer(Options(steps / 2, splitDir));
        firstHalf.Run();
        Assert.That(File.Exists(firstHalf.CheckpointPath), "a checkpoint is written at the end of Run");

        // A fresh process: other initial weights and another stream, so that only the checkpoint can make them agree.
        var resumed = NewTrainer(Options(steps, splitDir), modelSeed: 99, streamSeed: 98);
        Assert.That(Bits(resumed.Model.Parameters()[0]), Is.Not.EqualTo(Bits(firstHalf.Model.Parameters()[0])));
        var info = resumed.Resume(firstHalf.CheckpointPath!);
        Assert.That(info.Step, Is.EqualTo(steps / 2));
        Assert.That(info.Config["model"], Is.EqualTo("mlp-2d"));
        AssertSameState(firstHalf, resumed);
        resumed.Run();

        AssertSameState(straight, resumed);
        // Same state and same settings: the final checkpoints are the same bytes.
        Assert.That(File.ReadAllBytes(resumed.CheckpointPath!), Is.EqualTo(File.ReadAllBytes(straight.CheckpointPath!)));

        // The log holds each step once, across the two sessions, with the loss of that step and its warm-up rate.
        var rows = ReadLog(resumed.LogPath!);
        Assert.That(rows.Select(r => r.Step), Is.EqualTo(Enumerable.Range(1, steps).Select(s => (long)s)));
        Assert.That(rows.Select(r => r.Loss), Is.EqualTo(straight.Losses));
        Assert.That(rows.Select(r => r.LearningRate), Is.EqualTo(Enumerable.Range(1, steps).Select(s => straight.LearningRateAt(s))));
        Assert.That(rows.All(r => r.StepsPerSecond > 0));
    }

    [Test]
    public void ANonFiniteLossStopsTrainingAndKeepsTheLastGoodCheckpoint()
    {
        const int divergingStep = 5;
        Trainer? trainer = null;
        var model = TinyModel(1);
        var ddpm = DdpmLoss(model);
        trainer = new Trainer(model, g => trainer!.Step + 1 == divergingStep ? Tensor.Scalar(double.NaN) : ddpm(g),
            Options(10, directory, checkpointEvery: 3), new Generator(2));

        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Run());
        Assert.That(e!.Step, Is.EqualTo(divergingStep));
        Assert.That(e.Message, Does.Contain($"step {divergingStep}").And.Contain("NaN").And.Contain(trainer.CheckpointPath!));
        Assert.That(e.LastCheckpoint, Is.EqualTo(trainer.CheckpointPath));
        Assert.That(e.LastCheckpointStep, Is.EqualTo(3));
        Assert.That(trainer.Step, Is.EqualTo(divergingStep - 1), "the diverging step changes nothing");
        Assert.That(model.Parameters().All(p => p.ToArray().All(float.IsFinite)));
        // The log keeps the steps before the divergence, to show how it came.
        Assert.That(ReadLog(trainer.LogPath!).Select(r => r.Step), Is.EqualTo(new long[] { 1, 2, 3, 4 }));

        // The checkpoint is the one of step 3: a fresh trainer resumes there, equal to a clean 3-step run.
        var reference = NewTrainer(Options(3, null));
        reference.Run();
        var resumed = NewTrainer(Options(10, directory), modelSeed: 7, streamSeed: 8);
        resumed.Resume(trainer.CheckpointPath!);
        AssertSameState(reference, resumed);
        Assert.That(ReadLog(resumed.LogPath!).Select(r => r.Step), Is.EqualTo(new long[] { 1, 2, 3 }), "resume cuts the log back to the checkpoint");
    }

    [Test]
    public void AnInfiniteGradientNormAlsoStopsTraining()
    {
        Trainer? trainer = null;
        var model = TinyModel(1);
        var ddpm = DdpmLoss(model);
        // A finite loss whose gradient overflows: 1e30 times the loss squares to infinity in the global norm.
        trainer = new Trainer(model, g => trainer!.Step + 1 == 2 ? Ops.Mul(ddpm(g), Tensor.Scalar(1e30)) : ddpm(g),
            Options(4, null), new Generator(2));
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Run());
        Assert.That(e!.Step, Is.EqualTo(2));
        Assert.That(e.Quantity, Is.EqualTo("gradient norm"));
        Assert.That(e.Message, Does.Contain("no checkpoint was written"));
    }

    [Test]
    public void AWriteFailingMidCheckpointLeavesThePreviousCheckpointLoadable()
    {
        var trainer = NewTrainer(Options(4, directory));
        trainer.Run();
        byte[] before = File.ReadAllBytes(trainer.CheckpointPath!);
        trainer.TrainStep();
        trainer.TrainStep();

        // The trainer's checkpoint write (Checkpoint.Save is exactly this composition) dying after 2000 bytes.
        var failure = Assert.Throws<IOException>(() => SafeTensors.WriteAtomically(trainer.CheckpointPath!,
            stream => Checkpoint.Write(new FailingStream(stream, failAfterBytes: 2000), trainer.State())));
        Assert.That(failure!.Message, Does.Contain("simulated"));

        Assert.That(File.ReadAllBytes(trainer.CheckpointPath!), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(directory).Where(SafeTensors.IsTemporaryFile), Is.Empty, "no temporary file is left");
        var resumed = NewTrainer(Options(10, directory), modelSeed: 5, streamSeed: 6);
        resumed.Resume(trainer.CheckpointPath!);
        Assert.That(resumed.Step, Is.EqualTo(4));
    }

    [Test]
    public void ATemporaryFileLeftByAKilledWriterIsIgnored()
    {
        var trainer = NewTrainer(Options(4, directory));
        trainer.Run();
        trainer.TrainStep();
        // What a process killed mid-write leaves: half a checkpoint under a temporary name beside the real one.
        using var partial = new MemoryStream();
        Checkpoint.Write(partial, trainer.State());
        string temp = Path.Combine(directory, $".{Trainer.CheckpointFileName}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(temp, partial.ToArray()[..(int)(partial.Length / 2)]);
        Assert.That(SafeTensors.IsTemporaryFile(temp));

        var resumed = NewTrainer(Options(6, directory), modelSeed: 5, streamSeed: 6);
        resumed.Resume(trainer.CheckpointPath!);
        Assert.That(resumed.Step, Is.EqualTo(4));
        resumed.Run();
        Assert.That(SafeTensors.Load(resumed.CheckpointPath!)["trainer.step"].ToInt64Array(), Is.EqualTo(new long[] { 6 }));
    }

    [Test]
    public void CancellingRunCheckpointsTheLastCompletedStep()
    {
        var trainer = NewTrainer(Options(100, directory));
        using var cancel = new CancellationTokenSource();
        var progress = new InlineProgress(p => { if (p.Step == 5) cancel.Cancel(); });
        Assert.Throws<OperationCanceledException>(() => trainer.Run(progress, cancel.Token));
        Assert.That(trainer.Step, Is.EqualTo(5));
        var resumed = NewTrainer(Options(100, directory), modelSeed: 5, streamSeed: 6);
        resumed.Resume(trainer.CheckpointPath!);
        AssertSameState(trainer, resumed);
    }

    [Test]
    public void CheckpointRoundTripsTheWholeTrainingState()
    {
        var trainer = NewTrainer(Options(3, null));
        trainer.Run();
        string path = Path.Combine(directory, "state.safetensors");
        Checkpoint.Save(path, trainer.State());

        var fresh = NewTrainer(Options(3, null), modelSeed: 11, streamSeed: 12);
        var info = Checkpoint.Load(path, fresh.Model, fresh.Optimizer, fresh.Ema);
        Assert.That(info.Step, Is.EqualTo(3));
        Assert.That(info.Generator.Seed, Is.EqualTo(trainer.Generator.Seed));
        Assert.That(info.Generator.Offset, Is.EqualTo(trainer.Generator.Offset));
        Assert.That(info.Losses, Is.EqualTo(trainer.Losses));
        Assert.That(info.Config["objective"], Is.EqualTo("ddpm"));
        Assert.That(double.Parse(info.Config["trainer.learning_rate"], CultureInfo.InvariantCulture), Is.EqualTo(1e-2));
        Assert.That(info.Config.Keys, Has.None.StartsWith("diffusioncore."), "the format marker is not part of the config");
        Assert.That(fresh.Optimizer.StepCount, Is.EqualTo(3));

        // The file is plain safetensors with the documented names.
        var file = SafeTensors.Load(path);
        Assert.That(file.Tensors.Keys, Does.Contain("model.net.0.weight").And.Contain("ema.net.2.bias")
            .And.Contain("optimizer.exp_avg.0").And.Contain("optimizer.exp_avg_sq.5").And.Contain("rng.offset"));
        Assert.That(file["model.net.0.weight"].DType, Is.EqualTo(SafeTensorsDType.F32));
        Assert.That(file["model.net.0.weight"].Shape, Is.EqualTo(new[] { 16, 10 }));
        Assert.That(file.Metadata[Checkpoint.FormatKey], Is.EqualTo(Checkpoint.FormatVersion));
    }

    [Test]
    public void LoadWeightsTakesTheEmaOrTheRawWeights()
    {
        var trainer = NewTrainer(Options(3, null));
        trainer.Run();
        string path = Path.Combine(directory, "state.safetensors");
        Checkpoint.Save(path, trainer.State());

        var emaModel = TinyModel(21);
        Checkpoint.LoadWeights(path, emaModel, ema: true);
        var rawModel = TinyModel(22);
        var config = Checkpoint.LoadWeights(path, rawModel);
        Assert.That(config["model"], Is.EqualTo("mlp-2d"));
        for (int i = 0; i < trainer.Ema!.Shadow.Count; i++)
        {
            Assert.That(Bits(emaModel.Parameters()[i]), Is.EqualTo(Bits(trainer.Ema.Shadow[i])));
            Assert.That(Bits(rawModel.Parameters()[i]), Is.EqualTo(Bits(trainer.Model.Parameters()[i])));
        }
        // After three steps at decay 0.9 the shadow has moved only part of the way: the two differ.
        Assert.That(Bits(emaModel.Parameters()[0]), Is.Not.EqualTo(Bits(rawModel.Parameters()[0])));
    }

    [Test]
    public void AMismatchingModelIsRefusedByNameAndLeftUnchanged()
    {
        var trainer = NewTrainer(Options(2, null));
        trainer.Run();
        string path = Path.Combine(directory, "state.safetensors");
        Checkpoint.Save(path, trainer.State());

        var wider = NewTrainer(Options(2, null), modelSeed: 3, hidden: 12);
        int[] before = Bits(wider.Model.Parameters()[0]);
        var e = Assert.Throws<CheckpointException>(() => wider.Resume(path));
        Assert.That(e!.Message, Does.Contain(path));
        Assert.That(e.Message, Does.Contain("'model.net.0.weight' has shape [16,10], the live one [12,10]"));
        Assert.That(e.Problems, Has.Some.Contains("'optimizer.exp_avg.0' has shape [16,10]"));
        Assert.That(Bits(wider.Model.Parameters()[0]), Is.EqualTo(before), "a refused load changes nothing");
        Assert.That(wider.Step, Is.Zero);

        var deeper = TinyModel(4, depth: 3);
        var missing = Assert.Throws<CheckpointException>(() => Checkpoint.LoadWeights(path, deeper));
        Assert.That(missing!.Problems, Has.Some.EqualTo("tensor 'model.net.3.weight' is missing"));
        var shallower = TinyModel(4, depth: 1);
        var extra = Assert.Throws<CheckpointException>(() => Checkpoint.LoadWeights(path, shallower));
        Assert.That(extra!.Problems, Has.Some.EqualTo("tensor 'model.net.2.bias' has no parameter 'net.2.bias' in the model"));
    }

    [Test]
    public void ACheckpointWithoutEmaCannotFeedARunWithOne()
    {
        var noEma = NewTrainer(Options(2, null, emaDecay: null));
        noEma.Run();
        string path = Path.Combine(directory, "state.safetensors");
        Checkpoint.Save(path, noEma.State());
        var withEma = NewTrainer(Options(4, null));
        var e = Assert.Throws<CheckpointException>(() => withEma.Resume(path));
        Assert.That(e!.Problems, Has.Some.EqualTo("tensor 'ema.net.0.weight' is missing"));
    }

    [Test]
    public void APlainSafeTensorsFileIsNotACheckpoint()
    {
        string path = Path.Combine(directory, "plain.safetensors");
        SafeTensors.Save(path, [new("model.net.0.weight", SafeTensor.FromFloats(new float[160], 16, 10))]);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadWeights(path, TinyModel(1)));
        Assert.That(e!.Message, Does.Contain("not a DiffusionCore checkpoint"));
    }

    [Test]
    public void CheckpointingNeedsAnOutputDirectory()
    {
        Assert.Throws<ArgumentException>(() => NewTrainer(Options(4, null, checkpointEvery: 2)));
        var trainer = NewTrainer(Options(1, null));
        Assert.Throws<InvalidOperationException>(() => trainer.SaveCheckpoint());
    }

    private sealed record LogRow(long Step, double Loss, double LearningRate, double StepsPerSecond);

    private static List<LogRow> ReadLog(string path)
    {
        var lines = File.ReadAllLines(path);
        Assert.That(lines[0], Is.EqualTo("step,loss,lr,steps_per_second"));
        return lines.Skip(1).Select(l => l.Split(',')).Select(f => new LogRow(
            long.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[1], CultureInfo.InvariantCulture),
            double.Parse(f[2], CultureInfo.InvariantCulture), double.Parse(f[3], CultureInfo.InvariantCulture))).ToList();
    }

    /// <summary>Runs progress callbacks inline, on the training thread.</summary>
    private sealed class InlineProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
