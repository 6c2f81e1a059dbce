namespace DiffusionCore.Models.Processes;

/// <summary>
/// NCSN's noise levels (Song and Ermon 2019): a geometric sequence sigma_1 &gt; sigma_2 &gt; ... &gt; sigma_L,
/// each level perturbing the data as x = x0 + sigma_i eps.
/// </summary>
public sealed class NcsnSigmas
{
    /// <summary>Wraps explicit, strictly decreasing, positive levels.</summary>
    public NcsnSigmas(double[] sigmas)
    {
        if (sigmas.Length == 0) throw new ArgumentException("NCSN needs at least one noise level", nameof(sigmas));
        for (int i = 0; i < sigmas.Length; i++)
        {
            if (!(sigmas[i] > 0)) throw new ArgumentOutOfRangeException(nameof(sigmas), sigmas[i], $"sigma_{i + 1} must be positive");
            if (i > 0 && !(sigmas[i] < sigmas[i - 1])) throw new ArgumentException($"NCSN sigmas must decrease: sigma_{i} = {sigmas[i - 1]}, sigma_{i + 1} = {sigmas[i]}", nameof(sigmas));
        }
        Sigmas = sigmas;
    }

    /// <summary>L levels from <paramref name="sigmaMax"/> down to <paramref name="sigmaMin"/>, equally spaced in log sigma.</summary>
    public static NcsnSigmas Geometric(double sigmaMax = 1.0, double sigmaMin = 0.01, int levels = 10)
    {
        if (levels < 1) throw new ArgumentOutOfRangeException(nameof(levels), levels, "must be at least 1");
        if (!(sigmaMax > sigmaMin && sigmaMin > 0)) throw new ArgumentOutOfRangeException(nameof(sigmaMax), $"need sigma_max > sigma_min > 0, got {sigmaMax}, {sigmaMin}");
        var s = new double[levels];
        for (int i = 0; i < levels; i++)
            s[i] = levels == 1 ? sigmaMax : sigmaMax * Math.Pow(sigmaMin / sigmaMax, (double)i / (levels - 1));
        return new NcsnSigmas(s);
    }

    /// <summary>sigma_1 &gt; ... &gt; sigma_L (index 0 is the largest).</summary>
    public double[] Sigmas { get; }

    /// <summary>Number of levels L.</summary>
    public int Count => Sigmas.Length;

    /// <summary>Level i as a <see cref="NoiseLevel"/> (alpha 1, the network is told sigma_i).</summary>
    public NoiseLevel Level(int i) => new(1.0, Sigmas[i], Sigmas[i]);
}
