using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Likelihood;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

/// <summary>
/// Probability-flow likelihoods (Song et al. 2021, section 4.3) checked against closed-form truth: with the exact
/// score of a Gaussian mixture the noised marginal p_eta is known, so log p_eta(x) from the ODE with the exact
/// divergence must reproduce it; Hutchinson's estimate must be unbiased with an honest standard error; the
/// bits/dim and dequantisation conventions are checked by hand; encode/decode invert each other.
/// </summary>
[TestFixture]
public class LikelihoodTests
{
    // 2-D: three components with full covariances. The weighted mean is 0 so that, under VE, the prior
    // N(0, sigma_max^2 I) differs from the true marginal at T only at second order in |mu| / sigma_max (see
    // PriorMismatch below); under VP and sub-VP the means are shrunk by alpha_T = exp(-B(1)/2) = 6.6e-3 anyway.
    private static GaussianMixture Mixture2d() => new(
        [0.5, 0.25, 0.25],
        [[0.0, 1.0], [-1.5, -1.0], [1.5, -1.0]],
        [
            new double[,] { { 0.3, 0.1 }, { 0.1, 0.2 } },
            new double[,] { { 0.2, -0.05 }, { -0.05, 0.3 } },
            new double[,] { { 0.25, 0.0 }, { 0.0, 0.15 } },
        ]);

    // 16-D: two equally weighted components at +-m (|m| = 2), one with a diagonal covariance of spread-out
    // variances, one with a strongly correlated covariance 0.25 I + 0.5 u u^T (|u| = 1), so the Jacobian of
    // the score has large off-diagonal entries (Rademacher probes then have a non-zero variance).
    private static GaussianMixture Mixture16d()
    {
        const int d = 16;
        var m = Enumerable.Range(0, d).Select(i => (i % 2 == 0 ? 1.0 : -1.0) * (0.35 + 0.02 * i)).ToArray();
        double norm = Math.Sqrt(m.Sum(v => v * v));
        m = m.Select(v => 2.0 * v / norm).ToArray();
        var u = Enumerable.Range(0, d).Select(i => Math.Cos(0.7 * i)).ToArray();
        double un = Math.Sqrt(u.Sum(v => v * v));
        var diagonal = new double[d, d];
        var correlated = new double[d, d];
        for (int i = 0; i < d; i++)
        {
            diagonal[i, i] = 0.15 + 0.03 * i;
            for (int j = 0; j < d; j++) correlated[i, j] = 0.5 * u[i] * u[j] / (un * un) + (i == j ? 0.25 : 0.0);
        }
        return new GaussianMixture([1.0, 1.0], [m, m.Select(v => -v).ToArray()], [diagonal, correlated]);
    }

    private static Sde MakeSde(string name) => Sde.Create(name);

    // log prior(z) - log p_T(z): the part of (ODE log-likelihood - closed form) that is not the solver's error but
    // the replacement of the true marginal at T by the prior (Song et al. 2021 make the same approximation).
    private static double[] PriorMismatch(GaussianMixture mixture, Sde sde, Tensor latent)
    {
        var prior = sde.PriorLogDensity(latent).ToDoubleArray();
        var truth = mixture.LogDensity(latent, sde.Level(sde.T)).ToDoubleArray();
        return prior.Zip(truth, (p, q) => p - q).ToArray();
    }

    private static ScoreModel Scaled(GaussianMixture mixture, double factor) =>
        ScoreModel.FromFunction((x, level, _) => Ops.Scale(mixture.Score(x, level), factor), Parameterisation.Score);

    // RK45 at rtol = atol = 1e-6 in float64 (float32 rounding of integrals of up to ~80 nats would alone be ~1e-5
    // per step). Each accepted step keeps the RMS over the state of error / (atol + rtol |y|) at most 1, i.e. roughly
    // 1e-6 (1 + |y|) per component: <= 1e-4 nats on an integral of <= 80 nats, so even if the 10-30 accepted steps'
    // errors all added up with one sign the result would stay ~10x inside the 1e-2 nats asked for (Song et al.'s
    // 1e-5 would not leave that margin). Measured, with the prior's mismatch taken out: at most 2e-5 nats, which
    // the second assertion checks at 2e-4.
    private static readonly LikelihoodOptions ExactOptions = new()
    {
        Divergence = DivergenceMethod.Exact,
        RelativeTolerance = 1e-6,
        AbsoluteTolerance = 1e-6,
    };

