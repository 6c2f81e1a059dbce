using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>
/// The reverse-time SDE dx = [f(x, t) - g(t)^2 grad_x log p_t(x)] dt + g(t) dw_bar (Song et al. 2021,
/// "Score-Based Generative Modeling through Stochastic Differential Equations", eq. 6; Anderson 1982),
/// integrated from T down to eps by Euler-Maruyama.
/// </summary>
public static class EulerMaruyama
{
    /// <summary>
    /// x_T ~ the SDE's prior; on the grid t_i = T - i (T - eps) / N, with dt = t_i - t_{i+1} &gt; 0:
    /// x_{i+1} = x_i - [f(x_i, t_i) - g(t_i)^2 s_theta(x_i, t_i)] dt + g(t_i) sqrt(dt) z_i, z_i ~ N(0, I).
    /// Sampling stops at the cut-off t = eps, where the scores of data on a lower-dimensional set blow up
    /// (Song et al. 2021 use eps = 1e-3 for VP and sub-VP, 1e-5 for VE). N model evaluations, plus one when
    /// <paramref name="denoise"/> is set: x0 = (x + sigma_eps^2 s_theta(x, eps)) / alpha_eps, Tweedie's
    /// E[x0 | x_eps], which removes the noise left at t = eps (Song et al. 2021's "noise removal" step).
    /// </summary>
    /// <param name="model">The score (or noise, or x0) model, evaluated at <see cref="Sde.Level"/>(t).</param>
    /// <param name="sde">The forward SDE.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T and of every z.</param>
    /// <param name="steps">N, the number of steps.</param>
    /// <param name="eps">The time cut-off eps in (0, T).</param>
    /// <param name="denoise">Whether to finish with the Tweedie denoising step.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static Tensor Sample(ScoreModel model, Sde sde, int[] shape, Generator generator, int steps = 1000, double eps = 1e-3,
        bool denoise = true, int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(EulerMaruyama), shape);
        SamplerSupport.CheckSteps(nameof(EulerMaruyama), steps);
        SamplerSupport.CheckCutoff(nameof(EulerMaruyama), sde, eps);

        using var noGrad = Autograd.NoGrad();
        var x = sde.SamplePrior(shape, generator);
        var t = SamplerSupport.ReverseGrid(sde, eps, steps);
        for (int i = 0; i < steps; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (TensorScope.Begin())
            {
                double dt = t[i] - t[i + 1], g = sde.Diffusion(t[i]);
                var score = model.Score(x, sde.Level(t[i]), labels);
                var z = generator.Normal(shape, x.DType, x.Device);
                // x - (c(t) x - g^2 s) dt + g sqrt(dt) z, with f(x, t) = c(t) x.
                (x * (1 - sde.DriftScale(t[i]) * dt) + score * (g * g * dt) + z * (g * Math.Sqrt(dt))).CopyTo(x);
            }
            progress?.Report(i + 1);
        }
        if (denoise)
        {
            using (TensorScope.Begin()) model.X0(x, sde.Level(eps), labels).CopyTo(x);
        }
        return x;
    }
}
