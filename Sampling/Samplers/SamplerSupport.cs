using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>Argument checks and small helpers shared by the samplers.</summary>
internal static class SamplerSupport
{
    /// <summary>Checks a batch shape [B, ...] with positive extents.</summary>
    public static void CheckShape(string sampler, int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Length == 0 || shape.Any(d => d < 1))
            throw new ArgumentException($"{sampler}: the sample shape must be [B, ...] with positive extents, got {ShapeUtil.Format(shape)}", nameof(shape));
    }

    /// <summary>Checks a step count.</summary>
    public static void CheckSteps(string sampler, int steps, string name = "steps")
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(name, steps, $"{sampler}: needs at least one step");
    }

    /// <summary>Checks the time cut-off eps of an SDE or ODE sampler: 0 &lt; eps &lt; T.</summary>
    public static void CheckCutoff(string sampler, Sde sde, double eps)
    {
        ArgumentNullException.ThrowIfNull(sde);
        if (!(eps > 0 && eps < sde.T))
            throw new ArgumentOutOfRangeException(nameof(eps), eps, $"{sampler}: the time cut-off must lie in (0, T = {sde.T})");
    }

    /// <summary>N + 1 equally spaced times from T down to eps (t_0 = T, t_N = eps).</summary>
    public static double[] ReverseGrid(Sde sde, double eps, int steps)
    {
        var t = new double[steps + 1];
        for (int i = 0; i < steps; i++) t[i] = sde.T - (sde.T - eps) * i / steps;
        t[steps] = eps;
        return t;
    }

    /// <summary>|v|^2 of each sample of a batch [B, ...], shaped [B, 1, ..., 1] to broadcast against it.</summary>
    public static Tensor SquaredNormPerSample(Tensor v)
    {
        if (v.Rank == 1) return Ops.Square(v);
        var axes = Enumerable.Range(1, v.Rank - 1).ToArray();
        return Ops.Sum(Ops.Square(v), axes, keepDim: true);
    }
}
