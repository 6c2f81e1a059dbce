namespace DiffusionCore.Engine.Optim;

/// <summary>
/// Base of the optimizers: a fixed list of parameters (leaf tensors that require grad), a learning
/// rate a schedule may change between steps, and named state tensors so a checkpoint can save and
/// restore the optimizer exactly.
/// </summary>
public abstract class Optimizer
{
    /// <summary>Takes the parameters to update; each must require grad.</summary>
    protected Optimizer(IReadOnlyList<Tensor> parameters, double learningRate)
    {
        foreach (var p in parameters)
            if (!p.RequiresGrad) throw new TensorException(GetType().Name, $"parameter {p.Name ?? ShapeUtil.Format(p.Shape)} does not require grad");
        if (learningRate <= 0 || double.IsNaN(learningRate)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "must be positive");
        Parameters = parameters;
        LearningRate = learningRate;
    }

    /// <summary>The parameters updated by <see cref="Step"/>.</summary>
    public IReadOnlyList<Tensor> Parameters { get; }

    /// <summary>Learning rate used by the next step.</summary>
    public double LearningRate { get; set; }

    /// <summary>Number of steps taken so far.</summary>
    public long StepCount { get; protected set; }

    /// <summary>Updates every parameter that has a gradient; parameters without one are left alone.</summary>
    public void Step()
    {
        StepCount++;
        using var _ = Autograd.NoGrad();
        for (int i = 0; i < Parameters.Count; i++)
        {
            var p = Parameters[i];
            if (p.Grad is null) continue;
            if (!ShapeUtil.Same(p.Grad.Shape, p.Shape))
                throw new TensorException(GetType().Name, $"gradient {ShapeUtil.Format(p.Grad.Shape)} does not match parameter {p.Name} {ShapeUtil.Format(p.Shape)}");
            Update(i, p, p.Grad);
        }
    }

    /// <summary>Applies the update rule to parameter <paramref name="index"/>.</summary>
    protected abstract void Update(int index, Tensor parameter, Tensor grad);

    /// <summary>Disposes and clears every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters)
        {
            p.Grad?.Dispose();
            p.Grad = null;
        }
    }

    /// <summary>State tensors by name (e.g. "exp_avg.3"), for checkpoints; they are the live buffers.</summary>
    public abstract IReadOnlyDictionary<string, Tensor> State();

    /// <summary>Restores state saved by <see cref="State"/> and the step count.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        var mine = State();
        foreach (var (name, t) in mine)
        {
            if (!state.TryGetValue(name, out var src)) throw new TensorException("LoadState", $"optimizer state '{name}' missing from the checkpoint");
            if (!ShapeUtil.Same(src.Shape, t.Shape)) throw new TensorException("LoadState", $"optimizer state '{name}' has shape {ShapeUtil.Format(src.Shape)}, expected {ShapeUtil.Format(t.Shape)}");
            src.CopyTo(t);
        }
        StepCount = stepCount;
    }

    /// <summary>A zero tensor shaped like p that lives outside every scope (optimizer state).</summary>
    protected static Tensor StateLike(Tensor p) => TensorScope.Escape(Tensor.Zeros(p.Shape, p.DType, p.Device));
}
