using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Processes;

/// <summary>
/// A forward SDE dx = f(x, t) dt + g(t) dw on t in [0, T] (Song et al. 2021, eq. 5) whose drift is linear
/// in x, f(x, t) = <see cref="DriftScale"/>(t) x, as for VP, sub-VP and VE. Its marginal given x0 is then
/// Gaussian, x_t | x0 ~ N(alpha_t x0, sigma_t^2 I), and its prior at T is N(0, <see cref="PriorStd"/>^2 I).
/// </summary>
public abstract class Sde
{
    /// <summary>End time T (1 for all three SDEs here).</summary>
    public virtual double T => 1.0;

    /// <summary>Short name ("vp", "subvp", "ve").</summary>
    public abstract string Name { get; }

    /// <summary>The scalar c(t) in f(x, t) = c(t) x.</summary>
    public abstract double DriftScale(double t);

    /// <summary>The diffusion coefficient g(t).</summary>
    public abstract double Diffusion(double t);

    /// <summary>alpha_t: the mean of x_t given x0 is alpha_t x0.</summary>
    public abstract double MarginalMean(double t);

    /// <summary>sigma_t: the standard deviation of x_t given x0.</summary>
    public abstract double MarginalStd(double t);

    /// <summary>Standard deviation of the prior N(0, s^2 I) that x_T is drawn from.</summary>
    public abstract double PriorStd { get; }

    /// <summary>What <see cref="NetworkCondition"/> returns: a scaled time or a sigma.</summary>
    public abstract ConditionKind ConditionKind { get; }

    /// <summary>
    /// The value fed to a network at time t: 999 t for VP and sub-VP (the range of DDPM's step indices,
    /// as in Song et al.'s DDPM++ code), sigma_t for VE (networks embed log sigma with Fourier features).
    /// </summary>
    public double NetworkCondition(double t) => ConditionKind == ConditionKind.Time ? 999.0 * t : MarginalStd(t);

    /// <summary>The marginal at time t as a <see cref="NoiseLevel"/>.</summary>
    public NoiseLevel Level(double t) => new(MarginalMean(t), MarginalStd(t), NetworkCondition(t));

    /// <summary>f(x, t).</summary>
    public Tensor Drift(Tensor x, double t) => Ops.Scale(x, DriftScale(t));

    /// <summary>A draw from the prior N(0, PriorStd^2 I).</summary>
    public Tensor SamplePrior(int[] shape, Generator generator, DType dtype = DType.Float32, Device? device = null)
    {
        var z = generator.Normal(shape, dtype, device);
        if (PriorStd == 1.0) return z;
        var r = Ops.Scale(z, PriorStd);
        z.Dispose();
        return r;
    }

    /// <summary>
    /// log N(z; 0, PriorStd^2 I) per sample: for z of shape [B, ...] a [B] tensor,
    /// -d/2 log(2 pi s^2) - |z|^2 / (2 s^2) with d the size of one sample.
    /// </summary>
    public Tensor PriorLogDensity(Tensor z)
    {
        if (z.Rank < 1) throw new TensorException("PriorLogDensity", $"expects a batch [B, ...], got {ShapeUtil.Format(z.Shape)}");
        long d = z.Count / z.Shape[0];
        double s2 = PriorStd * PriorStd;
        var axes = Enumerable.Range(1, z.Rank - 1).ToArray();
        var sq = axes.Length == 0 ? Ops.Square(z) : Ops.Sum(Ops.Square(z), axes);
        return Ops.Affine(sq, -0.5 / s2, -0.5 * d * Math.Log(2 * Math.PI * s2));
    }

    /// <summary>x_t = alpha_t x0 + sigma_t eps with one time per batch entry (t.Length = B).</summary>
    public Tensor Perturb(Tensor x0, Tensor eps, double[] t)
    {
        var mean = PerSample.Column(t.Select(MarginalMean).ToArray(), x0);
        var std = PerSample.Column(t.Select(MarginalStd).ToArray(), x0);
        return Ops.Add(Ops.Mul(mean, x0), Ops.Mul(std, eps));
    }

    /// <summary>Creates an SDE by name ("vp", "subvp", "ve") with its default parameters.</summary>
    public static Sde Create(string name) => name.ToLowerInvariant() switch
    {
        "vp" => new VpSde(),
        "subvp" or "sub-vp" => new SubVpSde(),
        "ve" => new VeSde(),
        _ => throw new ArgumentException($"unknown SDE '{name}'; expected vp, subvp or ve", nameof(name)),
    };
}