    [TestCase("vp", 2)]
    [TestCase("subvp", 2)]
    [TestCase("ve", 2)]
    [TestCase("vp", 16)]
    [TestCase("subvp", 16)]
    [TestCase("ve", 16)]
    public void ExactDivergence_LogLikelihood_EqualsTheClosedFormNoisedDensity(string sdeName, int dimension)
    {
        var sde = MakeSde(sdeName);
        var mixture = dimension == 2 ? Mixture2d() : Mixture16d();
        int batch = dimension == 2 ? 6 : 3;
        // Draws from the mixture (the noise at eta = 1e-5 is at most 1e-3 and does not matter for where we evaluate).
        var x = mixture.Sample(batch, new Generator(11), DType.Float64);
        var result = ProbabilityFlowLikelihood.LogLikelihood(mixture.ToScoreModel(), sde, x, new Generator(1), ExactOptions);
        var expected = mixture.LogDensity(x, sde.Level(ExactOptions.StartTime)).ToDoubleArray();
        var mismatch = PriorMismatch(mixture, sde, result.Latent);
        for (int b = 0; b < batch; b++)
        {
            TestContext.Out.WriteLine($"ode {result.LogLikelihood[b]:F6} closed {expected[b]:F6} diff {result.LogLikelihood[b] - expected[b]:E2} prior mismatch {mismatch[b]:E2}");
            // The asked-for agreement (1e-2 nats), which includes the prior's mismatch (measured <= 5e-3 nats, largest
            // under VE in 16-D, where sigma_max = 50 leaves tr(Sigma) / sigma_max^2 and (z . mu)^2 / sigma_max^4 terms) ...
            Assert.That(result.LogLikelihood[b], Is.EqualTo(expected[b]).Within(1e-2), $"sample {b}");
            // ... and, with the prior's known mismatch taken out, agreement to the solver's error alone.
            Assert.That(result.LogLikelihood[b] - mismatch[b], Is.EqualTo(expected[b]).Within(2e-4), $"sample {b} without the prior mismatch");
            Assert.That(result.StandardError[b], Is.EqualTo(0.0), "the exact divergence has no probe variance");
        }

        // The same computation with a score halved misses by far more than the tolerance: the check has teeth.
        var wrong = ProbabilityFlowLikelihood.LogLikelihood(Scaled(mixture, 0.5), sde, x, new Generator(1), ExactOptions);
        double worst = wrong.LogLikelihood.Zip(expected, (a, e) => Math.Abs(a - e)).Max();
        TestContext.Out.WriteLine($"wrong score: worst miss {worst:F3} nats");
        Assert.That(worst, Is.GreaterThan(0.5), "a score scaled by 0.5 must miss the closed form by far more than 1e-2 nats");
    }

