namespace DiffusionCore.Kernels;

/// <summary>Distributions the Philox fill kernels draw from.</summary>
public enum RandomDistribution
{
    /// <summary>Uniform on [0, 1).</summary>
    Uniform,
    /// <summary>Standard normal N(0, 1), by Box-Muller on pairs of lanes.</summary>
    Normal,
    /// <summary>+1 or -1 with probability 1/2 each.</summary>
    Rademacher,
}
