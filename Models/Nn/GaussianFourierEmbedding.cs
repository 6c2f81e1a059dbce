using DiffusionCore.Engine;

namespace DiffusionCore.Models.Nn;

/// <summary>
/// Random Fourier features of log sigma, the noise-level embedding of NCSN++ (Song et al. 2021, "Score-Based
/// Generative Modeling through Stochastic Differential Equations", GaussianFourierProjection; Tancik et al. 2020):
/// emb(sigma) = [sin(2π W log sigma), cos(2π W log sigma)] with fixed, non-trainable frequencies W ~ N(0, scale²).
/// <para>
/// W is drawn from a fixed Philox seed (<see cref="FrequencySeed"/>), not from the model's generator: it is not a
/// parameter and is not saved, so a model is fully described by its parameters and a checkpoint reloads exactly.
/// </para>
/// </summary>
public sealed class GaussianFourierEmbedding
{
    /// <summary>
    /// The Philox seed of the frequencies: fixed (2021, the year of NCSN++; any constant would do) so that every
    /// embedding of one width and scale has the same W.
    /// </summary>
    public const ulong FrequencySeed = 2021;

    private readonly double[] _angularFrequencies;

    /// <summary>Creates the embedding of width <paramref name="dim"/> (dim/2 frequencies) with standard deviation <paramref name="scale"/>.</summary>
    public GaussianFourierEmbedding(int dim, double scale = 16.0)
    {
        if (dim < 2 || dim % 2 != 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "Gaussian Fourier embedding width must be even and at least 2");
        if (!(scale > 0) || double.IsInfinity(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "Gaussian Fourier frequency scale must be positive and finite");
        Dim = dim;
        Scale = scale;
        var normal = new Generator(FrequencySeed).NormalHost(dim / 2);
        Frequencies = normal.Select(z => scale * z).ToArray();
        _angularFrequencies = Frequencies.Select(w => 2 * Math.PI * w).ToArray();
    }

    /// <summary>Width of the embedding.</summary>
    public int Dim { get; }

    /// <summary>Standard deviation of the frequencies (16 in NCSN++).</summary>
    public double Scale { get; }

    /// <summary>The dim/2 frequencies W.</summary>
    public IReadOnlyList<double> Frequencies { get; }

    /// <summary>
    /// Embeds noise levels <paramref name="sigma"/> ([B], positive and finite) as [B, dim]: sin features first, then cos.
    /// The levels are read back and checked (B values), because log of a zero level, e.g. the final sigma = 0 of a
    /// sampling schedule passed by mistake, would otherwise turn the whole output into NaN silently.
    /// </summary>
    public Tensor Forward(Tensor sigma)
    {
        if (sigma.Rank != 1) throw new TensorException("GaussianFourierEmbedding", $"noise levels must have shape [B], got {ShapeUtil.Format(sigma.Shape)}");
        foreach (double s in sigma.ToDoubleArray())
            if (!(s > 0) || double.IsInfinity(s))
                throw new ArgumentOutOfRangeException(nameof(sigma), s, "GaussianFourierEmbedding: noise levels sigma must be positive and finite (the embedding takes log sigma)");
        var w = Tensor.FromSpan<double>(_angularFrequencies, [1, _angularFrequencies.Length], sigma.DType, sigma.Device);
        var args = Ops.Mul(Ops.Reshape(Ops.Log(sigma), -1, 1), w);
        return Ops.Concat([Ops.Sin(args), Ops.Cos(args)], 1);
    }
}
