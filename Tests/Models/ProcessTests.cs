using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Processes;
using NUnit.Framework;

namespace DiffusionCore.Tests.Models;

/// <summary>The forward processes against their definitions and hand-computed values.</summary>
[TestFixture]
public class ProcessTests
{
    public static IEnumerable<Sde> Sdes() => [new VpSde(), new SubVpSde(), new VeSde(), new VpSde(0.5, 5.0), new VeSde(0.1, 10.0)];

    private static readonly double[] Times = [0.01, 0.1, 0.3, 0.5, 0.9, 0.99];

    // Central differences with h = 1e-5 in float64. Truncation error relative to f' is (h^2 / 6) f''' / f',
    // and every alpha_t, sigma_t^2 here changes at an exponential rate r of at most beta_max = 20 (VP) or
    // 2 ln(sigma_max / sigma_min) = 17 (VE), so f''' / f' <= r^2 = 400 and the error is below 7e-9. Rounding
    // adds about 1e-16 |f| / h relative to |f'|, at most 2e-8 here (VP's sigma_t^2 near 1 with f' = 9e-4).
    // 1e-6 is 50 times both, while a wrong drift or diffusion term is off by O(1).
    private const double H = 1e-5, DerivativeTolerance = 1e-6;

    private static double Derivative(Func<double, double> f, double t) => (f(t + H) - f(t - H)) / (2 * H);

    [TestCaseSource(nameof(Sdes))]
    public void MeanFollowsTheDrift(Sde sde)
    {
        // d/dt E[x_t | x0] = c(t) E[x_t | x0] for f(x, t) = c(t) x, so alpha'(t) = c(t) alpha(t).
        foreach (var t in Times)
        {
            double expected = sde.DriftScale(t) * sde.MarginalMean(t);
            double actual = Derivative(sde.MarginalMean, t);
            Assert.That(actual, Is.EqualTo(expected).Within(DerivativeTolerance * Math.Max(Math.Abs(expected), 1e-12)), $"{sde.Name} t = {t}");
        }
    }

    [TestCaseSource(nameof(Sdes))]
    public void VarianceFollowsTheDriftAndDiffusion(Sde sde)
    {
        // The moment ODE of a linear SDE (Saerkkae and Solin 2019, chapter 5; Song et al. 2021, appendix B):
        // d(sigma^2)/dt = 2 c(t) sigma^2 + g(t)^2.
        foreach (var t in Times)
        {
            double s = sde.MarginalStd(t), g = sde.Diffusion(t);
            double expected = 2 * sde.DriftScale(t) * s * s + g * g;
            double actual = Derivative(u => Math.Pow(sde.MarginalStd(u), 2), t);
            Assert.That(actual, Is.EqualTo(expected).Within(DerivativeTolerance * Math.Abs(expected)), $"{sde.Name} t = {t}");
        }
    }

    [TestCaseSource(nameof(Sdes))]
    public void MarginalStartsAtTheData(Sde sde)
    {
        // x_0 = x0: alpha(0) = 1, sigma(0) = 0 (exactly, by construction of each closed form).
        Assert.That(sde.MarginalMean(0), Is.EqualTo(1.0));
        Assert.That(sde.MarginalStd(0), Is.EqualTo(0.0));
    }

    // Known values below are from the closed forms evaluated independently (Python, float64); 1e-12 relative
    // leaves room for libm differences only.
    private const double KnownTolerance = 1e-12;

    [Test]
    public void VpAndSubVpKnownValuesAtTheEnd()
    {
        // beta 0.1 .. 20: B(1) = 0.1 + 19.9 / 2 = 10.05, alpha = exp(-5.025), sigma_VP = sqrt(1 - exp(-10.05)).
        var vp = new VpSde();
        Assert.That(vp.IntegratedBeta(1), Is.EqualTo(10.05).Within(KnownTolerance * 10.05));
        Assert.That(vp.MarginalMean(1), Is.EqualTo(0.006571586494929619).Within(KnownTolerance * 0.0066));
        Assert.That(vp.MarginalStd(1), Is.EqualTo(0.9999784068923386).Within(KnownTolerance));
        Assert.That(vp.Diffusion(1), Is.EqualTo(Math.Sqrt(20.0)).Within(KnownTolerance * 4.5));
        Assert.That(vp.DriftScale(0), Is.EqualTo(-0.05).Within(KnownTolerance));
        var sub = new SubVpSde();
        Assert.That(sub.MarginalMean(1), Is.EqualTo(0.006571586494929619).Within(KnownTolerance * 0.0066));
        Assert.That(sub.MarginalStd(1), Is.EqualTo(0.9999568142509396).Within(KnownTolerance));
        // sub-VP's variance never exceeds VP's (Song et al. 2021, section 3.4).
        foreach (var t in Times) Assert.That(sub.MarginalStd(t), Is.LessThan(vp.MarginalStd(t)));
        Assert.That(vp.PriorStd, Is.EqualTo(1.0));
        Assert.That(vp.NetworkCondition(0.5), Is.EqualTo(499.5).Within(KnownTolerance * 500));
    }

