using System.Diagnostics;
using System.Globalization;
using System.Text;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Models.Nn;
using DiffusionCore.Training.Checkpointing;
using DiffusionCore.Engine.Serialization;

namespace DiffusionCore.Training;

/// <summary>Settings of a training run.</summary>
public sealed record TrainerOptions
{
    /// <summary>Number of optimizer steps.</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Peak learning rate (Adam).</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>Linear warm-up of the learning rate over this many steps.</summary>
    public int WarmupSteps { get; init; }

    /// <summary>Clip the global gradient norm to this value (null: no clipping).</summary>
    public double? ClipNorm { get; init; } = 1.0;

    /// <summary>Decay of the EMA weights (null: no EMA).</summary>
    public double? EmaDecay { get; init; } = 0.999;

    /// <summary>Ramp the EMA decay up as min(decay, (1 + n) / (10 + n)) over the first updates (see <see cref="Ema"/>).</summary>
    public bool EmaWarmUp { get; init; } = true;

    /// <summary>AdamW's decoupled weight decay (0: plain Adam).</summary>
    public double WeightDecay { get; init; }

    /// <summary>
    /// Directory of the run's files: <see cref="Trainer.CheckpointFileName"/> and <see cref="Trainer.LogFileName"/>,
    /// written at every checkpoint (null: no files). <see cref="Trainer.CheckpointSaved"/> lets a caller add its own
    /// (a loss plot, samples).
    /// </summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Checkpoint every this many steps, besides the one at the end of <see cref="Trainer.Run"/> (0: only at the end). Needs <see cref="OutputDirectory"/>.</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Settings of the run stored in each checkpoint's metadata (model name, objective, data...), beside the trainer's own.</summary>
    public IReadOnlyDictionary<string, string> Config { get; init; } = new Dictionary<string, string>();
}

/// <summary>One progress report of a training run.</summary>
public sealed record TrainingProgress(long Step, long TotalSteps, double Loss, double StepsPerSecond);

/// <summary>
/// Raised when a loss or gradient norm becomes NaN or infinite; names the step, and the last checkpoint, which the
/// trainer leaves untouched (no checkpoint is written from a diverged state).
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>Creates the exception for step <paramref name="step"/>, whose <paramref name="quantity"/> was <paramref name="value"/>.</summary>
    public TrainingDivergedException(long step, double value, string quantity = "loss", string? lastCheckpoint = null, long lastCheckpointStep = 0)
        : base($"training diverged at step {step}: {quantity} = {value.ToString(CultureInfo.InvariantCulture)}; "
               + (lastCheckpoint is null ? "no checkpoint was written" : $"the last checkpoint, at step {lastCheckpointStep}, is '{lastCheckpoint}'"))
    {
        Step = step;
        Value = value;
        Quantity = quantity;
        LastCheckpoint = lastCheckpoint;
        LastCheckpointStep = lastCheckpointStep;
    }

    /// <summary>The step whose loss (or gradient norm) was not finite.</summary>
    public long Step { get; }

    /// <summary>The non-finite value.</summary>
    public double Value { get; }

    /// <summary>What was not finite: "loss" or "gradient norm".</summary>
    public string Quantity { get; }

    /// <summary>Path of the last checkpoint written by this trainer, or null when it wrote none.</summary>
    public string? LastCheckpoint { get; }

    /// <summary>Step of <see cref="LastCheckpoint"/>.</summary>
    public long LastCheckpointStep { get; }
}

/// <summary>
/// The training loop: per step, a loss from the objective, backward, optional global-norm clipping,
/// an Adam/AdamW update with linear warm-up, and an EMA update. Every step runs in a tensor scope, so
/// a steady-state step allocates nothing new from the backend pool. With an output directory it writes a
/// checkpoint (<see cref="Checkpoint"/>), a CSV log and a loss plot every <see cref="TrainerOptions.CheckpointEvery"/>
/// steps and at the end; <see cref="Resume"/> continues a run from a checkpoint bit for bit, provided the loss
/// draws all its randomness from the generator it is given.
/// </summary>
public sealed class Trainer
{
    /// <summary>Name of the checkpoint in the output directory (replaced at every checkpoint).</summary>
    public const string CheckpointFileName = "checkpoint.safetensors";

    /// <summary>Name of the CSV log (step, loss, lr, steps_per_second) in the output directory.</summary>
    public const string LogFileName = "train_log.csv";

    private const string LogHeader = "step,loss,lr,steps_per_second";

    private readonly Func<Generator, Tensor> _loss;
    private readonly List<string> _pendingLogRows = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _clockStartStep;
    private bool _logStarted;

