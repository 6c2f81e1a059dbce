using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>
/// DDIM sampling (Song, Meng and Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12 with the
/// variance of eq. 16) over a subsequence tau_1 &lt; ... &lt; tau_S of a DDPM schedule's steps. eta = 0 is the
/// deterministic DDIM; eta = 1 on every step is DDPM ancestral sampling with sigma_t^2 = beta_tilde_t.
/// </summary>
public static class Ddim
{
    /// <summary>
    /// DDIM with <paramref name="steps"/> steps evenly spread over the schedule and ending on its last step
    /// (tau_i = round(i T / S) - 1, i = 1..S, the "trailing" spacing of Lin et al. 2024, which starts from
    /// the step where x_T is closest to N(0, I)).
    /// </summary>
    /// <param name="model">The noise (or score, or x0) model.</param>
    /// <param name="schedule">The DDPM schedule the model was trained on.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T and, for eta &gt; 0, of every z.</param>
    /// <param name="steps">Number of steps S, 1..T.</param>
    /// <param name="eta">Stochasticity eta &gt;= 0 (0: deterministic).</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    /// <param name="clipDenoised">Clamp x0_hat to [-c, c] each step (DDPM's clip_denoised for data in [-1, 1]); null: no clamp.</param>
    public static Tensor Sample(ScoreModel model, DdpmSchedule schedule, int[] shape, Generator generator, int steps, double eta = 0.0,
        int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, double? clipDenoised = null)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        if (steps < 1 || steps > schedule.Steps)
            throw new ArgumentOutOfRangeException(nameof(steps), steps, $"DDIM: the number of steps must lie in 1..{schedule.Steps} (the schedule's T)");
        var tau = new int[steps];
        for (int i = 1; i <= steps; i++) tau[i - 1] = (int)Math.Round((double)i * schedule.Steps / steps) - 1;
        return Sample(model, schedule, shape, generator, tau, eta, labels, progress, cancellationToken, clipDenoised);
    }

    /// <summary>
    /// DDIM over the given strictly increasing schedule steps tau (0-based; tau_1 may be any step, the sampler
    /// starts at tau_S and ends at x_0). For i = S..1, with alpha_bar_{tau_0} = 1:
    /// x0_hat = (x - sqrt(1 - alpha_bar_{tau_i}) eps) / sqrt(alpha_bar_{tau_i}),
    /// sigma_i = eta sqrt((1 - alpha_bar_{tau_{i-1}}) / (1 - alpha_bar_{tau_i})) sqrt(1 - alpha_bar_{tau_i} / alpha_bar_{tau_{i-1}}),
    /// x_{tau_{i-1}} = sqrt(alpha_bar_{tau_{i-1}}) x0_hat + sqrt(1 - alpha_bar_{tau_{i-1}} - sigma_i^2) eps + sigma_i z.
    /// One model evaluation per step; z is drawn only when sigma_i &gt; 0.
    /// </summary>
    /// <param name="model">The noise (or score, or x0) model.</param>
    /// <param name="schedule">The DDPM schedule the model was trained on.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T and of every z.</param>
    /// <param name="timesteps">The subsequence tau, strictly increasing, within 0..T-1.</param>
    /// <param name="eta">Stochasticity eta &gt;= 0.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    /// <param name="clipDenoised">
    /// Clamp x0_hat to [-c, c] each step and use the eps consistent with it, eps = (x - sqrt(alpha_bar) x0_hat) /
    /// sqrt(1 - alpha_bar) (DDPM's clip_denoised, for image data in [-1, 1]); null: no clamp.
    /// </param>
    public static Tensor Sample(ScoreModel model, DdpmSchedule schedule, int[] shape, Generator generator, IReadOnlyList<int> timesteps, double eta = 0.0,
        int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, double? clipDenoised = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentNullException.ThrowIfNull(timesteps);
        SamplerSupport.CheckShape(nameof(Ddim), shape);
        if (!(eta >= 0) || !double.IsFinite(eta)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "DDIM: eta must be finite and >= 0");
        if (timesteps.Count == 0) throw new ArgumentException("DDIM: needs at least one timestep", nameof(timesteps));
        for (int i = 0; i < timesteps.Count; i++)
        {
            if (timesteps[i] < 0 || timesteps[i] >= schedule.Steps || (i > 0 && timesteps[i] <= timesteps[i - 1]))
                throw new ArgumentException($"DDIM: timesteps must increase strictly within 0..{schedule.Steps - 1}; timesteps[{i}] = {timesteps[i]}", nameof(timesteps));
        }

        using var noGrad = Autograd.NoGrad();
        var x = generator.Normal(shape);
        int count = timesteps.Count;
        for (int i = count - 1; i >= 0; i--)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (TensorScope.Begin())
            {
                int t = timesteps[i];
                double alphaBar = schedule.AlphaBars[t];
                double alphaBarPrev = i > 0 ? schedule.AlphaBars[timesteps[i - 1]] : 1.0;
                var eps = model.Epsilon(x, schedule.Level(t), labels);
                var x0 = (x - eps * Math.Sqrt(1 - alphaBar)) * (1 / Math.Sqrt(alphaBar));
                if (clipDenoised is double c)
                {
                    x0 = Ops.Clamp(x0, -c, c);
                    eps = (x - x0 * Math.Sqrt(alphaBar)) * (1 / Math.Sqrt(1 - alphaBar));
                }
                double sigma = eta * Math.Sqrt((1 - alphaBarPrev) / (1 - alphaBar)) * Math.Sqrt(1 - alphaBar / alphaBarPrev);
                // Clamped at 0: with eta > 1 sigma^2 can exceed 1 - alpha_bar_prev, leaving no deterministic part.
                double direction = Math.Sqrt(Math.Max(0.0, 1 - alphaBarPrev - sigma * sigma));
                var next = x0 * Math.Sqrt(alphaBarPrev) + eps * direction;
                if (sigma > 0) next = next + generator.Normal(shape, x.DType, x.Device) * sigma;
                next.CopyTo(x);
            }
            progress?.Report(count - i);
        }
        return x;
    }
}
