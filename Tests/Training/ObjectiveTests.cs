using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Training.Objectives;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>
/// Each objective on a fixed tiny batch against the same loss worked out by hand in double (from the papers'
/// formulas and the schedules' closed forms, not through the code under test), with its gradient.
/// </summary>
[TestFixture]
public class ObjectiveTests
{
    // Everything runs in float64, and the hand computations follow the same few operations in a different
    // order, so agreement to 1e-12 relative is expected; a wrong weight, sign or factor is off by O(1).
    private const double Tolerance = 1e-12;

    /// <summary>
    /// y = a x + K c per element, c the per-sample condition: the output depends on the one parameter a and on
    /// the condition the objective passes, so a hand computation can follow it and check both.
    /// </summary>
    private sealed class AffineProbe : ScoreNetwork
    {
        public const double K = 0.01;

        public AffineProbe(double a) => A = AddParameter("a", Tensor.FromArray([a], 1));

        public Tensor A { get; }

        public double[] Conditions { get; private set; } = [];

        public int[]? Labels { get; private set; }

        public override Tensor Forward(Tensor x, Tensor t, int[]? labels = null)
        {
            Conditions = t.ToDoubleArray();
            Labels = labels;
            return Ops.Add(Ops.Mul(x, A), Ops.Scale(Ops.Reshape(t, -1, 1), K));
        }
    }

    private static readonly double[] X0 = [0.3, -1.2, 1.5, 0.4, -0.7, 2.0];
    private static readonly double[] Eps = [1.1, -0.4, -0.9, 0.25, 0.6, -1.7];
    private const double ProbeA = 0.8;

    private static Tensor X0Tensor() => Tensor.FromArray(X0, 3, 2);
    private static Tensor EpsTensor() => Tensor.FromArray(Eps, 3, 2);

    private static double LinearBeta(int t) => 1e-4 + (0.02 - 1e-4) * t / 999;

    private static double LinearAlphaBar(int t)
    {
        double p = 1;
        for (int s = 0; s <= t; s++) p *= 1 - LinearBeta(s);
        return p;
    }

    [Test]
    public void DdpmVlbLossMatchesEquation12ByHand()
    {
        int[] t = [0, 10, 999];
        var model = new AffineProbe(ProbeA);
        var loss = DdpmVlbObjective.Loss(model, DdpmSchedule.Linear(1000), X0Tensor(), t, EpsTensor(), [2, 0, 1]);

        double expected = 0, dA = 0;
        for (int b = 0; b < 3; b++)
        {
            double beta = LinearBeta(t[b]), alphaBar = LinearAlphaBar(t[b]);
            // Ho et al. 2020, eq. 12 with sigma_t^2 = beta_t.
            double w = beta * beta / (2 * beta * (1 - beta) * (1 - alphaBar));
            for (int j = 0; j < 2; j++)
            {
                int i = 2 * b + j;
                double xt = Math.Sqrt(alphaBar) * X0[i] + Math.Sqrt(1 - alphaBar) * Eps[i];
                double r = Eps[i] - (ProbeA * xt + AffineProbe.K * t[b]);
                expected += w * r * r / 3;
                dA += w * 2 * r * -xt / 3;
            }
        }
        Assert.That(loss.Item(), Is.EqualTo(expected).Within(Tolerance * expected));
        Assert.That(model.Conditions, Is.EqualTo(new double[] { 0, 10, 999 }));
        Assert.That(model.Labels, Is.EqualTo(new[] { 2, 0, 1 }));
        loss.Backward();
        Assert.That(model.A.Grad!.Item(), Is.EqualTo(dA).Within(Tolerance * Math.Abs(dA)));
        // The first weight is 1 / (2 alpha_1), about 0.5; the last about 0.01 (the weights the doc states).
        var weights = DdpmVlbObjective.Weights(DdpmSchedule.Linear(1000));
        Assert.That(weights[0], Is.EqualTo(0.5 / (1 - 1e-4)).Within(Tolerance));
        Assert.That(weights[999], Is.EqualTo(0.02 / (2 * 0.98 * (1 - LinearAlphaBar(999)))).Within(Tolerance));
    }

