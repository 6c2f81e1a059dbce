using DiffusionCore.Engine;

namespace DiffusionCore.Training.Objectives;

/// <summary>The distribution of the random projections v of sliced score matching.</summary>
public enum SliceDistribution
{
    /// <summary>Each coordinate +1 or -1 with probability 1/2 (lowest variance of the trace estimate).</summary>
    Rademacher,
    /// <summary>v ~ N(0, I).</summary>
    Gaussian,
}

/// <summary>
/// Sliced score matching (Song, Garg, Shi and Ermon, UAI 2019): fits a score s(x) from samples of p alone,
/// minimising E_{p(x)} E_{p(v)} [ v^T (ds/dx) v + 1/2 (v^T s(x))^2 ], which equals the Fisher divergence
/// 1/2 E || s - grad log p ||^2 up to a constant whenever E[v v^T] = I. The variance-reduced form (their
/// SSM-VR) replaces 1/2 (v^T s)^2 by its expectation over v, 1/2 || s ||^2. One projection per sample;
/// repeat x along the batch for several. The Jacobian-vector term v^T (ds/dx) v is (J^T v) . v with J^T v from
/// <see cref="Autograd.Grad"/> with createGraph, so the loss stays differentiable in the parameters of s.
/// Applied to noised samples x = x0 + sigma eps with a network told sigma, it learns the noised score
/// (NCSN with SSM in place of denoising score matching, Song and Ermon 2019, section 4.2).
/// </summary>
public static class SlicedScoreMatching
{
    /// <summary>
    /// The loss on the batch x ([B, ...]) with projections v of x's shape drawn from <paramref name="generator"/>.
    /// <paramref name="score"/> maps a batch to its scores (same shape) and must treat samples independently.
    /// </summary>
    public static Tensor Loss(Func<Tensor, Tensor> score, Tensor x, Generator generator,
        SliceDistribution distribution = SliceDistribution.Rademacher, bool varianceReduced = false)
    {
        var v = distribution switch
        {
            SliceDistribution.Rademacher => generator.Rademacher(x.Shape, x.DType, x.Device),
            SliceDistribution.Gaussian => generator.Normal(x.Shape, x.DType, x.Device),
            _ => throw new ArgumentOutOfRangeException(nameof(distribution), distribution, "SlicedScoreMatching.Loss: unknown slice distribution"),
        };
        return Loss(score, x, v, varianceReduced);
    }

    /// <summary>
    /// The loss for given projections v: the batch mean of v^T (ds/dx) v + 1/2 (v^T s)^2, or of
    /// v^T (ds/dx) v + 1/2 || s ||^2 when <paramref name="varianceReduced"/>. x is detached from any graph it
    /// belongs to; the loss is differentiable with respect to what <paramref name="score"/> closes over.
    /// </summary>
    public static Tensor Loss(Func<Tensor, Tensor> score, Tensor x, Tensor v, bool varianceReduced = false)
    {
        const string op = "SlicedScoreMatching.Loss";
        ObjectiveMath.CheckBatch(op, x);
        if (!ShapeUtil.Same(x.Shape, v.Shape))
            throw new ArgumentException($"{op}: projections {ShapeUtil.Format(v.Shape)} must have the shape of x {ShapeUtil.Format(x.Shape)}", nameof(v));
        var input = x.Detach();
        input.RequiresGrad = true;
        var s = score(input);
        if (!ShapeUtil.Same(x.Shape, s.Shape))
            throw new ArgumentException($"{op}: the score returned {ShapeUtil.Format(s.Shape)} for x of shape {ShapeUtil.Format(x.Shape)}", nameof(score));
        // Summing v_b . s_b over the batch and differentiating in x gives J_b^T v_b per sample, since sample b's
        // score depends on x_b alone. A score that ignores x (unused input) has a zero Jacobian.
        var jtv = Autograd.Grad([s], [input], [v], createGraph: true, allowUnused: true)[0];
        // x is data, not a parameter: once J^T v is recorded, a later Backward must not treat it as a leaf and
        // park a gradient on it outside the caller's tensor scope.
        input.RequiresGrad = false;
        var second = varianceReduced
            ? ObjectiveMath.SquaredNormPerSample(s)
            : Ops.Square(ObjectiveMath.DotPerSample(v, s));
        var perSample = Ops.Scale(second, 0.5);
        if (jtv is not null) perSample = Ops.Add(ObjectiveMath.DotPerSample(jtv, v), perSample);
        return Ops.Mean(perSample);
    }
}
