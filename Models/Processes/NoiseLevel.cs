namespace DiffusionCore.Models.Processes;

/// <summary>
/// One noise level of a forward process, in the form every process shares: the marginal is
/// x = Alpha x0 + Sigma eps with eps ~ N(0, I), and a network is told the level through
/// <see cref="Condition"/> (a DDPM step index, a scaled continuous time, or sigma itself, as the
/// process defines). Samplers and closed-form scores work from (Alpha, Sigma); networks see Condition.
/// </summary>
/// <param name="Alpha">Mean coefficient of x given x0.</param>
/// <param name="Sigma">Standard deviation of x given x0.</param>
/// <param name="Condition">The value fed to the network's time / noise-level embedding.</param>
public readonly record struct NoiseLevel(double Alpha, double Sigma, double Condition)
{
    /// <summary>Signal-to-noise ratio Alpha^2 / Sigma^2 (Kingma et al. 2021).</summary>
    public double Snr => Alpha * Alpha / (Sigma * Sigma);
}

/// <summary>What a network's conditioning input means, so that a model can pick its embedding.</summary>
public enum ConditionKind
{
    /// <summary>A time: a DDPM step index, or continuous t scaled by 999 (the range of DDPM's steps).</summary>
    Time,

    /// <summary>A noise standard deviation sigma (NCSN, VE); networks embed log sigma.</summary>
    Sigma,
}
