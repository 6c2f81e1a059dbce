using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Plotting;
using DiffusionCore.Training;
using DiffusionCore.Training.Checkpointing;

namespace DiffusionCore.Pipelines;

/// <summary>
/// A training run of a <see cref="DiffusionModel"/>: the trainer set up from a <see cref="TrainingConfig"/>, its data,
/// and an output directory with the checkpoint (both configs in its metadata), the CSV log and a loss plot (raw and
/// smoothed) redrawn at every checkpoint. <see cref="Resume"/> continues a run from its directory alone, bit for bit.
/// </summary>
public sealed class TrainingSession : IDisposable
{
    /// <summary>Name of the loss plot in the output directory.</summary>
    public const string LossPlotFileName = "train_loss.png";

    private readonly TrainingData _data;

    private TrainingSession(DiffusionModel model, TrainingConfig training, TrainingData data, Trainer trainer, long startStep)
    {
        Model = model;
        Training = training;
        _data = data;
        Trainer = trainer;
        StartStep = startStep;
    }

    /// <summary>The model being trained.</summary>
    public DiffusionModel Model { get; }

    /// <summary>The run's settings.</summary>
    public TrainingConfig Training { get; }

    /// <summary>The trainer (its <see cref="Trainer.Step"/>, losses, EMA and checkpoint paths).</summary>
    public Trainer Trainer { get; }

    /// <summary>The step the run started from: 0, or the checkpoint's step when resumed.</summary>
    public long StartStep { get; }

    /// <summary>The loss plot in the output directory, or null without one.</summary>
    public string? LossPlotPath => Trainer.Options.OutputDirectory is { } dir ? Path.Combine(dir, LossPlotFileName) : null;

    /// <summary>
    /// Starts a run: the model from <paramref name="model"/> with weights from seed split 1, the trainer's stream from
    /// split 3, files in <paramref name="outputDirectory"/> (null: none).
    /// </summary>
    /// <exception cref="ConfigException">A config does not validate.</exception>
    public static TrainingSession Start(ModelConfig model, TrainingConfig training, string? outputDirectory, int checkpointEvery = 0, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(training);
        model.Validate();
        training.Validate();
        var root = new Generator(training.Seed);
        var diffusion = DiffusionModel.Create(model, root.Split(1), device);
        return Build(diffusion, training, outputDirectory, checkpointEvery, root.Split(3), 0);
    }

    /// <summary>
    /// Continues the run whose checkpoint is in <paramref name="outputDirectory"/>: the model and training configs
    /// come from the checkpoint (so the learning-rate warm-up and every other setting are the saved run's), only the
    /// total <paramref name="steps"/> may change (null keeps the saved total).
    /// </summary>
    /// <exception cref="FileNotFoundException">There is no checkpoint in the directory.</exception>
    /// <exception cref="SafeTensorsException">The checkpoint is not valid safetensors (damaged, cut short).</exception>
    /// <exception cref="CheckpointException">The checkpoint is inconsistent or does not fit its own config.</exception>
    /// <exception cref="ConfigException"><paramref name="steps"/> is not beyond the checkpoint's step.</exception>
    public static TrainingSession Resume(string outputDirectory, int? steps = null, int checkpointEvery = 0, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(outputDirectory);
        string path = Path.Combine(outputDirectory, Trainer.CheckpointFileName);
        if (Directory.Exists(path)) throw new CheckpointException(path, ["this is a directory, not a checkpoint file"]);
        if (!File.Exists(path)) throw new FileNotFoundException($"no checkpoint at '{path}' to resume", path);
        var file = SafeTensors.Load(path);
        var model = DiffusionModel.ReadConfig(file.Metadata, path);
        TrainingConfig training;
        try
        {
            training = TrainingConfig.FromMetadata(file.Metadata, path);
            training.Validate();
        }
        catch (ConfigException e) { throw new CheckpointException(path, [$"its training config cannot be used: {e.Message}"]); }
        long saved = file.Tensors.TryGetValue("trainer.step", out var stepTensor) && stepTensor.DType == SafeTensorsDType.I64 && stepTensor.Shape.Length == 0
            ? stepTensor.ToInt64Array()[0]
            : throw new CheckpointException(path, ["tensor 'trainer.step' is missing or not an I64 scalar"]);
        int total = steps ?? training.Steps;
        if (total <= saved)
            throw new ConfigException($"the checkpoint '{path}' is already at step {saved}; a total of {total} steps leaves nothing to train (ask for more than {saved})");
        training = training with { Steps = total };
        var root = new Generator(training.Seed);
        var diffusion = DiffusionModel.Create(model, root.Split(1), device);
        var session = Build(diffusion, training, outputDirectory, checkpointEvery, root.Split(3), saved);
        try
        {
            session.Trainer.Resume(path);
        }
        catch
        {
            session.Dispose();
            throw;
        }
        diffusion.ConnectDropout(session.Trainer.Generator);
        return session;
    }

    private static TrainingSession Build(DiffusionModel model, TrainingConfig training, string? outputDirectory, int checkpointEvery, Generator stream, long startStep)
    {
        var data = TrainingData.Open(model.Config.Data, device: model.Device);
        var trainer = new Trainer(model.Network, model.TrainingLoss(data, training.Batch), new TrainerOptions
        {
            Steps = training.Steps,
            LearningRate = training.LearningRate,
            WarmupSteps = training.WarmupSteps,
            EmaDecay = training.EmaDecay,
            ClipNorm = training.ClipNorm,
            OutputDirectory = outputDirectory,
            CheckpointEvery = checkpointEvery,
            Config = new Dictionary<string, string>
            {
                [ModelConfig.MetadataKey] = model.Config.ToJson(),
                [TrainingConfig.MetadataKey] = training.ToJson(),
            },
        }, stream);
        model.ConnectDropout(trainer.Generator);
        var session = new TrainingSession(model, training, data, trainer, startStep);
        trainer.CheckpointSaved += t => LossCurve.Save(session.LossPlotPath!, t.Losses);
        return session;
    }

    /// <summary>
    /// Trains to <see cref="TrainingConfig.Steps"/>, checkpointing as configured; on cancellation the last completed step
    /// is checkpointed, then <see cref="OperationCanceledException"/> is thrown.
    /// </summary>
    /// <exception cref="TrainingDivergedException">A loss or gradient norm was not finite.</exception>
    public void Run(IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Trainer.Run(progress, cancellationToken);

    /// <summary>Switches the model to the EMA weights (what is sampled) and to evaluation mode.</summary>
    public DiffusionModel FinishedModel()
    {
        Trainer.Ema?.CopyTo(Model.Network.Parameters());
        Model.Network.SetTraining(false);
        return Model;
    }

    /// <inheritdoc />
    public void Dispose() => _data.Dispose();
}
