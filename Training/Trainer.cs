using System.Diagnostics;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Models.Networks;

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

    /// <summary>AdamW's decoupled weight decay (0: plain Adam).</summary>
    public double WeightDecay { get; init; }
}

/// <summary>One progress report of a training run.</summary>
public sealed record TrainingProgress(long Step, long TotalSteps, double Loss, double StepsPerSecond);

/// <summary>Raised when a loss or gradient becomes NaN or infinite; names the step.</summary>
public sealed class TrainingDivergedException(long step, double loss)
    : Exception($"training diverged at step {step}: loss = {loss}")
{
    /// <summary>The step whose loss was not finite.</summary>
    public long Step { get; } = step;
}

/// <summary>
/// The training loop: per step, a loss from the objective, backward, optional global-norm clipping,
/// an Adam/AdamW update with linear warm-up, and an EMA update. Every step runs in a tensor scope, so
/// a steady-state step allocates nothing new from the backend pool.
/// </summary>
public sealed class Trainer
{
    private readonly Func<Generator, Tensor> _loss;

    /// <summary>
    /// Creates a trainer for <paramref name="model"/>; <paramref name="loss"/> draws a batch and its noise
    /// from the given generator and returns the scalar loss.
    /// </summary>
    public Trainer(ScoreNetwork model, Func<Generator, Tensor> loss, TrainerOptions options, Generator generator)
    {
        Model = model;
        _loss = loss;
        Options = options;
        Generator = generator;
        var parameters = model.Parameters();
        Optimizer = new Adam(parameters, options.LearningRate, weightDecay: options.WeightDecay, decoupledWeightDecay: options.WeightDecay > 0);
        Ema = options.EmaDecay is double d ? new Ema(parameters, d) : null;
    }

    /// <summary>The model being trained.</summary>
    public ScoreNetwork Model { get; }

    /// <summary>The run's settings.</summary>
    public TrainerOptions Options { get; }

    /// <summary>The stream every batch and noise draw comes from.</summary>
    public Generator Generator { get; }

    /// <summary>The optimizer.</summary>
    public Adam Optimizer { get; }

    /// <summary>EMA of the weights, when enabled.</summary>
    public Ema? Ema { get; }

    /// <summary>Loss of every step taken so far.</summary>
    public List<double> Losses { get; } = [];

    /// <summary>Steps taken so far.</summary>
    public long Step => Optimizer.StepCount;

    /// <summary>Runs until <see cref="TrainerOptions.Steps"/> steps are done.</summary>
    public void Run(IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        long startStep = Step;
        while (Step < Options.Steps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double loss = TrainStep();
            double rate = (Step - startStep) / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            progress?.Report(new TrainingProgress(Step, Options.Steps, loss, rate));
        }
    }

    /// <summary>Takes one optimizer step and returns its loss.</summary>
    public double TrainStep()
    {
        long step = Step + 1;
        Optimizer.LearningRate = Options.WarmupSteps > 0 && step <= Options.WarmupSteps
            ? Options.LearningRate * step / Options.WarmupSteps
            : Options.LearningRate;
        double value;
        using (var scope = TensorScope.Begin())
        {
            Optimizer.ZeroGrad();
            var loss = _loss(Generator);
            value = loss.Item();
            if (!double.IsFinite(value)) throw new TrainingDivergedException(step, value);
            loss.Backward();
        }
        if (Options.ClipNorm is double clip)
        {
            double norm = GradientClipping.ClipByGlobalNorm(Optimizer.Parameters, clip);
            if (!double.IsFinite(norm)) throw new TrainingDivergedException(step, norm);
        }
        Optimizer.Step();
        Ema?.Update();
        Losses.Add(value);
        return value;
    }
}