    [TestCase(new[] { 5, 4 })]
    [TestCase(new[] { 5, 1, 2, 2 })]
    public void ExactDivergence_OfTheProbabilityFlowDriftOfAGaussian_IsClosedForm(int[] shape)
    {
        // One component N(mu, Sigma) in 4-D: s(x) = -C^{-1} (x - alpha mu), C = alpha^2 Sigma + sigma^2 I, so the drift
        // f~ = c(t) x - 1/2 g^2 s has the constant divergence d c(t) + 1/2 g^2 tr(C^{-1}), for flat [B, d] and
        // image-shaped [B, 1, 2, 2] batches alike. The inverse is taken with MathNet (LU), independently of the
        // mixture's Cholesky; float64 on both sides agrees to ~1e-13 relative.
        var sigma = new double[,] { { 0.5, 0.2, 0.1, 0.0 }, { 0.2, 0.4, -0.1, 0.05 }, { 0.1, -0.1, 0.3, 0.0 }, { 0.0, 0.05, 0.0, 0.2 } };
        var gaussian = new GaussianMixture([1.0], [[1.0, -1.0, 0.5, 0.2]], [sigma]);
        var sde = new VpSde();
        const double t = 0.3;
        var level = sde.Level(t);
        var c = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseOfArray(sigma) * (level.Alpha * level.Alpha)
            + MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseIdentity(4) * (level.Sigma * level.Sigma);
        double g = sde.Diffusion(t);
        double expected = 4 * sde.DriftScale(t) + 0.5 * g * g * c.Inverse().Trace();
        var x = Ops.Reshape(gaussian.Sample(5, new Generator(3), DType.Float64), shape);
        x.RequiresGrad = true;
        var drift = ProbabilityFlowLikelihood.Drift(gaussian.ToScoreModel(), sde, x, t);
        var divergence = Divergence.Exact(drift, x).ToDoubleArray();
        Assert.That(divergence, Has.Length.EqualTo(5));
        foreach (var v in divergence) Assert.That(v, Is.EqualTo(expected).Within(1e-9 * Math.Abs(expected)));
    }

    // The Jacobian J[i, j] = d f_i / d x_j of the probability-flow drift at one point, row by row (J^T e_i is row i).
    private static double[,] DriftJacobian(ScoreModel model, Sde sde, double[] point, double t)
    {
        int d = point.Length;
        var x = Tensor.FromArray(point, 1, d);
        x.RequiresGrad = true;
        var drift = ProbabilityFlowLikelihood.Drift(model, sde, x, t);
        var jacobian = new double[d, d];
        for (int i = 0; i < d; i++)
        {
            var e = new double[d];
            e[i] = 1;
            var row = Autograd.Grad([drift], [x], [Tensor.FromArray(e, 1, d)])[0]!.ToDoubleArray();
            for (int j = 0; j < d; j++) jacobian[i, j] = row[j];
        }
        return jacobian;
    }

    private static Tensor Repeat(double[] point, int count)
    {
        var data = new double[count * point.Length];
        for (int n = 0; n < count; n++) point.CopyTo(data, n * point.Length);
        return Tensor.FromArray(data, count, point.Length);
    }

    [TestCase(DivergenceMethod.HutchinsonRademacher)]
    [TestCase(DivergenceMethod.HutchinsonGaussian)]
    public void Hutchinson_Divergence_IsUnbiasedWithTheTheoreticalVariance(DivergenceMethod method)
    {
        // N = 20000 independent probes at one point of the 16-D mixture under VP at t = 0.3, as one batch of copies
        // of the point (each row draws its own probe). With A the symmetric part of the drift's Jacobian,
        // v^T A v has mean tr(A) and variance 2 sum_ij A_ij^2 for Gaussian v and 2 sum_{i != j} A_ij^2 for
        // Rademacher v (Hutchinson 1989; Avron and Toledo 2011). The mean must be within 3 standard errors of the
        // exact divergence; the sample variance within 5 of its own standard errors, sqrt((m4 - s^4) / N) with m4
        // the sample's fourth central moment, of the theoretical value.
        const int n = 20000;
        const double t = 0.3;
        var mixture = Mixture16d();
        var sde = new VpSde();
        var model = mixture.ToScoreModel();
        var point = mixture.Noised(sde.Level(t)).Sample(1, new Generator(5), DType.Float64).ToDoubleArray();
        int d = point.Length;
        var jacobian = DriftJacobian(model, sde, point, t);
        double trace = 0, frobenius = 0, diagonal = 0;
        for (int i = 0; i < d; i++)
        {
            trace += jacobian[i, i];
            diagonal += jacobian[i, i] * jacobian[i, i];
            for (int j = 0; j < d; j++)
            {
                double a = 0.5 * (jacobian[i, j] + jacobian[j, i]);
                frobenius += a * a;
            }
        }
        double theoreticalVariance = method == DivergenceMethod.HutchinsonGaussian ? 2 * frobenius : 2 * (frobenius - diagonal);

        var single = Tensor.FromArray(point, 1, d);
        single.RequiresGrad = true;
        double exact = Divergence.Exact(ProbabilityFlowLikelihood.Drift(model, sde, single, t), single).Item();
        // Exact sums the Jacobian's diagonal; both come from the same kind of VJPs, so they agree to rounding.
        Assert.That(exact, Is.EqualTo(trace).Within(1e-10 * Math.Abs(trace)));

        var x = Repeat(point, n);
        x.RequiresGrad = true;
        var drift = ProbabilityFlowLikelihood.Drift(model, sde, x, t);
        var probe = Divergence.Probe(method, x, new Generator(17))!;
        var estimates = Divergence.Hutchinson(drift, x, probe).ToDoubleArray();
        double mean = estimates.Average();
        double variance = estimates.Sum(v => (v - mean) * (v - mean)) / (n - 1);
        double m4 = estimates.Sum(v => Math.Pow(v - mean, 4)) / n;
        TestContext.Out.WriteLine($"{method}: exact {exact:F4}, mean {mean:F4} +- {Math.Sqrt(variance / n):F4}; variance {variance:F3} vs theory {theoreticalVariance:F3} +- {Math.Sqrt((m4 - variance * variance) / n):F3}");
        Assert.That(mean, Is.EqualTo(exact).Within(3 * Math.Sqrt(variance / n)));
        Assert.That(variance, Is.EqualTo(theoreticalVariance).Within(5 * Math.Sqrt((m4 - variance * variance) / n)));
    }