    [Test]
    public void DdpmVlbGeneratorOverloadDrawsStepsThenNoise()
    {
        var schedule = DdpmSchedule.Linear(100);
        var model = new AffineProbe(ProbeA);
        var fromGenerator = DdpmVlbObjective.Loss(model, schedule, X0Tensor(), new Generator(11)).Item();
        var replay = new Generator(11);
        var t = replay.Integers(3, 100);
        var eps = replay.Normal([3, 2], DType.Float64);
        Assert.That(fromGenerator, Is.EqualTo(DdpmVlbObjective.Loss(model, schedule, X0Tensor(), t, eps).Item()));
    }

    [Test]
    public void NcsnLossMatchesEquations5And6ByHand()
    {
        var sigmas = NcsnSigmas.Geometric(1.0, 0.01, 10);
        int[] levels = [0, 4, 9];
        var model = new AffineProbe(ProbeA);
        var loss = NcsnObjective.DenoisingScoreMatchingLoss(model, sigmas, X0Tensor(), levels, EpsTensor());

        double expected = 0, dA = 0;
        var conditions = new double[3];
        for (int b = 0; b < 3; b++)
        {
            double sigma = Math.Pow(10, -2.0 * levels[b] / 9);
            conditions[b] = sigma;
            for (int j = 0; j < 2; j++)
            {
                int i = 2 * b + j;
                double perturbed = X0[i] + sigma * Eps[i];
                double score = ProbeA * perturbed + AffineProbe.K * sigma;
                // lambda(sigma) 1/2 (s + (x~ - x) / sigma^2)^2 with lambda = sigma^2.
                double r = score + (perturbed - X0[i]) / (sigma * sigma);
                expected += sigma * sigma * 0.5 * r * r / 3;
                dA += sigma * sigma * r * perturbed / 3;
            }
        }
        // (x~ - x) / sigma^2 divides a rounded difference (error ~4e-16) by sigma^2 = 1e-4, an error of 4e-12 on a
        // residual of about 100 at the last level: still within 1e-12 relative.
        Assert.That(loss.Item(), Is.EqualTo(expected).Within(Tolerance * expected));
        Assert.That(model.Conditions, Is.EqualTo(conditions).Within(1e-15));
        loss.Backward();
        Assert.That(model.A.Grad!.Item(), Is.EqualTo(dA).Within(Tolerance * Math.Abs(dA)));
    }

    [Test]
    public void NcsnGeneratorOverloadDrawsLevelsThenNoise()
    {
        var sigmas = NcsnSigmas.Geometric(1.0, 0.01, 10);
        var model = new AffineProbe(ProbeA);
        var fromGenerator = NcsnObjective.DenoisingScoreMatchingLoss(model, sigmas, X0Tensor(), new Generator(12)).Item();
        var replay = new Generator(12);
        var levels = replay.Integers(3, 10);
        var eps = replay.Normal([3, 2], DType.Float64);
        Assert.That(fromGenerator, Is.EqualTo(NcsnObjective.DenoisingScoreMatchingLoss(model, sigmas, X0Tensor(), levels, eps).Item()));
    }

    // Hand closed forms of the perturbation kernels (Song et al. 2021, appendix B), with beta 0.1 .. 20 and
    // sigma 0.01 .. 50: (alpha_t, sigma_t, network condition).
    private static (double Alpha, double Sigma, double Condition) HandMarginal(string sde, double t)
    {
        double integrated = 0.1 * t + 0.5 * t * t * (20 - 0.1);
        return sde switch
        {
            "vp" => (Math.Exp(-0.5 * integrated), Math.Sqrt(1 - Math.Exp(-integrated)), 999 * t),
            "subvp" => (Math.Exp(-0.5 * integrated), 1 - Math.Exp(-integrated), 999 * t),
            _ => (1.0, Math.Sqrt(0.01 * 0.01 * (Math.Pow(5000, 2 * t) - 1)), Math.Sqrt(0.01 * 0.01 * (Math.Pow(5000, 2 * t) - 1))),
        };
    }

