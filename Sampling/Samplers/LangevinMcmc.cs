using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>
/// Plain (unadjusted) Langevin MCMC on a given score (Roberts and Tweedie 1996; Welling and Teh 2011; the
/// inner loop of Song and Ermon 2019, section 2.2): x_{k+1} = x_k + eps/2 grad_x log p(x_k) + sqrt(eps) z_k. Its
/// stationary law approaches p as eps -&gt; 0; it mixes between modes only where they overlap.
/// </summary>
public static class LangevinMcmc
{
    /// <summary>
    /// Runs <paramref name="steps"/> Langevin steps from <paramref name="initial"/> (not modified) on the score
    /// of p_level, the model at the fixed noise level <paramref name="level"/>. One model evaluation per step.
    /// </summary>
    /// <param name="model">The score (or noise, or x0) model.</param>
    /// <param name="level">The noise level whose marginal is the target.</param>
    /// <param name="initial">The starting batch [B, ...].</param>
    /// <param name="generator">Source of every z.</param>
    /// <param name="steps">Number of steps.</param>
    /// <param name="stepSize">eps &gt; 0.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static Tensor Sample(ScoreModel model, NoiseLevel level, Tensor initial, Generator generator, int steps, double stepSize,
        int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(initial);
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(LangevinMcmc), initial.Shape);
        SamplerSupport.CheckSteps(nameof(LangevinMcmc), steps);
        if (!(stepSize > 0) || !double.IsFinite(stepSize)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "LangevinMcmc: the step size eps must be positive");

        using var noGrad = Autograd.NoGrad();
        var x = initial.Clone();
        for (int k = 0; k < steps; k++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (TensorScope.Begin())
            {
                var score = model.Score(x, level, labels);
                var z = generator.Normal(x.Shape, x.DType, x.Device);
                (x + score * (stepSize / 2) + z * Math.Sqrt(stepSize)).CopyTo(x);
            }
            progress?.Report(k + 1);
        }
        return x;
    }
}