    /// <summary>
    /// Creates a trainer for <paramref name="model"/>; <paramref name="loss"/> draws a batch and its noise
    /// from the given generator and returns the scalar loss.
    /// </summary>
    public Trainer(Module model, Func<Generator, Tensor> loss, TrainerOptions options, Generator generator)
    {
        if (options.CheckpointEvery < 0) throw new ArgumentOutOfRangeException(nameof(options), options.CheckpointEvery, "CheckpointEvery must be >= 0");
        if (options.CheckpointEvery > 0 && options.OutputDirectory is null)
            throw new ArgumentException($"TrainerOptions: CheckpointEvery = {options.CheckpointEvery} needs an OutputDirectory", nameof(options));
        Model = model;
        _loss = loss;
        Options = options;
        Generator = generator;
        var parameters = model.Parameters();
        Optimizer = new Adam(parameters, options.LearningRate, weightDecay: options.WeightDecay, decoupledWeightDecay: options.WeightDecay > 0);
        Ema = options.EmaDecay is double d ? new Ema(parameters, d, options.EmaWarmUp) : null;
    }

    /// <summary>The model being trained.</summary>
    public Module Model { get; }

    /// <summary>The run's settings.</summary>
    public TrainerOptions Options { get; }

    /// <summary>The stream every batch and noise draw comes from (replaced by <see cref="Resume"/> with the saved one).</summary>
    public Generator Generator { get; private set; }

    /// <summary>The optimizer.</summary>
    public Adam Optimizer { get; }

    /// <summary>EMA of the weights, when enabled.</summary>
    public Ema? Ema { get; }

    /// <summary>Loss of every step taken so far (entry i is step i + 1, including steps restored by <see cref="Resume"/>).</summary>
    public List<double> Losses { get; } = [];

    /// <summary>Steps taken so far.</summary>
    public long Step => Optimizer.StepCount;

    /// <summary>The checkpoint file in the output directory, or null without one.</summary>
    public string? CheckpointPath => OutputFile(CheckpointFileName);

    /// <summary>The CSV log in the output directory, or null without one.</summary>
    public string? LogPath => OutputFile(LogFileName);

    /// <summary>
    /// Raised after each checkpoint is written (with the trainer, whose <see cref="Step"/> and <see cref="Losses"/>
    /// are the checkpoint's), so that a caller can write its own files beside it, such as a loss plot.
    /// </summary>
    public event Action<Trainer>? CheckpointSaved;

    /// <summary>The step of the last checkpoint written or resumed from in the output directory, or null.</summary>
    public long? LastCheckpointStep { get; private set; }

    private string? OutputFile(string name) => Options.OutputDirectory is { } dir ? Path.Combine(dir, name) : null;

    /// <summary>
    /// The run's state as a checkpoint stores it. The config holds <see cref="TrainerOptions.Config"/> and the
    /// optimisation settings under "trainer.*".
    /// </summary>
    public TrainingState State()
    {
        var config = new Dictionary<string, string>(ShapingSettings(), StringComparer.Ordinal) { ["trainer.steps"] = Invariant(Options.Steps) };
        foreach (var (key, value) in Options.Config) config[key] = value;
        return new TrainingState(Model, Optimizer, Ema, Generator, Step) { Config = config, Losses = Losses };
    }

