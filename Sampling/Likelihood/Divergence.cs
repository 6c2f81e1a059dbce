using DiffusionCore.Engine;

namespace DiffusionCore.Sampling.Likelihood;

/// <summary>How the divergence tr(df/dx) of a vector field is computed.</summary>
public enum DivergenceMethod
{
    /// <summary>Exactly, with one vector-Jacobian product per dimension (d products; for small d).</summary>
    Exact,

    /// <summary>Hutchinson's estimator E_v[v^T (df/dx) v] with Rademacher probes v (Hutchinson 1989).</summary>
    HutchinsonRademacher,

    /// <summary>Hutchinson's estimator with standard normal probes.</summary>
    HutchinsonGaussian,
}

/// <summary>
/// Divergences tr(df/dx) of a batched vector field f: [B, ...] -> [B, ...], per sample, through
/// vector-Jacobian products of the autograd engine (no Jacobian is ever formed).
/// </summary>
public static class Divergence
{
    /// <summary>
    /// The exact divergence: sum_i e_i^T (df/dx) e_i, one VJP per dimension. <paramref name="fx"/> must have
    /// been computed from <paramref name="x"/> with recording on. With <paramref name="createGraph"/> the
    /// result can be differentiated again (for training losses). Returns [B].
    /// </summary>
    public static Tensor Exact(Tensor fx, Tensor x, bool createGraph = false)
    {
        CheckPair(fx, x, "Divergence.Exact");
        int batch = x.Shape[0];
        int d = (int)(x.Count / batch);
        Tensor? total = null;
        for (int i = 0; i < d; i++)
        {
            var basis = new double[batch * d];
            for (int b = 0; b < batch; b++) basis[b * d + i] = 1.0;
            var e = Tensor.FromSpan<double>(basis, x.Shape, x.DType, x.Device);
            var term = PerSampleDot(Vjp(fx, x, e, createGraph), e);
            total = total is null ? term : Ops.Add(total, term);
        }
        return total!;
    }

    /// <summary>
    /// Hutchinson's estimate v^T (df/dx) v per sample for the given probe v (shaped like x): one VJP,
    /// unbiased when E[v v^T] = I. Returns [B].
    /// </summary>
    public static Tensor Hutchinson(Tensor fx, Tensor x, Tensor probe, bool createGraph = false)
    {
        CheckPair(fx, x, "Divergence.Hutchinson");
        if (!ShapeUtil.Same(probe.Shape, x.Shape))
            throw new TensorException("Divergence.Hutchinson", $"probe shape {ShapeUtil.Format(probe.Shape)} differs from x {ShapeUtil.Format(x.Shape)}");
        return PerSampleDot(Vjp(fx, x, probe, createGraph), probe);
    }

    /// <summary>A probe for <paramref name="method"/> shaped like <paramref name="like"/> (null for <see cref="DivergenceMethod.Exact"/>).</summary>
    public static Tensor? Probe(DivergenceMethod method, Tensor like, Generator generator) => method switch
    {
        DivergenceMethod.Exact => null,
        DivergenceMethod.HutchinsonRademacher => generator.Rademacher(like.Shape, like.DType, like.Device),
        DivergenceMethod.HutchinsonGaussian => generator.Normal(like.Shape, like.DType, like.Device),
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, null),
    };

    /// <summary>The divergence of f at x by <paramref name="method"/> (probe required for Hutchinson). Returns [B].</summary>
    public static Tensor Compute(DivergenceMethod method, Tensor fx, Tensor x, Tensor? probe, bool createGraph = false) => method switch
    {
        DivergenceMethod.Exact => Exact(fx, x, createGraph),
        _ => Hutchinson(fx, x, probe ?? throw new ArgumentNullException(nameof(probe), "Hutchinson's estimator needs a probe"), createGraph),
    };

    /// <summary>sum over all but the batch axis of a * b: [B].</summary>
    public static Tensor PerSampleDot(Tensor a, Tensor b)
    {
        var prod = Ops.Mul(a, b);
        return prod.Rank == 1 ? prod : Ops.Sum(prod, Enumerable.Range(1, prod.Rank - 1).ToArray());
    }

    private static Tensor Vjp(Tensor fx, Tensor x, Tensor v, bool createGraph) =>
        Autograd.Grad([fx], [x], [v], createGraph: createGraph, allowUnused: true)[0] ?? Tensor.Zeros(x.Shape, x.DType, x.Device);

    private static void CheckPair(Tensor fx, Tensor x, string op)
    {
        if (x.Rank < 1 || !ShapeUtil.Same(fx.Shape, x.Shape))
            throw new TensorException(op, $"f(x) must be shaped like x = [B, ...]: got f(x) {ShapeUtil.Format(fx.Shape)}, x {ShapeUtil.Format(x.Shape)}");
    }
}