    [TestCase(DivergenceMethod.HutchinsonRademacher)]
    [TestCase(DivergenceMethod.HutchinsonGaussian)]
    public void Hutchinson_LogLikelihood_IsUnbiasedAndItsStandardErrorMatchesTheSpread(DivergenceMethod method)
    {
        // One 16-D point repeated B = 64 times, K = 8 probes each: every row is an independent K-probe estimate of the
        // same log p (the probe is drawn per row, and the x-trajectory is the same for all rows). Unbiasedness: the
        // mean of all B K estimates is within 3 pooled standard errors (sqrt(sum_b SE_b^2) / B, from the reported
        // SEs) of the exact-divergence value; the ODE's own error (rtol = atol = 1e-5, <~1e-3 nats) is far below that
        // SE (0.02-0.15 nats). Honesty of the SE: the spread of the B row means must match the reported SEs; their ratio
        // has a relative standard deviation of about sqrt(1 / (2 (B - 1)) + 1 / (2 B (K - 1))) = 0.1 for normal
        // estimates, so [0.65, 1.4] allows ~3.5 of them, while an SE missing its 1 / sqrt(K) is off by 2.8x.
        const int rows = 64, probes = 8;
        var mixture = Mixture16d();
        var sde = new VpSde();
        var model = mixture.ToScoreModel();
        var point = mixture.Sample(1, new Generator(23), DType.Float64).ToDoubleArray();
        var exact = ProbabilityFlowLikelihood.LogLikelihood(model, sde, Tensor.FromArray(point, 1, point.Length), new Generator(1), ExactOptions).LogLikelihood[0];
        var options = new LikelihoodOptions { Divergence = method, Probes = probes };
        var result = ProbabilityFlowLikelihood.LogLikelihood(model, sde, Repeat(point, rows), new Generator(29), options);
        double pooled = result.LogLikelihood.Average();
        double pooledSe = Math.Sqrt(result.StandardError.Sum(s => s * s)) / rows;
        double spread = Math.Sqrt(result.LogLikelihood.Sum(v => (v - pooled) * (v - pooled)) / (rows - 1));
        double reported = Math.Sqrt(result.StandardError.Average(s => s * s));
        TestContext.Out.WriteLine($"{method}: exact {exact:F4}, pooled {pooled:F4} +- {pooledSe:F4}; spread of row means {spread:F4} vs reported SE {reported:F4}; nfe {result.FunctionEvaluations}");
        Assert.That(pooled, Is.EqualTo(exact).Within(3 * pooledSe));
        Assert.That(spread / reported, Is.InRange(0.65, 1.4));
    }

