using DiffusionCore.Engine;

namespace DiffusionCore.Models.Nn;

/// <summary>Embeddings of the diffusion time (or noise level) fed to score networks.</summary>
public static class TimeEmbedding
{
    /// <summary>
    /// The sinusoidal embedding of the DDPM code (Vaswani et al. 2017, as used by Ho et al. 2020):
    /// with half = dim/2 and f_i = exp(-ln(10000) i / (half - 1)), emb(t) = [sin(t f), cos(t f)].
    /// <paramref name="t"/> is [B] (a timestep index or a scaled continuous time); the result is [B, dim].
    /// </summary>
    public static Tensor Sinusoidal(Tensor t, int dim)
    {
        if (dim < 4 || dim % 2 != 0) throw new ArgumentOutOfRangeException(nameof(dim), dim, "sinusoidal embedding width must be even and at least 4");
        if (t.Rank != 1) throw new TensorException("Sinusoidal", $"times must have shape [B], got {ShapeUtil.Format(t.Shape)}");
        int half = dim / 2;
        var freqs = new double[half];
        for (int i = 0; i < half; i++) freqs[i] = Math.Exp(-Math.Log(10000.0) * i / (half - 1));
        var f = Tensor.FromSpan<double>(freqs, [1, half], t.DType, t.Device);
        var args = Ops.Mul(Ops.Reshape(t, -1, 1), f);
        return Ops.Concat([Ops.Sin(args), Ops.Cos(args)], 1);
    }
}