    [TestCase("vp", Parameterisation.Epsilon)]
    [TestCase("ve", Parameterisation.Score)]
    [TestCase("subvp", Parameterisation.X0)]
    [TestCase("vp", Parameterisation.Score)]
    public void SdeLossMatchesEquation7ByHand(string name, Parameterisation output)
    {
        var sde = Sde.Create(name);
        double[] t = [1e-3, 0.3, 0.95];
        double[] weights = [0.5, 2.0, 1.0];
        var model = new AffineProbe(ProbeA);
        var unweighted = SdeObjective.DenoisingScoreMatchingLoss(model, sde, output, X0Tensor(), t, EpsTensor()).Item();
        var loss = SdeObjective.DenoisingScoreMatchingLoss(model, sde, output, X0Tensor(), t, EpsTensor(), weights);

        double expected = 0, expectedUnweighted = 0, dA = 0;
        for (int b = 0; b < 3; b++)
        {
            var (alpha, sigma, condition) = HandMarginal(name, t[b]);
            Assert.That(model.Conditions[b], Is.EqualTo(condition).Within(1e-12 * condition));
            for (int j = 0; j < 2; j++)
            {
                int i = 2 * b + j;
                double xt = alpha * X0[i] + sigma * Eps[i];
                double y = ProbeA * xt + AffineProbe.K * condition;
                // The model's score s, and ds/da, from the parameterisation; then lambda(t) |s + eps / sigma|^2
                // with lambda = sigma^2.
                var (score, dScore) = output switch
                {
                    Parameterisation.Epsilon => (-y / sigma, -xt / sigma),
                    Parameterisation.Score => (y, xt),
                    _ => (-(xt - alpha * y) / (sigma * sigma), alpha * xt / (sigma * sigma)),
                };
                double r = score + Eps[i] / sigma;
                expectedUnweighted += sigma * sigma * r * r / 3;
                expected += weights[b] * sigma * sigma * r * r / 3;
                dA += weights[b] * sigma * sigma * 2 * r * dScore / 3;
            }
        }
        // The x0 form divides by sigma_t^2 ~ 1e-6 at t = 1e-3 and cancels it again: 1e-9 relative there.
        double tolerance = output == Parameterisation.X0 ? 1e-9 : Tolerance;
        Assert.That(unweighted, Is.EqualTo(expectedUnweighted).Within(tolerance * expectedUnweighted));
        Assert.That(loss.Item(), Is.EqualTo(expected).Within(tolerance * expected));
        loss.Backward();
        Assert.That(model.A.Grad!.Item(), Is.EqualTo(dA).Within(tolerance * Math.Abs(dA)));
    }

    [Test]
    public void SdeGeneratorOverloadsDrawTimesThenNoise()
    {
        var sde = new VpSde();
        var model = new AffineProbe(ProbeA);
        var uniform = SdeObjective.DenoisingScoreMatchingLoss(model, sde, Parameterisation.Epsilon, X0Tensor(), new Generator(13), eta: 0.01).Item();
        var replay = new Generator(13);
        var t = replay.UniformHost(3).Select(u => 0.01 + u * (1 - 0.01)).ToArray();
        var eps = replay.Normal([3, 2], DType.Float64);
        Assert.That(uniform, Is.EqualTo(SdeObjective.DenoisingScoreMatchingLoss(model, sde, Parameterisation.Epsilon, X0Tensor(), t, eps).Item()));

        var sampler = new InverseVarianceTimeSampler(sde, 0.01);
        var importance = SdeObjective.ImportanceSampledLoss(model, Parameterisation.Epsilon, X0Tensor(), new Generator(14), sampler).Item();
        replay = new Generator(14);
        var (times, density) = sampler.Sample(replay, 3);
        eps = replay.Normal([3, 2], DType.Float64);
        var weights = density.Select(p => 1 / (p * (1 - 0.01))).ToArray();
        Assert.That(importance, Is.EqualTo(SdeObjective.DenoisingScoreMatchingLoss(model, sde, Parameterisation.Epsilon, X0Tensor(), times, eps, weights).Item()));
        Assert.That(times.All(x => x >= 0.01 && x <= 1));
    }

