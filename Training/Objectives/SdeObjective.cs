using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Training.Objectives;

/// <summary>
/// Continuous-time denoising score matching for an <see cref="Sde"/> (Song et al. 2021, eq. 7):
/// E_t lambda(t) E_{x0, x_t} || s_theta(x_t, t) - grad log p_0t(x_t | x0) ||^2 with
/// x_t = alpha_t x0 + sigma_t eps, grad log p_0t(x_t | x0) = -eps / sigma_t, and lambda(t) = sigma_t^2, so the
/// integrand is || sigma_t s_theta + eps ||^2. Times below the cut-off eta are left out: sigma_t -> 0 there
/// and the target -eps / sigma_t blows up (Song et al. use eta = 1e-5).
/// The network's output may be any <see cref="Parameterisation"/> (converted with the marginal):
/// with eps_theta, sigma_t s_theta + eps = eps - eps_theta (the DDPM form); with the score, sigma_t s_theta + eps
/// directly; with x0_theta, eps - (x_t - alpha_t x0_theta) / sigma_t.
/// The network is told <see cref="Sde.NetworkCondition"/>(t) per sample.
/// </summary>
public static class SdeObjective
{
    /// <summary>The default time cut-off eta of Song et al. 2021.</summary>
    public const double DefaultEta = 1e-5;

    /// <summary>
    /// Eq. 7 with t ~ U[eta, T]: t and then eps ~ N(0, I) are drawn from <paramref name="generator"/>, and
    /// the result is the batch mean of || sigma_t s_theta + eps ||^2 (summed over a sample's elements).
    /// </summary>
    public static Tensor DenoisingScoreMatchingLoss(ScoreNetwork model, Sde sde, Parameterisation output, Tensor x0, Generator generator,
        double eta = DefaultEta, int[]? labels = null)
    {
        const string op = "SdeObjective.DenoisingScoreMatchingLoss";
        int batch = ObjectiveMath.CheckBatch(op, x0);
        ObjectiveMath.CheckEta(op, eta, sde.T);
        var t = ObjectiveMath.UniformTimes(generator, batch, eta, sde.T);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        return DenoisingScoreMatchingLoss(model, sde, output, x0, t, eps, null, labels);
    }

    /// <summary>
    /// Eq. 7 with t drawn from pi(t) proportional to 1/sigma_t^2 on [eta, T] (<paramref name="sampler"/>; t and
    /// then eps are drawn from <paramref name="generator"/>), each sample weighted by
    /// lambda(t) / (pi(t) (T - eta)) on the unweighted || s_theta + eps / sigma_t ||^2. Since
    /// E_pi[lambda / (pi (T - eta)) l] = (1 / (T - eta)) int lambda l dt = E_U[lambda l], the expectation equals
    /// <see cref="DenoisingScoreMatchingLoss(ScoreNetwork, Sde, Parameterisation, Tensor, Generator, double, int[])"/>'s;
    /// per sample the weighted term is sigma_t^2 / (pi(t) (T - eta)) || s_theta + eps / sigma_t ||^2
    /// = || sigma_t s_theta + eps ||^2 / (pi(t) (T - eta)). The proposal follows the unweighted loss, which grows
    /// like 1/sigma_t^2 near eta; but with lambda = sigma_t^2 the uniform integrand is already bounded, so the
    /// weights (from sigma_eta^2 Z / (T - eta), tiny, to Z / (T - eta), large and rarely drawn) add variance:
    /// measured on a 2-D Gaussian toy with a closed-form model (Tests/Training/ObjectiveTests.cs), the
    /// per-sample variance is about 7 times the uniform one for VP and about 250 times for VE. It is the right
    /// proposal for weightings that keep the 1/sigma_t^2 growth, not a variance reduction for this one.
    /// </summary>
    public static Tensor ImportanceSampledLoss(ScoreNetwork model, Parameterisation output, Tensor x0, Generator generator,
        InverseVarianceTimeSampler sampler, int[]? labels = null)
    {
        int batch = ObjectiveMath.CheckBatch("SdeObjective.ImportanceSampledLoss", x0);
        var (t, density) = sampler.Sample(generator, batch);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        var weights = density.Select(p => 1.0 / (p * (sampler.T - sampler.Eta))).ToArray();
        return DenoisingScoreMatchingLoss(model, sampler.Sde, output, x0, t, eps, weights, labels);
    }

    /// <summary>
    /// The batch mean of weight_b || sigma_t s_theta(x_t, t) + eps ||^2 for given times t, noise eps and optional
    /// per-sample weights (1 when null), with x_t = alpha_t x0 + sigma_t eps. Differentiable in the parameters.
    /// </summary>
    public static Tensor DenoisingScoreMatchingLoss(ScoreNetwork model, Sde sde, Parameterisation output, Tensor x0, double[] t, Tensor eps,
        double[]? weights = null, int[]? labels = null)
    {
        const string op = "SdeObjective.DenoisingScoreMatchingLoss";
        int batch = ObjectiveMath.CheckBatch(op, x0, eps);
        ObjectiveMath.CheckLength(op, nameof(t), t, batch);
        if (weights is not null) ObjectiveMath.CheckLength(op, nameof(weights), weights, batch);
        foreach (var ti in t)
            if (!(ti > 0 && ti <= sde.T)) throw new ArgumentOutOfRangeException(nameof(t), ti, $"{op}: time outside (0, {sde.T}] (sigma_t must be positive)");
        var xt = sde.Perturb(x0, eps, t);
        var y = model.Forward(xt, ObjectiveMath.Vector(t.Select(sde.NetworkCondition).ToArray(), x0), labels);
        var sigma = PerSample.Column(t.Select(sde.MarginalStd).ToArray(), x0);
        var residual = output switch
        {
            Parameterisation.Epsilon => Ops.Sub(eps, y),
            Parameterisation.Score => Ops.Add(Ops.Mul(sigma, y), eps),
            Parameterisation.X0 => Ops.Sub(eps, Ops.Div(Ops.Sub(xt, Ops.Mul(PerSample.Column(t.Select(sde.MarginalMean).ToArray(), x0), y)), sigma)),
            _ => throw new ArgumentOutOfRangeException(nameof(output), output, $"{op}: unknown parameterisation"),
        };
        var perSample = ObjectiveMath.SquaredNormPerSample(residual);
        if (weights is not null) perSample = Ops.Mul(ObjectiveMath.Vector(weights, x0), perSample);
        return Ops.Mean(perSample);
    }
}