    [Test]
    public void StandardError_IsTheSampleStandardErrorOfTheProbeEstimates()
    {
        // LogLikelihood draws one probe per solve from the generator and nothing else, so two one-probe calls on a
        // generator with the same seed see the same probes as one two-probe call: the mean must be (e1 + e2) / 2
        // and the standard error sd / sqrt(2) = |e1 - e2| / 2 (sample sd with K - 1 = 1), to rounding.
        var mixture = Mixture2d();
        var sde = new VpSde();
        var model = mixture.ToScoreModel();
        var x = mixture.Sample(4, new Generator(31), DType.Float64);
        var two = ProbabilityFlowLikelihood.LogLikelihood(model, sde, x, new Generator(37), new LikelihoodOptions { Probes = 2 });
        var generator = new Generator(37);
        var first = ProbabilityFlowLikelihood.LogLikelihood(model, sde, x, generator, new LikelihoodOptions { Probes = 1 });
        var second = ProbabilityFlowLikelihood.LogLikelihood(model, sde, x, generator, new LikelihoodOptions { Probes = 1 });
        for (int b = 0; b < 4; b++)
        {
            double e1 = first.LogLikelihood[b], e2 = second.LogLikelihood[b];
            Assert.That(e1, Is.Not.EqualTo(e2), "different probes give different estimates");
            Assert.That(first.StandardError[b], Is.EqualTo(0.0), "one probe has no standard error");
            Assert.That(two.LogLikelihood[b], Is.EqualTo(0.5 * (e1 + e2)).Within(1e-12 * Math.Abs(e1)));
            Assert.That(two.StandardError[b], Is.EqualTo(0.5 * Math.Abs(e1 - e2)).Within(1e-9 * Math.Abs(e1)));
        }
        Assert.That(two.FunctionEvaluations, Is.EqualTo(first.FunctionEvaluations + second.FunctionEvaluations));

        // The exact divergence needs no probes: one solve whatever Probes says.
        var exactOne = ProbabilityFlowLikelihood.LogLikelihood(model, sde, x, new Generator(1), ExactOptions);
        var exactMany = ProbabilityFlowLikelihood.LogLikelihood(model, sde, x, new Generator(1), ExactOptions with { Probes = 5 });
        Assert.That(exactMany.FunctionEvaluations, Is.EqualTo(exactOne.FunctionEvaluations));
        Assert.That(exactMany.LogLikelihood, Is.EqualTo(exactOne.LogLikelihood));
    }

    [TestCase(1)]
    [TestCase(3)]
    [TestCase(784)]
    public void BitsPerDim_HandComputations(int d)
    {
        // Data k in {0..255}^d is stored as x = 2 (k + u) / 256 - 1, so a cell has volume (2/256)^d and
        // P(k) = p(x) (2/256)^d for a density constant on cells. Hence bits/dim = -log2 P(k) / d:
        // the uniform density 2^-d on [-1, 1]^d is the uniform distribution over 256^d values: 8 bits/dim;
        // all mass uniformly in one cell (density (256/2)^d) is a certain outcome: 0 bits/dim;
        // P(k) = 2^-10 (density 2^-10 (256/2)^d) is 10/d bits/dim. Exact up to float64 rounding.
        Assert.That(ProbabilityFlowLikelihood.BitsPerDim(-d * Math.Log(2), d), Is.EqualTo(8.0).Within(1e-12));
        Assert.That(ProbabilityFlowLikelihood.BitsPerDim(d * Math.Log(128), d), Is.EqualTo(0.0).Within(1e-12));
        Assert.That(ProbabilityFlowLikelihood.BitsPerDim(-10 * Math.Log(2) + d * Math.Log(128), d), Is.EqualTo(10.0 / d).Within(1e-12));
    }