    [Test]
    public void InverseVarianceSamplerFollowsOneOverSigmaSquared()
    {
        // VE has the closed form int dt / (sigma_min^2 (r^(2t) - 1)) = ln(1 - r^(-2t)) / (2 ln r sigma_min^2).
        // The trapezoid rule in ln t with h = 11.5 / 4096 errs by about h^2 / 12 times the integrand's curvature
        // in ln t, at most (2 ln r)^2 = 290: below 2e-4 relative; 1e-3 allows for it.
        var ve = new VeSde();
        double eta = 1e-5, k = 2 * Math.Log(5000);
        var sampler = new InverseVarianceTimeSampler(ve, eta);
        double exact = (Math.Log(-double.ExpM1(-k)) - Math.Log(-double.ExpM1(-k * eta))) / (k * 1e-4);
        Assert.That(sampler.Normaliser, Is.EqualTo(exact).Within(1e-3 * exact));

        // The density follows (1/sigma_t^2) / Z within the bound of its doc comment: exp(h slope) - 1 with the
        // slope of ln(t / sigma_t^2) in ln t at most about 1 for VP and sub-VP: 0.3%; 0.5% allows the trapezoid's
        // Z error.
        foreach (var sde in new Sde[] { new VpSde(), new SubVpSde() })
        {
            var s = new InverseVarianceTimeSampler(sde, eta);
            foreach (var t in new[] { 2e-5, 1e-4, 1e-3, 0.01, 0.1, 0.5, 0.99 })
            {
                double target = 1 / (Math.Pow(sde.MarginalStd(t), 2) * s.Normaliser);
                Assert.That(s.Density(t), Is.EqualTo(target).Within(5e-3 * target), $"{sde.Name} t = {t}");
            }
        }
        var vp = new VpSde();
        var vpSampler = new InverseVarianceTimeSampler(vp, eta);

        // Draws land on [eta, T], and the reported density is the one of the draw's cell.
        var (times, densities) = vpSampler.Sample(new Generator(15), 10000);
        for (int i = 0; i < times.Length; i++)
        {
            Assert.That(times[i], Is.InRange(eta, 1.0));
            Assert.That(densities[i], Is.EqualTo(vpSampler.Density(times[i])).Within(1e-9 * densities[i]));
        }
        // Half the mass of 1/sigma_t^2 lies where the VP integral reaches Z / 2; count the draws below that time
        // (found by bisection on the hand integral): binomial(10000, 1/2), sd 50, so 4 sd = 200.
        double median = Median(vp, eta);
        int below = times.Count(x => x < median);
        Assert.That(below, Is.InRange(5000 - 200, 5000 + 200), $"median {median}");
    }

    // The time at which int_eta^m dt / sigma_t^2 reaches half its total, by Simpson's rule on a fine ln-t grid.
    private static double Median(Sde sde, double eta)
    {
        double Integral(double upper)
        {
            const int n = 20000;
            double a = Math.Log(eta), b = Math.Log(upper), h = (b - a) / n, sum = 0;
            for (int i = 0; i <= n; i++)
            {
                double t = Math.Exp(a + i * h), s = sde.MarginalStd(t);
                double f = t / (s * s);
                sum += (i == 0 || i == n ? 1 : i % 2 == 1 ? 4 : 2) * f;
            }
            return sum * h / 3;
        }
        double half = Integral(sde.T) / 2, lo = eta, hi = sde.T;
        for (int i = 0; i < 60; i++)
        {
            double mid = Math.Sqrt(lo * hi);
            if (Integral(mid) < half) lo = mid; else hi = mid;
        }
        return Math.Sqrt(lo * hi);
    }

