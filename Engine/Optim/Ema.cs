namespace DiffusionCore.Engine.Optim;

/// <summary>
/// Exponential moving average of parameters (shadow = decay shadow + (1 - decay) p), the weights
/// DDPM and score-SDE models are evaluated with. With <see cref="WarmUp"/> the decay of update n (0-based)
/// is min(decay, (1 + n) / (10 + n)), as TensorFlow's ExponentialMovingAverage with num_updates: early on
/// the average follows the weights closely, so a short run's EMA is not stuck near the initialisation.
/// </summary>
public sealed class Ema
{
    /// <summary>Starts the shadow weights as copies of the parameters.</summary>
    public Ema(IReadOnlyList<Tensor> parameters, double decay = 0.999, bool warmUp = false)
    {
        WarmUp = warmUp;
        if (decay is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(decay), decay, "must lie in [0, 1]");
        Parameters = parameters;
        Decay = decay;
        Shadow = parameters.Select(p => TensorScope.Escape(p.Detach().Clone())).ToArray();
    }

    /// <summary>The tracked parameters.</summary>
    public IReadOnlyList<Tensor> Parameters { get; }

    /// <summary>The averaged copies, one per parameter.</summary>
    public IReadOnlyList<Tensor> Shadow { get; }

    /// <summary>Decay per update.</summary>
    public double Decay { get; }

    /// <summary>Whether the decay ramps up over the first updates (see the class summary).</summary>
    public bool WarmUp { get; }

    /// <summary>Updates made so far (part of a checkpoint's state when <see cref="WarmUp"/> is on).</summary>
    public long Updates { get; set; }

    /// <summary>The decay the next update uses.</summary>
    public double CurrentDecay => WarmUp ? Math.Min(Decay, (1.0 + Updates) / (10.0 + Updates)) : Decay;

    /// <summary>Moves every shadow weight towards its parameter.</summary>
    public void Update()
    {
        double decay = CurrentDecay;
        for (int i = 0; i < Parameters.Count; i++)
            ParameterUpdates.Axpby(Parameters[i], Shadow[i], 1.0 - decay, decay);
        Updates++;
    }

    /// <summary>Copies the shadow weights into the parameters (e.g. before sampling from the EMA model).</summary>
    public void CopyTo(IReadOnlyList<Tensor> destination)
    {
        for (int i = 0; i < Shadow.Count; i++) Shadow[i].CopyTo(destination[i]);
    }
}