    [TestCase(DType.Float64)]
    [TestCase(DType.Float32)]
    public void Dequantize_PutsEachValueUniformlyInItsOwnCell(DType dtype)
    {
        // Every level k = 0..255 (stored as k / 127.5 - 1) 64 times. The dequantised x must lie in the cell
        // [2k/256 - 1, 2(k+1)/256 - 1) of its k, i.e. f = 128 (x + 1) - k in [0, 1), and f must be U[0, 1): its mean
        // 1/2 and variance 1/12 within 5 standard errors, sqrt(1/12 / N) and sqrt((1/80 - 1/144) / N) (U[0,1) has
        // fourth central moment 1/80). In float32 the levels and k + u are rounded (spacing 2^-16 near 256), so
        // there f may leave [0, 1) by that much.
        const int repeats = 64;
        int n = 256 * repeats;
        var levels = new double[n];
        for (int i = 0; i < n; i++) levels[i] = (i % 256) / 127.5 - 1;
        var images = Tensor.FromSpan<double>(levels, [repeats, 256], dtype, null);
        var x = ProbabilityFlowLikelihood.Dequantize(images, new Generator(41)).ToDoubleArray();
        double slack = dtype == DType.Float64 ? 0 : 1.0 / 65536;
        var f = Enumerable.Range(0, n).Select(i => 128 * (x[i] + 1) - (i % 256)).ToArray();
        var outside = Enumerable.Range(0, n).Where(i => f[i] < -slack || f[i] >= 1 + slack).Select(i => $"k = {i % 256}: x = {x[i]}").ToList();
        Assert.That(outside, Is.Empty, "values outside their cells");
        double mean = f.Average();
        double variance = f.Sum(v => (v - mean) * (v - mean)) / (n - 1);
        Assert.That(mean, Is.EqualTo(0.5).Within(5 * Math.Sqrt(1.0 / 12 / n)));
        Assert.That(variance, Is.EqualTo(1.0 / 12).Within(5 * Math.Sqrt((1.0 / 80 - 1.0 / 144) / n)));
        if (dtype == DType.Float64) Assert.That(x.Max(), Is.LessThan(1.0));
    }

    private static readonly LikelihoodOptions Tight = new() { RelativeTolerance = 1e-9, AbsoluteTolerance = 1e-9 };

    [TestCase("vp")]
    [TestCase("subvp")]
    [TestCase("ve")]
    public void EncodeThenDecode_ReturnsTheData(string sdeName)
    {
        // A solve at rtol = atol = 1e-9 has a global error of ~1e-8 relative on these O(1) states (latents up to ~100
        // under VE), so the round trip must close to 1e-6; a decoder that does not invert the encoder (a wrong
        // direction or drift) misses by O(1).
        var sde = MakeSde(sdeName);
        var mixture = Mixture2d();
        var model = mixture.ToScoreModel();
        var x = mixture.Sample(16, new Generator(43), DType.Float64);
        var z = ProbabilityFlowLikelihood.Encode(model, sde, x, Tight);
        var back = ProbabilityFlowLikelihood.Decode(model, sde, z, Tight).ToDoubleArray();
        var data = x.ToDoubleArray();
        TestContext.Out.WriteLine($"{sdeName}: round-trip error {data.Zip(back, (a, b) => Math.Abs(a - b)).Max():E2}");
        Assert.That(back, Is.EqualTo(data).Within(1e-6));
    }

