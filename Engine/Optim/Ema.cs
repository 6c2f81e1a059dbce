namespace DiffusionCore.Engine.Optim;

/// <summary>
/// Exponential moving average of parameters (shadow = decay shadow + (1 - decay) p), the weights
/// DDPM and score-SDE models are evaluated with.
/// </summary>
public sealed class Ema
{
    /// <summary>Starts the shadow weights as copies of the parameters.</summary>
    public Ema(IReadOnlyList<Tensor> parameters, double decay = 0.999)
    {
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

    /// <summary>Moves every shadow weight towards its parameter.</summary>
    public void Update()
    {
        for (int i = 0; i < Parameters.Count; i++)
            Parameters[i].Device.Backend.Axpby(Parameters[i].Buffer, Shadow[i].Buffer, Parameters[i].Count, 1.0 - Decay, Decay);
    }

    /// <summary>Copies the shadow weights into the parameters (e.g. before sampling from the EMA model).</summary>
    public void CopyTo(IReadOnlyList<Tensor> destination)
    {
        for (int i = 0; i < Shadow.Count; i++) Shadow[i].CopyTo(destination[i]);
    }
}