/// <summary>
/// Variance-preserving SDE (Song et al. 2021, eq. 11): dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw with
/// beta(t) = beta_min + t (beta_max - beta_min), the continuous limit of DDPM. With B(t) = int_0^t beta:
/// alpha_t = exp(-B/2), sigma_t^2 = 1 - exp(-B).
/// </summary>
public class VpSde(double betaMin = 0.1, double betaMax = 20.0) : Sde
{
    /// <summary>beta(0).</summary>
    public double BetaMin { get; } = betaMin > 0 && betaMax > betaMin ? betaMin : throw new ArgumentOutOfRangeException(nameof(betaMin), $"need 0 < beta_min < beta_max, got {betaMin}, {betaMax}");

    /// <summary>beta(1).</summary>
    public double BetaMax { get; } = betaMax;

    /// <inheritdoc />
    public override string Name => "vp";

    /// <summary>beta(t).</summary>
    public double Beta(double t) => BetaMin + t * (BetaMax - BetaMin);

    /// <summary>B(t) = int_0^t beta(s) ds.</summary>
    public double IntegratedBeta(double t) => BetaMin * t + 0.5 * t * t * (BetaMax - BetaMin);

    /// <inheritdoc />
    public override double DriftScale(double t) => -0.5 * Beta(t);

    /// <inheritdoc />
    public override double Diffusion(double t) => Math.Sqrt(Beta(t));

    /// <inheritdoc />
    public override double MarginalMean(double t) => Math.Exp(-0.5 * IntegratedBeta(t));

    /// <inheritdoc />
    public override double MarginalStd(double t) => Math.Sqrt(-double.ExpM1(-IntegratedBeta(t)));

    /// <inheritdoc />
    public override double PriorStd => 1.0;

    /// <inheritdoc />
    public override ConditionKind ConditionKind => ConditionKind.Time;
}

/// <summary>
/// Sub-VP SDE (Song et al. 2021, eq. 12): the VP drift with g(t)^2 = beta(t) (1 - exp(-2 B(t))), whose
/// variance is bounded by the VP one: alpha_t = exp(-B/2), sigma_t = 1 - exp(-B).
/// </summary>
public sealed class SubVpSde(double betaMin = 0.1, double betaMax = 20.0) : VpSde(betaMin, betaMax)
{
    /// <inheritdoc />
    public override string Name => "subvp";

    /// <inheritdoc />
    public override double Diffusion(double t) => Math.Sqrt(Beta(t) * -double.ExpM1(-2 * IntegratedBeta(t)));

    /// <inheritdoc />
    public override double MarginalStd(double t) => -double.ExpM1(-IntegratedBeta(t));
}

/// <summary>
/// Variance-exploding SDE (Song et al. 2021, eq. 9), the continuous limit of NCSN: dx = g(t) dw with
/// sigma(t) = sigma_min (sigma_max / sigma_min)^t and g(t) = sigma(t) sqrt(2 ln(sigma_max / sigma_min)).
/// Integrating g^2 from 0 gives the exact marginal variance sigma(t)^2 - sigma_min^2, which is what
/// <see cref="MarginalStd"/> returns, so closed-form marginals and the reverse SDE agree exactly.
/// </summary>
public sealed class VeSde(double sigmaMin = 0.01, double sigmaMax = 50.0) : Sde
{
    /// <summary>sigma(0).</summary>
    public double SigmaMin { get; } = sigmaMin > 0 && sigmaMax > sigmaMin ? sigmaMin : throw new ArgumentOutOfRangeException(nameof(sigmaMin), $"need 0 < sigma_min < sigma_max, got {sigmaMin}, {sigmaMax}");

    /// <summary>sigma(1).</summary>
    public double SigmaMax { get; } = sigmaMax;

    /// <inheritdoc />
    public override string Name => "ve";

    /// <summary>sigma(t) = sigma_min (sigma_max / sigma_min)^t.</summary>
    public double Sigma(double t) => SigmaMin * Math.Pow(SigmaMax / SigmaMin, t);

    /// <inheritdoc />
    public override double DriftScale(double t) => 0.0;

    /// <inheritdoc />
    public override double Diffusion(double t) => Sigma(t) * Math.Sqrt(2 * Math.Log(SigmaMax / SigmaMin));

    /// <inheritdoc />
    public override double MarginalMean(double t) => 1.0;

    /// <inheritdoc />
    public override double MarginalStd(double t)
    {
        double s = Sigma(t);
        return Math.Sqrt(Math.Max(0.0, s * s - SigmaMin * SigmaMin));
    }

    /// <inheritdoc />
    public override double PriorStd => SigmaMax;

    /// <inheritdoc />
    public override ConditionKind ConditionKind => ConditionKind.Sigma;
}