    [TestCase("vp")]
    [TestCase("ve")]
    public void Encode_MapsTheDataToThePrior(string sdeName)
    {
        // The probability-flow ODE carries p_eta to p_T, which is the prior up to alpha_T^2 |mu|^2 ~ 1e-4 (VP) or
        // tr(Sigma) / sigma_max^2 ~ 1e-4 (VE) relative to its variance. N = 1000 encoded draws, scaled by the prior's
        // std, must have each coordinate's mean within 5 / sqrt(N) of 0 and variance within 5 sqrt(2 / N) of 1
        // (standard errors of a normal sample's mean and variance). This checks the encoder's drift itself, which
        // a round trip cannot (any invertible map round-trips). The halved score fails it (its latents' variance is
        // ~0.01 of the prior's).
        var sde = MakeSde(sdeName);
        var mixture = Mixture2d();
        const int n = 1000;
        var x = mixture.Sample(n, new Generator(47), DType.Float64);
        var failures = PriorFailures(ProbabilityFlowLikelihood.Encode(mixture.ToScoreModel(), sde, x), sde, n);
        Assert.That(failures, Is.Empty);
        var wrong = PriorFailures(ProbabilityFlowLikelihood.Encode(Scaled(mixture, 0.5), sde, x), sde, n);
        Assert.That(wrong, Is.Not.Empty, "latents of a halved score must fail the same check");
    }

    private static List<string> PriorFailures(Tensor latent, Sde sde, int n)
    {
        var z = latent.ToDoubleArray();
        var failures = new List<string>();
        for (int j = 0; j < 2; j++)
        {
            var column = Enumerable.Range(0, n).Select(i => z[2 * i + j] / sde.PriorStd).ToArray();
            double mean = column.Average();
            double variance = column.Sum(v => (v - mean) * (v - mean)) / (n - 1);
            TestContext.Out.WriteLine($"{sde.Name} coordinate {j}: mean {mean:F4}, variance {variance:F4}");
            if (Math.Abs(mean) > 5 / Math.Sqrt(n)) failures.Add($"coordinate {j}: mean {mean}");
            if (Math.Abs(variance - 1) > 5 * Math.Sqrt(2.0 / n)) failures.Add($"coordinate {j}: variance {variance}");
        }
        return failures;
    }

    [Test]
    public void Interpolate_EndpointsReproduceTheInputsAndTheMiddleIsTheSlerp()
    {
        // At s = 0 and 1 the slerp weights are exactly (1, 0) and (0, 1), so the end rows are decode(encode(a)) and
        // decode(encode(b)): equal to a and b to the round trip's 1e-6 (see EncodeThenDecode). The middle row encodes
        // back to slerp(z_a, z_b, 1/2) = (z_a + z_b) / (2 cos(omega / 2)) to the same tolerance.
        var sde = new VpSde();
        var mixture = Mixture2d();
        var model = mixture.ToScoreModel();
        var a = Tensor.FromArray(new[] { 0.1, 1.2 }, 1, 2);
        var b = Tensor.FromArray(new[] { 1.4, -0.8 }, 1, 2);
        var path = ProbabilityFlowLikelihood.Interpolate(model, sde, a, b, 5, Tight);
        Assert.That(path.Shape, Is.EqualTo(new[] { 5, 2 }));
        var p = path.ToDoubleArray();
        Assert.That(p[..2], Is.EqualTo(a.ToDoubleArray()).Within(1e-6));
        Assert.That(p[8..], Is.EqualTo(b.ToDoubleArray()).Within(1e-6));

        var za = ProbabilityFlowLikelihood.Encode(model, sde, a, Tight).ToDoubleArray();
        var zb = ProbabilityFlowLikelihood.Encode(model, sde, b, Tight).ToDoubleArray();
        double omega = Math.Acos((za[0] * zb[0] + za[1] * zb[1]) / (Math.Sqrt(za[0] * za[0] + za[1] * za[1]) * Math.Sqrt(zb[0] * zb[0] + zb[1] * zb[1])));
        Assert.That(omega, Is.GreaterThan(0.5), "the endpoints' latents must be far apart in angle for slerp to differ from lerp");
        var middle = ProbabilityFlowLikelihood.Encode(model, sde, Tensor.FromArray(p[4..6], 1, 2), Tight).ToDoubleArray();
        double scale = 1 / (2 * Math.Cos(omega / 2));
        Assert.That(middle, Is.EqualTo(new[] { (za[0] + zb[0]) * scale, (za[1] + zb[1]) * scale }).Within(1e-6));
        Assert.Throws<ArgumentOutOfRangeException>(() => ProbabilityFlowLikelihood.Interpolate(model, sde, a, b, 1));
    }
}