    [Test]
    public void VeKnownValues()
    {
        // sigma(t) = 0.01 * 5000^t: sigma(0.5) = 0.01 sqrt(5000) = 0.70710678..., the marginal std is
        // sqrt(sigma(t)^2 - sigma_min^2) = sqrt(0.5 - 1e-4), and g = sigma(t) sqrt(2 ln 5000).
        var ve = new VeSde();
        Assert.That(ve.Sigma(0.5), Is.EqualTo(0.7071067811865476).Within(KnownTolerance));
        Assert.That(ve.MarginalStd(0.5), Is.EqualTo(0.7070360669725414).Within(KnownTolerance));
        Assert.That(ve.Diffusion(0.5), Is.EqualTo(2.918423065872431).Within(KnownTolerance * 3));
        Assert.That(ve.Sigma(1), Is.EqualTo(50.0).Within(KnownTolerance * 50));
        Assert.That(ve.MarginalStd(1), Is.EqualTo(Math.Sqrt(2500 - 1e-4)).Within(KnownTolerance * 50));
        Assert.That(ve.MarginalMean(0.7), Is.EqualTo(1.0));
        Assert.That(ve.PriorStd, Is.EqualTo(50.0));
        Assert.That(ve.NetworkCondition(0.5), Is.EqualTo(ve.MarginalStd(0.5)));
        Assert.That(ve.Level(0.5), Is.EqualTo(new NoiseLevel(1.0, ve.MarginalStd(0.5), ve.MarginalStd(0.5))));
    }

    [TestCaseSource(nameof(Sdes))]
    public void PriorLogDensityMatchesTheGaussianFormula(Sde sde)
    {
        // log N(z; 0, s^2 I) = sum_j [-1/2 log(2 pi s^2) - z_j^2 / (2 s^2)], summed by hand per sample, for a
        // [3, 2] batch and a [2, 2, 2] one (several axes reduced). Float64 throughout: 1e-12 relative.
        foreach (int[] shape in new[] { new[] { 3, 2 }, new[] { 2, 2, 2 } })
        {
            var z = new Generator(7).Normal(shape, DType.Float64);
            var values = z.ToDoubleArray();
            double s2 = sde.PriorStd * sde.PriorStd;
            int batch = shape[0], d = values.Length / batch;
            var actual = sde.PriorLogDensity(z).ToDoubleArray();
            Assert.That(actual, Has.Length.EqualTo(batch));
            for (int b = 0; b < batch; b++)
            {
                double expected = 0;
                for (int j = 0; j < d; j++) expected += -0.5 * Math.Log(2 * Math.PI * s2) - values[b * d + j] * values[b * d + j] / (2 * s2);
                Assert.That(actual[b], Is.EqualTo(expected).Within(1e-12 * Math.Abs(expected)), $"{sde.Name} {string.Join("x", shape)} sample {b}");
            }
        }
    }

    [TestCaseSource(nameof(Sdes))]
    public void PerturbIsAlphaX0PlusSigmaEps(Sde sde)
    {
        var g = new Generator(3);
        var x0 = g.Normal([3, 2], DType.Float64);
        var eps = g.Normal([3, 2], DType.Float64);
        double[] t = [0.1, 0.5, 0.9];
        var actual = sde.Perturb(x0, eps, t).ToDoubleArray();
        var x = x0.ToDoubleArray();
        var e = eps.ToDoubleArray();
        for (int i = 0; i < 6; i++)
        {
            double expected = sde.MarginalMean(t[i / 2]) * x[i] + sde.MarginalStd(t[i / 2]) * e[i];
            Assert.That(actual[i], Is.EqualTo(expected).Within(1e-12 * (1 + Math.Abs(expected))));
        }
    }