    /// <summary>
    /// A closed-form "network" for <see cref="GaussianToy"/>: <c>Shrink</c> times the true noised score, at the time
    /// recovered from the condition the objective passes (999 t for VP, sigma_t for VE).
    /// </summary>
    private sealed class ShrunkGaussianScore(Sde sde, double shrink) : ScoreNetwork
    {
        private double TimeOf(double condition) => sde switch
        {
            VeSde ve => Math.Log(Math.Sqrt(condition * condition + ve.SigmaMin * ve.SigmaMin) / ve.SigmaMin) / Math.Log(ve.SigmaMax / ve.SigmaMin),
            _ => condition / 999,
        };

        public override Tensor Forward(Tensor x, Tensor t, int[]? labels = null)
        {
            var times = t.ToDoubleArray().Select(TimeOf).ToArray();
            var values = x.ToDoubleArray();
            var score = new double[values.Length];
            for (int b = 0; b < times.Length; b++)
            {
                var s = GaussianToy.Score(values[(2 * b)..(2 * b + 2)], sde.MarginalMean(times[b]), sde.MarginalStd(times[b]));
                score[2 * b] = shrink * s[0];
                score[2 * b + 1] = shrink * s[1];
            }
            return Tensor.FromSpan<double>(score, x.Shape, x.DType, x.Device);
        }
    }

    [TestCase("vp")]
    [TestCase("ve")]
    public void ImportanceSampledLossHasTheUniformExpectation(string name)
    {
        // 400 batches of 64 on a closed-form model (0.8 times the true score, so the loss is not at its floor).
        // The batch means of each estimator are i.i.d., so their standard errors come from their spread; the
        // two means must agree within 3 combined standard errors (a false alarm in 0.3% of seeds).
        var sde = Sde.Create(name);
        var model = new ShrunkGaussianScore(sde, 0.8);
        var sampler = new InverseVarianceTimeSampler(sde, SdeObjective.DefaultEta);
        const int batches = 400, batch = 64;
        var uniform = new double[batches];
        var importance = new double[batches];
        var data = new Generator(30);
        var noise = new Generator(31);
        for (int i = 0; i < batches; i++)
        {
            var x0 = GaussianToy.Sample(data, batch, DType.Float64);
            uniform[i] = SdeObjective.DenoisingScoreMatchingLoss(model, sde, Parameterisation.Score, x0, noise).Item();
            importance[i] = SdeObjective.ImportanceSampledLoss(model, Parameterisation.Score, x0, noise, sampler).Item();
        }
        var (mu, vu) = MeanAndVariance(uniform);
        var (mi, vi) = MeanAndVariance(importance);
        double combined = Math.Sqrt(vu / batches + vi / batches);
        TestContext.Out.WriteLine($"{name}: uniform {mu:F4} (per-sample variance {vu * batch:G4}), importance {mi:F4} (per-sample variance {vi * batch:G4}), ratio {vi / vu:F1}, |diff| / se {Math.Abs(mu - mi) / combined:F2}");
        Assert.That(Math.Abs(mu - mi), Is.LessThan(3 * combined));
        // The proposal puts most draws near eta, where the weight sigma_t^2 Z / (T - eta) on |sigma s + eps|^2
        // is tiny, and pays for the rare large-t draws with weights up to Z / (T - eta): the importance estimator
        // has the larger variance. Over 400 batch means, a variance ratio above 2 is far outside the sampling
        // spread of two equal variances (the F(399, 399) 99.9% point is 1.37).
        Assert.That(vi / vu, Is.GreaterThan(2.0));
    }

