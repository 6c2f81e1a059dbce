using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>Which reverse-step variance the DDPM sampler uses (Ho et al. 2020, section 3.2).</summary>
public enum DdpmVariance
{
    /// <summary>sigma_t^2 = beta_t (optimal for x0 ~ N(0, I)).</summary>
    Beta,
    /// <summary>sigma_t^2 = beta_tilde_t (optimal for x0 deterministic).</summary>
    PosteriorBetaTilde,
}

/// <summary>DDPM ancestral sampling (Ho et al. 2020, Algorithm 2).</summary>
public static class DdpmAncestral
{
    /// <summary>
    /// x_T ~ N(0, I); for t = T..1: x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_t) + sigma_t z,
    /// z ~ N(0, I) except at the last step. <paramref name="epsilon"/> maps (x_t, t as a [B] tensor of step
    /// indices) to the predicted noise. The update is two fused axpby kernels in place.
    /// </summary>
    public static Tensor Sample(Func<Tensor, Tensor, Tensor> epsilon, DdpmSchedule schedule, int[] shape, Generator generator,
        DdpmVariance variance = DdpmVariance.Beta, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        using var noGrad = Autograd.NoGrad();
        var x = generator.Normal(shape);
        var backend = x.Device.Backend;
        for (int t = schedule.Steps - 1; t >= 0; t--)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = TensorScope.Begin();
            var times = Tensor.Full([shape[0]], t, x.DType, x.Device);
            var eps = epsilon(x, times);
            double c1 = 1.0 / Math.Sqrt(schedule.Alphas[t]);
            double c2 = schedule.Betas[t] / Math.Sqrt(1.0 - schedule.AlphaBars[t]);
            backend.Axpby(eps.Buffer, x.Buffer, x.Count, -c1 * c2, c1);
            if (t > 0)
            {
                double sigma = Math.Sqrt(variance == DdpmVariance.Beta ? schedule.Betas[t] : schedule.PosteriorVariance[t]);
                var z = generator.Normal(shape, x.DType, x.Device);
                backend.Axpby(z.Buffer, x.Buffer, x.Count, sigma, 1.0);
            }
            progress?.Report(schedule.Steps - t);
        }
        return x;
    }
}