    [Test]
    public void NcsnGeometricSigmas()
    {
        // sigma_max 1, sigma_min 0.01, 10 levels: sigma_i = 10^(-2 i / 9), a constant ratio 10^(-2/9).
        var sigmas = NcsnSigmas.Geometric(1.0, 0.01, 10);
        Assert.That(sigmas.Count, Is.EqualTo(10));
        for (int i = 0; i < 10; i++)
        {
            double expected = Math.Pow(10, -2.0 * i / 9);
            Assert.That(sigmas.Sigmas[i], Is.EqualTo(expected).Within(1e-14 * expected));
            Assert.That(sigmas.Level(i), Is.EqualTo(new NoiseLevel(1.0, sigmas.Sigmas[i], sigmas.Sigmas[i])));
            if (i > 0) Assert.That(sigmas.Sigmas[i] / sigmas.Sigmas[i - 1], Is.EqualTo(Math.Pow(10, -2.0 / 9)).Within(1e-14));
        }
        // Song and Ermon 2019's CIFAR-10 setting: 1 .. 0.01 over 10 levels ends exactly at sigma_min.
        Assert.That(sigmas.Sigmas[^1], Is.EqualTo(0.01).Within(1e-16));
        var ncsnv2 = NcsnSigmas.Geometric(50, 0.01, 232);
        Assert.That(ncsnv2.Sigmas[0], Is.EqualTo(50.0));
        Assert.That(ncsnv2.Sigmas[^1], Is.EqualTo(0.01).Within(1e-15));
        Assert.Throws<ArgumentException>(() => new NcsnSigmas([1.0, 1.0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => NcsnSigmas.Geometric(0.01, 1.0));
    }

    [Test]
    public void DdpmLinearValuesByHand()
    {
        // beta_t = 1e-4 + (0.02 - 1e-4) t / 999; alpha_bar_t = exp(sum_{s <= t} log(1 - beta_s)) (a different
        // summation than the schedule's running product). Float64 rounding over 1000 factors stays near 1e-13
        // relative, so alpha_bar agrees to 1e-12; beta_tilde divides by 1 - alpha_bar >= 1e-4, which turns an
        // absolute 1e-13 into at most 2e-9 relative, hence 1e-8 there.
        var schedule = DdpmSchedule.Linear(1000);
        double logSum = 0;
        double previousAlphaBar = 1;
        for (int t = 0; t < 1000; t++)
        {
            double beta = 1e-4 + (0.02 - 1e-4) * t / 999;
            logSum += double.LogP1(-beta);
            double alphaBar = Math.Exp(logSum);
            Assert.That(schedule.Betas[t], Is.EqualTo(beta).Within(1e-15));
            Assert.That(schedule.AlphaBars[t], Is.EqualTo(alphaBar).Within(1e-12 * alphaBar), $"alpha_bar at {t}");
            double betaTilde = beta * (1 - previousAlphaBar) / (1 - alphaBar);
            Assert.That(schedule.PosteriorVariance[t], Is.EqualTo(betaTilde).Within(1e-8 * beta), $"beta_tilde at {t}");
            Assert.That(schedule.Level(t), Is.EqualTo(new NoiseLevel(Math.Sqrt(alphaBar), Math.Sqrt(1 - alphaBar), t)).Using<NoiseLevel>((a, b) => Close(a, b)));
            previousAlphaBar = alphaBar;
        }
        // The well-known end point of Ho et al.'s schedule: alpha_bar_T = 4.0358e-5 (sqrt = 0.00635).
        Assert.That(schedule.AlphaBars[999], Is.EqualTo(4.0358297653756754e-05).Within(1e-10 * 4e-5));
        // beta_tilde_1 = 0 (the posterior at the first step is the data point itself).
        Assert.That(schedule.PosteriorVariance[0], Is.EqualTo(0.0));
    }

    [Test]
    public void DdpmCosineValuesByHand()
    {
        // Nichol and Dhariwal 2021, eq. 17: beta_t = 1 - f(t + 1) / f(t), so the product telescopes and
        // alpha_bar_t = f(t + 1) / f(0) exactly for every step before the last, whose beta (1 - 0/f) is clipped
        // to 0.999. Float64 products over 1000 factors: 1e-12 relative; beta_tilde divides by 1 - alpha_bar
        // >= 4e-5, so 1e-8 relative (as in the linear case).
        const int steps = 1000;
        const double s = 0.008;
        double F(double t) => Math.Pow(Math.Cos((t / steps + s) / (1 + s) * Math.PI / 2), 2);
        var schedule = DdpmSchedule.Cosine(steps);
        for (int t = 0; t < steps - 1; t++)
        {
            double alphaBar = F(t + 1) / F(0);
            Assert.That(schedule.AlphaBars[t], Is.EqualTo(alphaBar).Within(1e-12 * alphaBar + 1e-15), $"alpha_bar at {t}");
            double previous = t == 0 ? 1 : F(t) / F(0);
            double beta = 1 - alphaBar / previous;
            double betaTilde = beta * (1 - previous) / (1 - alphaBar);
            Assert.That(schedule.PosteriorVariance[t], Is.EqualTo(betaTilde).Within(1e-8 * beta), $"beta_tilde at {t}");
        }
        Assert.That(schedule.Betas[steps - 1], Is.EqualTo(0.999));
        Assert.That(schedule.Betas[0], Is.EqualTo(4.128422482196914e-05).Within(1e-12));
        Assert.That(schedule.Betas[steps - 2], Is.EqualTo(0.7499993929011166).Within(1e-12));
    }

    private static bool Close(NoiseLevel a, NoiseLevel b) =>
        Math.Abs(a.Alpha - b.Alpha) <= 1e-12 && Math.Abs(a.Sigma - b.Sigma) <= 1e-12 && a.Condition == b.Condition;
}
