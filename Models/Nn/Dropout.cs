using DiffusionCore.Engine;

namespace DiffusionCore.Models.Nn;

/// <summary>
/// Inverted dropout (Srivastava et al. 2014): while <see cref="Module.Training"/>, each element is zeroed with
/// probability p and the survivors are scaled by 1/(1 - p), so the expected output equals the input; in evaluation
/// mode it is the identity. The masks come from a <see cref="Generator"/> passed in by the owning network, so that a
/// training run's randomness lives in one generator whose state a checkpoint records.
/// </summary>
public sealed class Dropout : Module
{
    /// <summary>Creates the layer with drop probability <paramref name="p"/> in [0, 1).</summary>
    public Dropout(double p)
    {
        if (!(p >= 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "Dropout probability must lie in [0, 1)");
        P = p;
    }

    /// <summary>Probability of zeroing an element.</summary>
    public double P { get; }

    /// <summary>True when <see cref="Forward"/> draws a mask (training mode and p &gt; 0).</summary>
    public bool IsActive => Training && P > 0;

    /// <summary>
    /// x itself when inactive; otherwise x · mask / (1 - p) with mask[i] = 1[u_i &gt; p], u_i ~ U[0, 1) drawn from
    /// <paramref name="generator"/>, so each element survives with probability 1 - p. The mask is a constant to
    /// autograd: the gradient is the upstream gradient times the same scaled mask.
    /// </summary>
    public Tensor Forward(Tensor x, Generator? generator)
    {
        if (!IsActive) return x;
        if (generator is null)
            throw new InvalidOperationException(
                $"Dropout(p={P}) is in training mode but has no generator: set the network's DropoutGenerator (ScoreNetwork.DropoutGenerator; " +
                "a trainer sets its own generator so that checkpoints capture the random state), or call SetTraining(false) for evaluation");
        var u = generator.Uniform(x.Shape, x.DType, x.Device);
        var p = Tensor.Scalar(P, x.DType, x.Device);
        var keep = Ops.Greater(u, p);
        u.Dispose();
        p.Dispose();
        var mask = Ops.Scale(keep, 1.0 / (1.0 - P));
        keep.Dispose();
        return Ops.Mul(x, mask);
    }
}
