using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Tests.Training;

/// <summary>
/// Data x0 ~ N(mu, s^2 I) in 2-D, whose noised marginal alpha x0 + sigma eps is N(alpha mu, (alpha^2 s^2 + sigma^2) I)
/// with the closed-form score -(x - alpha mu) / (alpha^2 s^2 + sigma^2).
/// </summary>
internal static class GaussianToy
{
    public static readonly double[] Mu = [1.0, -0.5];
    public const double S = 0.5;

    /// <summary>A batch of data drawn from <paramref name="generator"/>: mu + s N(0, I).</summary>
    public static Tensor Sample(Generator generator, int batch, DType dtype = DType.Float32)
    {
        var z = generator.Normal([batch, 2], dtype);
        return Ops.Add(Ops.Scale(z, S), Tensor.FromSpan<double>(Mu, [1, 2], dtype, null));
    }

    /// <summary>The noised score at (alpha, sigma) for points x (interleaved pairs), in double.</summary>
    public static double[] Score(double[] x, double alpha, double sigma)
    {
        double variance = alpha * alpha * S * S + sigma * sigma;
        var r = new double[x.Length];
        for (int i = 0; i < x.Length; i++) r[i] = -(x[i] - alpha * Mu[i % 2]) / variance;
        return r;
    }
}