    private static (double Mean, double Variance) MeanAndVariance(double[] values)
    {
        double mean = values.Average();
        return (mean, values.Sum(v => (v - mean) * (v - mean)) / (values.Length - 1));
    }

    [Test]
    public void SlicedScoreMatchingMatchesTheLinearScoreByHand()
    {
        // s(x) = A x + b: ds/dx = A, so per sample v^T A v + 1/2 (v^T (A x + b))^2, or + 1/2 |A x + b|^2 (VR).
        double[] a = [0.7, -0.3, 0.2, 1.1];
        double[] bias = [0.05, -0.4];
        double[] v = [1, -1, -1, -1, 0.5, 2.0];
        foreach (bool vr in new[] { false, true })
        {
            var A = Tensor.FromArray(a, 2, 2);
            A.RequiresGrad = true;
            var b = Tensor.FromArray(bias, 2);
            b.RequiresGrad = true;
            Tensor? input = null;
            var loss = SlicedScoreMatching.Loss(x => Ops.Add(Ops.MatMul(input = x, A, transposeB: true), b), X0Tensor(), Tensor.FromArray(v, 3, 2), vr);

            double expected = 0;
            var dA = new double[4];
            for (int n = 0; n < 3; n++)
            {
                double x0 = X0[2 * n], x1 = X0[2 * n + 1], v0 = v[2 * n], v1 = v[2 * n + 1];
                double s0 = a[0] * x0 + a[1] * x1 + bias[0], s1 = a[2] * x0 + a[3] * x1 + bias[1];
                double vAv = v0 * (a[0] * v0 + a[1] * v1) + v1 * (a[2] * v0 + a[3] * v1);
                double vs = v0 * s0 + v1 * s1;
                expected += (vAv + (vr ? 0.5 * (s0 * s0 + s1 * s1) : 0.5 * vs * vs)) / 3;
                // d(v^T A v)/dA_ij = v_i v_j; d(1/2 (v.s)^2)/dA_ij = (v.s) v_i x_j; d(1/2 |s|^2)/dA_ij = s_i x_j.
                double[] vv = [v0, v1], xx = [x0, x1], ss = [s0, s1];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++)
                        dA[2 * i + j] += (vv[i] * vv[j] + (vr ? ss[i] * xx[j] : vs * vv[i] * xx[j])) / 3;
            }
            Assert.That(loss.Item(), Is.EqualTo(expected).Within(Tolerance * Math.Abs(expected)), $"variance reduced: {vr}");
            loss.Backward();
            // The v^T A v term reaches A only through the createGraph vector-Jacobian product.
            Assert.That(A.Grad!.ToDoubleArray(), Is.EqualTo(dA).Within(Tolerance * dA.Max(Math.Abs)), $"variance reduced: {vr}");
            Assert.That(b.Grad, Is.Not.Null);
            Assert.That(input!.Grad, Is.Null, "the data must not collect a gradient");
        }
    }

    [Test]
    public void SlicedScoreMatchingDrawsRademacherOrGaussianProjections()
    {
        var A = Tensor.FromArray([0.7, -0.3, 0.2, 1.1], 2, 2);
        Tensor Score(Tensor x) => Ops.MatMul(x, A, transposeB: true);
        foreach (var distribution in new[] { SliceDistribution.Rademacher, SliceDistribution.Gaussian })
        {
            var fromGenerator = SlicedScoreMatching.Loss(Score, X0Tensor(), new Generator(16), distribution).Item();
            var replay = new Generator(16);
            var v = distribution == SliceDistribution.Rademacher ? replay.Rademacher([3, 2], DType.Float64) : replay.Normal([3, 2], DType.Float64);
            Assert.That(fromGenerator, Is.EqualTo(SlicedScoreMatching.Loss(Score, X0Tensor(), v).Item()), distribution.ToString());
        }
        // A score that ignores x has a zero Jacobian: the loss is 1/2 (v.c)^2 alone.
        var c = Tensor.FromArray([0.5, -1.0], 1, 2);
        c.RequiresGrad = true;
        var constant = SlicedScoreMatching.Loss(x => Ops.Expand(c, [3, 2]), X0Tensor(), Tensor.FromArray([1.0, 1, 1, -1, -1, 1], 3, 2)).Item();
        Assert.That(constant, Is.EqualTo((0.5 * 0.25 + 0.5 * 2.25 + 0.5 * 2.25) / 3).Within(Tolerance));
    }

    [Test]
    public void LabelDropoutRateMatchesPUncond()
    {
        // 100,000 labels, p = 0.1: the number dropped is binomial with sd sqrt(n p (1 - p)) = 94.9; 5 sd
        // (a false alarm once in 1.7 million runs) is 474.
        const int n = 100_000, classes = 10;
        var labels = Enumerable.Range(0, n).Select(i => i % classes).ToArray();
        var dropped = ClassifierFreeDropout.DropLabels(labels, classes, 0.1, new Generator(17));
        int nulls = dropped.Count(l => l == classes);
        Assert.That(nulls, Is.InRange(10_000 - 474, 10_000 + 474));
        for (int i = 0; i < n; i++)
            if (dropped[i] != classes) Assert.That(dropped[i], Is.EqualTo(labels[i]));
        Assert.That(ClassifierFreeDropout.DropLabels(labels, classes, 0.0, new Generator(18)), Is.EqualTo(labels));
        Assert.That(ClassifierFreeDropout.DropLabels(labels, classes, 1.0, new Generator(19)).All(l => l == classes));
        Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeDropout.DropLabels([10], classes, 0.1, new Generator(1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeDropout.DropLabels([1], classes, 1.5, new Generator(1)));
    }

    // A linear classifier: logits = x W^T + c u, u fixed, so the hand computation sees both x_t and the condition.
    private static readonly double[] ClassifierW = [0.5, -1.0, 1.2, 0.3, -0.4, 0.8];
    private static readonly double[] ClassifierU = [0.001, -0.002, 0.0005];

    private static (double Loss, double[] DW) HandCrossEntropy(double[] xt, double[] conditions, int[] labels)
    {
        double loss = 0;
        var dW = new double[6];
        for (int b = 0; b < 3; b++)
        {
            var logits = new double[3];
            for (int c = 0; c < 3; c++)
                logits[c] = ClassifierW[2 * c] * xt[2 * b] + ClassifierW[2 * c + 1] * xt[2 * b + 1] + conditions[b] * ClassifierU[c];
            double max = logits.Max();
            double logZ = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
            loss += (logZ - logits[labels[b]]) / 3;
            for (int c = 0; c < 3; c++)
            {
                double g = Math.Exp(logits[c] - logZ) - (c == labels[b] ? 1 : 0);
                dW[2 * c] += g * xt[2 * b] / 3;
                dW[2 * c + 1] += g * xt[2 * b + 1] / 3;
            }
        }
        return (loss, dW);
    }

    [Test]
    public void NoisyClassifierCrossEntropyMatchesHandComputation()
    {
        int[] labels = [2, 0, 1];
        var W = Tensor.FromArray(ClassifierW, 3, 2);
        W.RequiresGrad = true;
        var u = Tensor.FromArray(ClassifierU, 1, 3);
        Tensor Classifier(Tensor x, Tensor c) => Ops.Add(Ops.MatMul(x, W, transposeB: true), Ops.Mul(Ops.Reshape(c, -1, 1), u));

        // DDPM: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps; the classifier sees the step index.
        int[] steps = [0, 10, 999];
        var xt = new double[6];
        for (int i = 0; i < 6; i++)
        {
            double alphaBar = LinearAlphaBar(steps[i / 2]);
            xt[i] = Math.Sqrt(alphaBar) * X0[i] + Math.Sqrt(1 - alphaBar) * Eps[i];
        }
        var loss = NoisyClassifierObjective.CrossEntropyLoss(Classifier, DdpmSchedule.Linear(1000), X0Tensor(), labels, steps, EpsTensor());
        var (expected, dW) = HandCrossEntropy(xt, [0, 10, 999], labels);
        Assert.That(loss.Item(), Is.EqualTo(expected).Within(Tolerance * expected));
        loss.Backward();
        Assert.That(W.Grad!.ToDoubleArray(), Is.EqualTo(dW).Within(Tolerance * dW.Max(Math.Abs)));

        // VE: x_t = x0 + sigma_t eps; the classifier sees sigma_t.
        double[] t = [0.1, 0.5, 0.9];
        var conditions = new double[3];
        for (int i = 0; i < 6; i++)
        {
            var (alpha, sigma, condition) = HandMarginal("ve", t[i / 2]);
            conditions[i / 2] = condition;
            xt[i] = alpha * X0[i] + sigma * Eps[i];
        }
        var veLoss = NoisyClassifierObjective.CrossEntropyLoss(Classifier, new VeSde(), X0Tensor(), labels, t, EpsTensor()).Item();
        Assert.That(veLoss, Is.EqualTo(HandCrossEntropy(xt, conditions, labels).Loss).Within(Tolerance * veLoss));

        // The generator overloads draw the time and then the noise.
        var replay = new Generator(20);
        var drawnSteps = replay.Integers(3, 1000);
        var drawnEps = replay.Normal([3, 2], DType.Float64);
        Assert.That(NoisyClassifierObjective.CrossEntropyLoss(Classifier, DdpmSchedule.Linear(1000), X0Tensor(), labels, new Generator(20)).Item(),
            Is.EqualTo(NoisyClassifierObjective.CrossEntropyLoss(Classifier, DdpmSchedule.Linear(1000), X0Tensor(), labels, drawnSteps, drawnEps).Item()));
        replay = new Generator(21);
        var drawnT = replay.UniformHost(3).Select(x => 1e-5 + x * (1 - 1e-5)).ToArray();
        drawnEps = replay.Normal([3, 2], DType.Float64);
        Assert.That(NoisyClassifierObjective.CrossEntropyLoss(Classifier, new VpSde(), X0Tensor(), labels, new Generator(21)).Item(),
            Is.EqualTo(NoisyClassifierObjective.CrossEntropyLoss(Classifier, new VpSde(), X0Tensor(), labels, drawnT, drawnEps).Item()));
    }

    [Test]
    public void ObjectivesRefuseMismatchedArguments()
    {
        var model = new AffineProbe(ProbeA);
        Assert.Throws<ArgumentException>(() => DdpmVlbObjective.Loss(model, DdpmSchedule.Linear(10), X0Tensor(), [0, 1], EpsTensor()));
        Assert.Throws<ArgumentOutOfRangeException>(() => DdpmVlbObjective.Loss(model, DdpmSchedule.Linear(10), X0Tensor(), [0, 1, 10], EpsTensor()));
        Assert.Throws<ArgumentException>(() => NcsnObjective.DenoisingScoreMatchingLoss(model, NcsnSigmas.Geometric(), X0Tensor(), [0, 1, 2], Tensor.FromArray(new double[4], 2, 2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => SdeObjective.DenoisingScoreMatchingLoss(model, new VpSde(), Parameterisation.Score, X0Tensor(), new Generator(1), eta: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => SdeObjective.DenoisingScoreMatchingLoss(model, new VpSde(), Parameterisation.Score, X0Tensor(), [0.0, 0.5, 0.5], EpsTensor()));
        Assert.Throws<ArgumentException>(() => SlicedScoreMatching.Loss(x => x, X0Tensor(), Tensor.FromArray(new double[2], 1, 2)));
    }
}
