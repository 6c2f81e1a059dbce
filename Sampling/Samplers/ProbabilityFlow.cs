using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Ode;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>Samples from an ODE sampler, with the work the solve took.</summary>
/// <param name="Samples">The samples [B, ...] (in the caller's scope).</param>
/// <param name="Statistics">Model evaluations (including a final denoising one) and accepted and rejected steps.</param>
public sealed record OdeSamples(Tensor Samples, OdeStatistics Statistics);

/// <summary>
/// The probability-flow ODE dx/dt = f(x, t) - 1/2 g(t)^2 grad_x log p_t(x) (Song et al. 2021, "Score-Based
/// Generative Modeling through Stochastic Differential Equations", eq. 13), whose solutions share the SDE's
/// marginals p_t: integrated from T to eps it maps prior draws to data (deterministic sampling), and from
/// eps to T it encodes data into latents. Solved by any of <see cref="OdeSolver"/>'s methods.
/// </summary>
public static class ProbabilityFlow
{
    /// <summary>The drift f(x, t) - 1/2 g(t)^2 s_theta(x, t) = c(t) x - 1/2 g(t)^2 s_theta(x, t) (eq. 13).</summary>
    public static Tensor Drift(ScoreModel model, Sde sde, Tensor x, double t, int[]? labels = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sde);
        double g = sde.Diffusion(t);
        return x * sde.DriftScale(t) - model.Score(x, sde.Level(t), labels) * (0.5 * g * g);
    }

    /// <summary>
    /// Integrates the ODE from <paramref name="x"/> at <paramref name="t0"/> to <paramref name="t1"/> (either
    /// direction: t0 &gt; t1 decodes towards data, t0 &lt; t1 encodes). <paramref name="x"/> is not modified.
    /// </summary>
    /// <param name="model">The score (or noise, or x0) model.</param>
    /// <param name="sde">The forward SDE.</param>
    /// <param name="x">The state at t0, [B, ...].</param>
    /// <param name="t0">Start time.</param>
    /// <param name="t1">End time.</param>
    /// <param name="solver">The ODE method and its settings.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="onStep">Called after each accepted step with the time and state (x only).</param>
    /// <param name="progress">Receives the number of accepted steps.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static OdeSamples Integrate(ScoreModel model, Sde sde, Tensor x, double t0, double t1, OdeSolverOptions solver,
        int[]? labels = null, OdeStepCallback? onStep = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sde);
        ArgumentNullException.ThrowIfNull(x);
        var r = OdeSolver.Solve((t, y) => [Drift(model, sde, y[0], t, labels)], [x], t0, t1, solver, onStep, progress, cancellationToken);
        return new OdeSamples(r.State[0], r.Statistics);
    }

    /// <summary>
    /// Draws x_T from the prior and integrates the ODE from T down to the cut-off eps (1e-3 by default, as
    /// for Song et al.'s VP and sub-VP samplers: the score of data near a lower-dimensional set blows up as
    /// t -&gt; 0). When <paramref name="denoise"/> is set, finishes with Tweedie's
    /// x0 = (x + sigma_eps^2 s_theta(x, eps)) / alpha_eps, one more model evaluation (counted in the statistics).
    /// </summary>
    /// <param name="model">The score (or noise, or x0) model.</param>
    /// <param name="sde">The forward SDE.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T (the only randomness).</param>
    /// <param name="solver">The ODE method and its settings; null: RK45 with rtol = atol = 1e-5.</param>
    /// <param name="eps">The time cut-off eps in (0, T).</param>
    /// <param name="denoise">Whether to finish with the Tweedie denoising step.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of accepted steps.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static OdeSamples Sample(ScoreModel model, Sde sde, int[] shape, Generator generator, OdeSolverOptions? solver = null, double eps = 1e-3,
        bool denoise = true, int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(ProbabilityFlow), shape);
        SamplerSupport.CheckCutoff(nameof(ProbabilityFlow), sde, eps);
        using var noGrad = Autograd.NoGrad();
        Tensor x;
        OdeSamples solved;
        using (var scope = TensorScope.Begin())
        {
            var prior = sde.SamplePrior(shape, generator);
            solved = Integrate(model, sde, prior, sde.T, eps, solver ?? new OdeSolverOptions(), labels, null, progress, cancellationToken);
            x = scope.Keep(solved.Samples);
        }
        if (!denoise) return solved;
        using (TensorScope.Begin()) model.X0(x, sde.Level(eps), labels).CopyTo(x);
        var s = solved.Statistics;
        return new OdeSamples(x, s with { FunctionEvaluations = s.FunctionEvaluations + 1 });
    }
}