    /// <summary>
    /// The settings that shape the run's trajectory (learning rate and its warm-up, clipping, EMA, weight decay), as
    /// stored in checkpoints under "trainer.*". The total <see cref="TrainerOptions.Steps"/> is not one of them: with
    /// the learning rate a function of the step alone, a run resumed towards a new total follows the same path as
    /// one started with that total.
    /// </summary>
    public IReadOnlyDictionary<string, string> ShapingSettings() => new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["trainer.learning_rate"] = Invariant(Options.LearningRate),
        ["trainer.warmup_steps"] = Invariant(Options.WarmupSteps),
        ["trainer.clip_norm"] = Options.ClipNorm is double c ? Invariant(c) : "none",
        ["trainer.ema_decay"] = Options.EmaDecay is double e ? Invariant(e) : "none",
        ["trainer.weight_decay"] = Invariant(Options.WeightDecay),
    };

    /// <summary>
    /// Loads the checkpoint at <paramref name="path"/> (weights, EMA, optimizer moments and step, the generator's
    /// seed and offset, the loss history) so that <see cref="Run"/> continues the saved run exactly. The CSV log in
    /// the output directory is cut back to the checkpoint's step, dropping rows of steps that were not saved.
    /// </summary>
    /// <returns>What the checkpoint held besides the tensors, including its config.</returns>
    /// <exception cref="CheckpointException">The checkpoint does not fit this model and optimizer, or was saved with other
    /// <see cref="ShapingSettings"/>; nothing was changed.</exception>
    public CheckpointInfo Resume(string path)
    {
        var info = Checkpoint.Load(path, Model, Optimizer, Ema, ShapingSettings());
        if (info.Step != Optimizer.StepCount || info.Losses.Count != info.Step)
            throw new CheckpointException(path, [$"step {info.Step}, optimizer step count {Optimizer.StepCount} and {info.Losses.Count} saved losses disagree"]);
        Generator = info.Generator;
        // The EMA is updated once per step, so its update count (which sets its warm-up decay) is the step.
        if (Ema is not null) Ema.Updates = info.Step;
        Losses.Clear();
        Losses.AddRange(info.Losses);
        _pendingLogRows.Clear();
        _clock.Restart();
        _clockStartStep = Step;
        if (CheckpointPath is { } mine && Path.GetFullPath(mine) == Path.GetFullPath(path)) LastCheckpointStep = Step;
        TrimLog();
        return info;
    }

    /// <summary>
    /// Runs until <see cref="TrainerOptions.Steps"/> steps are done, checkpointing every <see cref="TrainerOptions.CheckpointEvery"/>
    /// steps and at the end (with an output directory). On cancellation it checkpoints the last completed step, then throws.
    /// </summary>
    /// <exception cref="TrainingDivergedException">A loss or gradient norm was not finite; the last checkpoint is left as it was.</exception>
    public void Run(IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        _clock.Restart();
        _clockStartStep = Step;
        while (Step < Options.Steps)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                CheckpointIfNew();
                cancellationToken.ThrowIfCancellationRequested();
            }
            double loss = TrainStep();
            progress?.Report(new TrainingProgress(Step, Options.Steps, loss, StepsPerSecond()));
            if (Options.CheckpointEvery > 0 && Step % Options.CheckpointEvery == 0) SaveCheckpoint();
        }
        CheckpointIfNew();
    }

    private void CheckpointIfNew()
    {
        if (Options.OutputDirectory is not null && LastCheckpointStep != Step) SaveCheckpoint();
    }

    private double StepsPerSecond() => (Step - _clockStartStep) / Math.Max(1e-9, _clock.Elapsed.TotalSeconds);

    /// <summary>The learning rate of step <paramref name="step"/> (1-based): linear warm-up to the peak, then constant.</summary>
    public double LearningRateAt(long step) =>
        Options.WarmupSteps > 0 && step <= Options.WarmupSteps ? Options.LearningRate * step / Options.WarmupSteps : Options.LearningRate;

    /// <summary>Takes one optimizer step and returns its loss.</summary>
    /// <exception cref="TrainingDivergedException">The loss or the gradient norm was not finite; no parameter was changed.</exception>
    public double TrainStep()
    {
        long step = Step + 1;
        Optimizer.LearningRate = LearningRateAt(step);
        double value;
        using (var scope = TensorScope.Begin())
        {
            Optimizer.ZeroGrad();
            var loss = _loss(Generator);
            value = loss.Item();
            if (!double.IsFinite(value)) throw Diverged(step, value, "loss");
            loss.Backward();
        }
        if (Options.ClipNorm is double clip)
        {
            double norm = GradientClipping.ClipByGlobalNorm(Optimizer.Parameters, clip);
            if (!double.IsFinite(norm)) throw Diverged(step, norm, "gradient norm");
        }
        Optimizer.Step();
        Ema?.Update();
        Losses.Add(value);
        if (Options.OutputDirectory is not null)
            _pendingLogRows.Add(string.Join(',', Invariant(step), Invariant(value), Invariant(Optimizer.LearningRate), Invariant(StepsPerSecond())));
        return value;
    }

    // The log keeps the rows up to the failing step (they explain the divergence); the checkpoint is not touched.
    private TrainingDivergedException Diverged(long step, double value, string quantity)
    {
        if (Options.OutputDirectory is not null) FlushLog();
        return new TrainingDivergedException(step, value, quantity, LastCheckpointStep is null ? null : CheckpointPath, LastCheckpointStep ?? 0);
    }

    /// <summary>
    /// Writes the pending CSV log rows and the checkpoint (atomically: a crash leaves the previous one intact) to the
    /// output directory, then raises <see cref="CheckpointSaved"/>.
    /// </summary>
    public void SaveCheckpoint()
    {
        string path = CheckpointPath ?? throw new InvalidOperationException("Trainer.SaveCheckpoint: TrainerOptions.OutputDirectory is not set");
        // Log first: a crash between the two leaves log rows past the checkpoint, which Resume trims, rather than a gap.
        FlushLog();
        Checkpoint.Save(path, State());
        LastCheckpointStep = Step;
        CheckpointSaved?.Invoke(this);
    }

    private void FlushLog()
    {
        string path = LogPath!;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        bool append = _logStarted && File.Exists(path);
        using (var stream = new FileStream(path, append ? FileMode.Append : FileMode.Create, FileAccess.Write))
        using (var writer = new StreamWriter(stream, new UTF8Encoding(false)))
        {
            if (!append) writer.WriteLine(LogHeader);
            foreach (string row in _pendingLogRows) writer.WriteLine(row);
        }
        _pendingLogRows.Clear();
        _logStarted = true;
    }

    // Keeps the log's complete rows of steps 1..Step, so that rows written after the checkpoint (or a row cut short
    // by a crash) are not duplicated when the resumed run logs those steps again.
    private void TrimLog()
    {
        if (LogPath is not { } path || !File.Exists(path)) return;
        var kept = new List<string> { LogHeader };
        foreach (string line in File.ReadLines(path).Skip(1))
        {
            var fields = line.Split(',');
            if (fields.Length == 4 && long.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out long step) && step <= Step)
                kept.Add(line);
        }
        SafeTensors.WriteAtomically(path, stream =>
        {
            using var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true);
            foreach (string line in kept) writer.WriteLine(line);
        });
        _logStarted = true;
    }

    private static string Invariant(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
