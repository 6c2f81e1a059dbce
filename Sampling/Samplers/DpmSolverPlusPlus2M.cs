using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>
/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
/// Models", Algorithm 2): a second-order multistep solver of the probability-flow ODE written in the
/// data prediction x_theta and the half-log-SNR lambda_t = log(alpha_t / sigma_t), integrating the linear
/// part exactly. For few-step sampling (10-25 model evaluations) on VP; it uses only alpha_t and sigma_t,
/// so it runs on sub-VP and VE too.
/// </summary>
public static class DpmSolverPlusPlus2M
{
    /// <summary>
    /// x_{t_0} ~ the prior at t_0 = T; the times t_0 &gt; t_1 &gt; ... &gt; t_M = eps are equally spaced in lambda
    /// (Lu et al.'s "logSNR" spacing, recommended for few steps). With h_i = lambda_{t_i} - lambda_{t_{i-1}}:
    /// step 1 is first order, x_{t_1} = (sigma_{t_1} / sigma_{t_0}) x_{t_0} - alpha_{t_1} (e^{-h_1} - 1) x_theta(x_{t_0}, t_0);
    /// for i = 2..M, with r_i = h_{i-1} / h_i and D_i = (1 + 1/(2 r_i)) x_theta(x_{t_{i-1}}, t_{i-1}) - 1/(2 r_i) x_theta(x_{t_{i-2}}, t_{i-2}),
    /// x_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) x_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i.
    /// M model evaluations, plus one when <paramref name="denoise"/> is set (Tweedie's x0 = x_theta(x_eps, eps)
    /// at the end, the "denoise to zero" step of Lu et al.'s code).
    /// </summary>
    /// <param name="model">The score (or noise, or x0) model.</param>
    /// <param name="sde">The forward SDE.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T (the only randomness).</param>
    /// <param name="steps">M, the number of steps (= model evaluations).</param>
    /// <param name="eps">The time cut-off eps in (0, T).</param>
    /// <param name="denoise">Whether to finish with the Tweedie denoising step.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static Tensor Sample(ScoreModel model, Sde sde, int[] shape, Generator generator, int steps = 20, double eps = 1e-3,
        bool denoise = false, int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(DpmSolverPlusPlus2M), shape);
        SamplerSupport.CheckSteps(nameof(DpmSolverPlusPlus2M), steps);
        SamplerSupport.CheckCutoff(nameof(DpmSolverPlusPlus2M), sde, eps);

        var time = LogSnrGrid(sde, eps, steps);
        using var noGrad = Autograd.NoGrad();
        var x = sde.SamplePrior(shape, generator);
        var previousX0 = Tensor.Zeros(shape, x.DType, x.Device);
        double previousH = 0;
        for (int i = 1; i <= steps; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double s = time[i - 1], t = time[i];
            double h = Lambda(sde, t) - Lambda(sde, s);
            using (TensorScope.Begin())
            {
                var x0 = model.X0(x, sde.Level(s), labels);
                var d = x0;
                if (i > 1)
                {
                    double r = previousH / h;
                    d = x0 * (1 + 1 / (2 * r)) - previousX0 * (1 / (2 * r));
                }
                // -alpha_t (e^{-h} - 1) = alpha_t (1 - e^{-h}), computed with expm1 for small h.
                var next = x * (sde.MarginalStd(t) / sde.MarginalStd(s)) - d * (sde.MarginalMean(t) * double.ExpM1(-h));
                x0.CopyTo(previousX0);
                next.CopyTo(x);
            }
            previousH = h;
            progress?.Report(i);
        }
        previousX0.Dispose();
        if (denoise)
        {
            using (TensorScope.Begin()) model.X0(x, sde.Level(eps), labels).CopyTo(x);
        }
        return x;
    }

    /// <summary>lambda_t = log(alpha_t / sigma_t), half the log signal-to-noise ratio.</summary>
    public static double Lambda(Sde sde, double t) => Math.Log(sde.MarginalMean(t)) - Math.Log(sde.MarginalStd(t));

    // t_0 = T > ... > t_M = eps equally spaced in lambda, lambda(t) inverted by bisection (lambda decreases
    // strictly in t for VP, sub-VP and VE); 200 halvings reach double precision on [eps, T].
    private static double[] LogSnrGrid(Sde sde, double eps, int steps)
    {
        double lambdaT = Lambda(sde, sde.T), lambdaEps = Lambda(sde, eps);
        if (!(lambdaEps > lambdaT))
            throw new ArgumentException($"DpmSolverPlusPlus2M: lambda must decrease in t, got lambda(T) = {lambdaT}, lambda(eps) = {lambdaEps} for the {sde.Name} SDE");
        var time = new double[steps + 1];
        time[0] = sde.T;
        time[steps] = eps;
        for (int i = 1; i < steps; i++)
        {
            double target = lambdaT + (lambdaEps - lambdaT) * i / steps;
            double lo = eps, hi = sde.T;
            for (int k = 0; k < 200 && hi - lo > 0; k++)
            {
                double mid = 0.5 * (lo + hi);
                if (Lambda(sde, mid) > target) lo = mid; else hi = mid;
            }
            time[i] = 0.5 * (lo + hi);
        }
        return time;
    }
}
