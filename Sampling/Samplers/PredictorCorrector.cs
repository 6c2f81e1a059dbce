using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>The predictor step of <see cref="PredictorCorrector"/>.</summary>
public enum Predictor
{
    /// <summary>
    /// Reverse diffusion (Song et al. 2021, Appendix E): the reverse of the forward process discretised with its
    /// exact Gaussian transition x_t | x_s ~ N(a x_s, v I), a = alpha_t / alpha_s, v = sigma_t^2 - a^2 sigma_s^2:
    /// x_s = x_t - (a - 1) x_t + v s_theta(x_t, t) + sqrt(v) z. For VE this is Algorithm 2's
    /// predictor (v = sigma_t^2 - sigma_s^2); for VP, Algorithm 3's (v = beta_i) to first order in the step.
    /// </summary>
    ReverseDiffusion,

    /// <summary>Euler-Maruyama on the reverse SDE (eq. 6), as in <see cref="EulerMaruyama"/>.</summary>
    EulerMaruyama,
}

/// <summary>
/// Predictor-corrector sampling (Song et al. 2021, "Score-Based Generative Modeling through Stochastic
/// Differential Equations", Algorithm 1, with the VE and VP instances of Algorithms 2 and 3): at each time
/// step, a predictor step of the reverse SDE, then M steps of Langevin MCMC at the new time as corrector,
/// the corrector's step size set from a target signal-to-noise ratio r.
/// </summary>
public static class PredictorCorrector
{
    /// <summary>
    /// x_N ~ the prior; for i = N-1..0 on the grid t_N = T &gt; ... &gt; t_0 = eps (equal steps): the predictor
    /// takes x from t_{i+1} to t_i; then M times: g = s_theta(x, t_i), z ~ N(0, I),
    /// eps_i = 2 alpha_i (r |z| / |g|)^2, x = x + eps_i g + sqrt(2 eps_i) z, where alpha_i = (alpha_{t_{i+1}} / alpha_{t_i})^2
    /// (Algorithm 3's 1 - beta_i for VP and sub-VP, 1 for VE, where Algorithm 2 has no alpha). As in Song et al.'s
    /// code, |z| and |g| are the batch means of the per-sample norms, so one step size serves the whole batch:
    /// a step size that depended on each sample's own |g| would not leave p_t invariant, and in low dimensions,
    /// where |g| of a single sample can be near 0 at a mode, would explode (the batch's samples thus interact
    /// through this one number). N (1 + M) model evaluations, plus one when <paramref name="denoise"/> is set: Tweedie's
    /// x0 = (x + sigma_eps^2 s_theta(x, eps)) / alpha_eps at the end (Song et al.'s "noise removal").
    /// </summary>
    /// <param name="model">The score (or noise, or x0) model, evaluated at <see cref="Sde.Level"/>(t).</param>
    /// <param name="sde">The forward SDE.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_T and of every z.</param>
    /// <param name="steps">N, the number of predictor steps.</param>
    /// <param name="predictor">Reverse diffusion or Euler-Maruyama.</param>
    /// <param name="correctorSteps">M, Langevin steps after each predictor step (0: predictor only).</param>
    /// <param name="snr">The target signal-to-noise ratio r (0.16 for VE on CIFAR-10 in Song et al. 2021).</param>
    /// <param name="eps">The time cut-off eps in (0, T).</param>
    /// <param name="denoise">Whether to finish with the Tweedie denoising step.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of predictor steps done.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static Tensor Sample(ScoreModel model, Sde sde, int[] shape, Generator generator, int steps = 1000,
        Predictor predictor = Predictor.ReverseDiffusion, int correctorSteps = 1, double snr = 0.16, double eps = 1e-3,
        bool denoise = true, int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(PredictorCorrector), shape);
        SamplerSupport.CheckSteps(nameof(PredictorCorrector), steps);
        SamplerSupport.CheckCutoff(nameof(PredictorCorrector), sde, eps);
        if (correctorSteps < 0) throw new ArgumentOutOfRangeException(nameof(correctorSteps), correctorSteps, "PredictorCorrector: must be >= 0");
        if (!(snr > 0) || !double.IsFinite(snr)) throw new ArgumentOutOfRangeException(nameof(snr), snr, "PredictorCorrector: the target SNR r must be positive");

        using var noGrad = Autograd.NoGrad();
        var x = sde.SamplePrior(shape, generator);
        // Times from T down to eps: step i goes from time[i] to time[i + 1] (the paper's t_{i+1} to t_i).
        var time = SamplerSupport.ReverseGrid(sde, eps, steps);
        for (int i = 0; i < steps; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            double from = time[i], to = time[i + 1];
            using (TensorScope.Begin())
            {
                var next = predictor == Predictor.ReverseDiffusion
                    ? ReverseDiffusionStep(model, sde, x, from, to, generator, labels)
                    : EulerMaruyamaStep(model, sde, x, from, to, generator, labels);
                next.CopyTo(x);
            }
            double ratio = sde.MarginalMean(from) / sde.MarginalMean(to);
            double alpha = ratio * ratio;
            var level = sde.Level(to);
            for (int j = 0; j < correctorSteps; j++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (TensorScope.Begin()) LangevinCorrectorStep(model, x, level, alpha, snr, generator, labels).CopyTo(x);
            }
            progress?.Report(i + 1);
        }
        if (denoise)
        {
            using (TensorScope.Begin()) model.X0(x, sde.Level(eps), labels).CopyTo(x);
        }
        return x;
    }

    // x_s = (2 - a) x_t + v s_theta(x_t, t) + sqrt(v) z with a = alpha_t / alpha_s, v = sigma_t^2 - a^2 sigma_s^2
    // (t > s): Song et al.'s reverse-diffusion predictor with the forward step f = (a - 1) x, G = sqrt(v).
    private static Tensor ReverseDiffusionStep(ScoreModel model, Sde sde, Tensor x, double t, double s, Generator generator, int[]? labels)
    {
        double a = sde.MarginalMean(t) / sde.MarginalMean(s);
        double sigmaT = sde.MarginalStd(t), sigmaS = sde.MarginalStd(s);
        double v = Math.Max(0.0, sigmaT * sigmaT - a * a * sigmaS * sigmaS);
        var score = model.Score(x, sde.Level(t), labels);
        var z = generator.Normal(x.Shape, x.DType, x.Device);
        return x * (2 - a) + score * v + z * Math.Sqrt(v);
    }

    // Euler-Maruyama on eq. 6: x - (c(t) x - g^2 s) dt + g sqrt(dt) z, dt = t - s > 0.
    private static Tensor EulerMaruyamaStep(ScoreModel model, Sde sde, Tensor x, double t, double s, Generator generator, int[]? labels)
    {
        double dt = t - s, g = sde.Diffusion(t);
        var score = model.Score(x, sde.Level(t), labels);
        var z = generator.Normal(x.Shape, x.DType, x.Device);
        return x * (1 - sde.DriftScale(t) * dt) + score * (g * g * dt) + z * (g * Math.Sqrt(dt));
    }

    // Algorithms 2-3, corrector: eps = 2 alpha (r mean|z| / mean|g|)^2 over the batch, x + eps g + sqrt(2 eps) z.
    private static Tensor LangevinCorrectorStep(ScoreModel model, Tensor x, NoiseLevel level, double alpha, double snr, Generator generator, int[]? labels)
    {
        var g = model.Score(x, level, labels);
        var z = generator.Normal(x.Shape, x.DType, x.Device);
        double gNorm = Ops.Mean(Ops.Sqrt(SamplerSupport.SquaredNormPerSample(g))).Item();
        double zNorm = Ops.Mean(Ops.Sqrt(SamplerSupport.SquaredNormPerSample(z))).Item();
        double ratio = snr * zNorm / gNorm;
        double step = 2 * alpha * ratio * ratio;
        if (!double.IsFinite(step))
            throw new ArithmeticException($"PredictorCorrector: the Langevin step size is {step} (mean score norm {gNorm}, mean noise norm {zNorm}) at sigma = {level.Sigma}");
        return x + g * step + z * Math.Sqrt(2 * step);
    }
}
