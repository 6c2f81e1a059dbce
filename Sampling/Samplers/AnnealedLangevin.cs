using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Samplers;

/// <summary>
/// Annealed Langevin dynamics for NCSN (Song and Ermon 2019, "Generative Modeling by Estimating Gradients of
/// the Data Distribution", Algorithm 1): Langevin MCMC on each noise level sigma_1 &gt; ... &gt; sigma_L in turn,
/// each level's chain starting where the previous one ended.
/// </summary>
public static class AnnealedLangevin
{
    /// <summary>
    /// x_0 ~ N(0, sigma_1^2 I) (Algorithm 1 leaves the start open; NCSN's code draws it uniformly on [0, 1],
    /// NCSNv2 (Song and Ermon 2020) picks sigma_1 large enough that N(0, sigma_1^2 I) covers the data, so the
    /// chain starts near its first target). For i = 1..L: alpha_i = eps sigma_i^2 / sigma_L^2; T times:
    /// z ~ N(0, I), x_t = x_{t-1} + alpha_i / 2 s_theta(x_{t-1}, sigma_i) + sqrt(alpha_i) z.
    /// L T model evaluations, plus one when <paramref name="denoise"/> is set: the final step
    /// x = x + sigma_L^2 s_theta(x, sigma_L) is Tweedie's formula E[x0 | x], which removes the sigma_L noise the
    /// chains leave (Jolicoeur-Martineau et al. 2021, "Adversarial score matching and improved sampling").
    /// </summary>
    /// <param name="model">The noise-conditional score model, evaluated at <see cref="NcsnSigmas.Level"/>(i).</param>
    /// <param name="sigmas">The levels sigma_1 &gt; ... &gt; sigma_L.</param>
    /// <param name="shape">The batch shape [B, ...].</param>
    /// <param name="generator">Source of x_0 and of every z.</param>
    /// <param name="stepsPerLevel">T, the Langevin steps per level (100 in the paper).</param>
    /// <param name="stepSize">eps, the step size at the last level (2e-5 in the paper).</param>
    /// <param name="denoise">Whether to finish with the Tweedie denoising step.</param>
    /// <param name="labels">Class labels passed to the model, or null.</param>
    /// <param name="progress">Receives the number of Langevin steps done (L T in all).</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static Tensor Sample(ScoreModel model, NcsnSigmas sigmas, int[] shape, Generator generator, int stepsPerLevel = 100, double stepSize = 2e-5,
        bool denoise = false, int[]? labels = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sigmas);
        ArgumentNullException.ThrowIfNull(generator);
        SamplerSupport.CheckShape(nameof(AnnealedLangevin), shape);
        SamplerSupport.CheckSteps(nameof(AnnealedLangevin), stepsPerLevel, nameof(stepsPerLevel));
        if (!(stepSize > 0) || !double.IsFinite(stepSize)) throw new ArgumentOutOfRangeException(nameof(stepSize), stepSize, "AnnealedLangevin: the step size eps must be positive");

        using var noGrad = Autograd.NoGrad();
        var x = generator.Normal(shape);
        using (TensorScope.Begin()) (x * sigmas.Sigmas[0]).CopyTo(x);
        double sigmaL = sigmas.Sigmas[^1];
        int done = 0;
        for (int i = 0; i < sigmas.Count; i++)
        {
            double alpha = stepSize * sigmas.Sigmas[i] * sigmas.Sigmas[i] / (sigmaL * sigmaL);
            var level = sigmas.Level(i);
            for (int t = 0; t < stepsPerLevel; t++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (TensorScope.Begin())
                {
                    var score = model.Score(x, level, labels);
                    var z = generator.Normal(shape, x.DType, x.Device);
                    (x + score * (alpha / 2) + z * Math.Sqrt(alpha)).CopyTo(x);
                }
                progress?.Report(++done);
            }
        }
        if (denoise)
        {
            using (TensorScope.Begin())
            {
                var level = sigmas.Level(sigmas.Count - 1);
                (x + model.Score(x, level, labels) * (sigmaL * sigmaL)).CopyTo(x);
            }
        }
        return x;
    }
}
