using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>Which reverse-step variance the DDPM sampler uses (Ho et al. 2020, section 3.2).</summary>
public enum DdpmVariance
{
    /// <summary>sigma_t^2 = beta_t (optimal for x0 ~ N(0, I)).</summary>
    Beta,
    /// <summary>sigma_t^2 = beta_tilde_t (optimal for x0 deterministic).</summary>
    PosteriorBetaTilde,
}

/// <summary>DDPM ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Algorithm 2).</summary>
public static class DdpmAncestral
{
    /// <summary>
    /// x_T ~ N(0, I); for t = T..1: x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) + sigma_t z,
    /// z ~ N(0, I), except at the last step (t = 1), which adds no noise. One model evaluation per step
    /// (T in all), at <see cref="DdpmSchedule.Level"/>(t). The result is the model's x_0 in the caller's scope.
    /// </summary>
    /// <param name="model">The noise (or score, or x0) model.</param>
    /// <param name="schedule">The DDPM schedule; its step count T is the number of sampling steps.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T and of every z.</param>
    /// <param name="variance">sigma_t^2 = beta_t or beta_tilde_t.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static Tensor Sample(ScoreModel model, DdpmSchedule schedule, int[] shape, Generator generator,
        DdpmVariance variance = DdpmVariance.Beta, int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(DdpmAncestral), shape);
        using var noGrad = Autograd.NoGrad();
        var x = generator.Normal(shape);
        for (int t = schedule.Steps - 1; t >= 0; t--)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using (TensorScope.Begin())
            {
                var eps = model.Epsilon(x, schedule.Level(t), labels);
                // Index t here is the paper's t + 1 (t = 0 is the first noising step).
                double betaT = schedule.Betas[t];
                var mean = (x - eps * (betaT / Math.Sqrt(1 - schedule.AlphaBars[t]))) * (1 / Math.Sqrt(schedule.Alphas[t]));
                if (t > 0)
                {
                    double sigmaT = Math.Sqrt(variance == DdpmVariance.Beta ? betaT : schedule.PosteriorVariance[t]);
                    mean = mean + generator.Normal(shape, x.DType, x.Device) * sigmaT;
                }
                mean.CopyTo(x);
            }
            progress?.Report(schedule.Steps - t);
        }
        return x;
    }
}
