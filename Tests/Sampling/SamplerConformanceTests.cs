using System.Diagnostics;
using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Sampling.Samplers;
using DiffusionCore.Training.Metrics;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

/// <summary>
/// Every sampler, driven by the exact score of a Gaussian mixture, must reproduce that mixture: its mean,
/// covariance, mixture weights (by nearest component) and an energy distance to fresh mixture draws, all
/// within bounds set by the sampling noise of the statistic at this sample size. The same check run with a
/// deliberately wrong score (0.5 times the exact one) must fail, which shows the check can tell.
/// </summary>
[TestFixture]
public class SamplerConformanceTests
{
    // Sample size of every sampler run: standard errors of the moments are ~2% of the spread.
    private const int N = 2000;

    // Points per set in the energy distance (its cost is quadratic; 1000 keeps a 16-D call near 50 ms).
    private const int EnergyN = 1000;

    // Fresh-vs-fresh energy distances used to calibrate the bound.
    private const int EnergyReplicates = 12;

    // Draws of the big reference sample that estimates the standard errors of the covariance entries and
    // the nearest-component fractions (its own error is 1/sqrt(10) of a run's, and is counted below).
    private const int ReferenceN = 20_000;

    // A z-score bound for every moment, covariance entry and weight: under exact sampling each z is ~N(0, 1)
    // (central limit theorem at n = 2000), and P(max of the 156 z's of the 16-D check > 4.5) ~ 156 * 6.8e-6 ~ 1e-3,
    // so a correct sampler fails by chance about once in a thousand seeds; the runs are seeded, so a pass is
    // reproducible. Discretisation bias of the samplers must stay inside it: their step counts are chosen so.
    private const double ZBound = 4.5;

    private static readonly Lazy<GaussianMixture> Data2d = new(Build2d);
    private static readonly Lazy<GaussianMixture> Data16d = new(Build16d);
    private static readonly Lazy<Target> Mixture2d = new(() => new Target(Data2d.Value, 11));
    private static readonly Lazy<Target> Mixture16d = new(() => new Target(Data16d.Value, 12));

    // Plain Langevin MCMC targets one fixed noise level: the VP marginal at t = 0.5 (alpha = 0.28,
    // sigma^2 = 0.92), where the 2-D components overlap enough for a single chain to move between them.
    private static readonly NoiseLevel LangevinLevel = new VpSde().Level(0.5);
    private static readonly Lazy<Target> Noised2d = new(() => new Target(Data2d.Value.Noised(LangevinLevel), 13));

    private static GaussianMixture DataFor(int dim) => dim == 2 ? Data2d.Value : Data16d.Value;

    private static Target TargetFor(string sampler, int dim) =>
        sampler == "langevin" ? Noised2d.Value : dim == 2 ? Mixture2d.Value : Mixture16d.Value;

    // Three well-separated components in 2-D: a correlated one, a diagonal one and an isotropic one.
    private static GaussianMixture Build2d() => new(
        [0.5, 0.3, 0.2],
        [[-2.0, 0.0], [2.0, 1.0], [0.5, -2.5]],
        [
            new double[,] { { 0.30, 0.15 }, { 0.15, 0.25 } },
            new double[,] { { 0.15, 0.0 }, { 0.0, 0.40 } },
            new double[,] { { 0.20, 0.0 }, { 0.0, 0.20 } },
        ]);

    // Four components in 16-D with means ~N(0, I) (pairwise distances ~5.7) and covariances of scale ~0.4:
    // three diagonal, one full (B B^T / 64 + 0.1 I with B ~ N(0, 1)^{16x16}).
    private static GaussianMixture Build16d()
    {
        const int d = 16;
        var g = new Generator(2024);
        var means = Enumerable.Range(0, 4).Select(_ => g.NormalHost(d).Select(v => (double)v).ToArray()).ToArray();
        var covariances = new double[4][,];
        for (int k = 0; k < 3; k++)
        {
            var u = g.UniformHost(d);
            covariances[k] = new double[d, d];
            for (int i = 0; i < d; i++) covariances[k][i, i] = 0.2 + 0.4 * u[i];
        }
        var b = g.NormalHost(d * d);
        covariances[3] = new double[d, d];
        for (int i = 0; i < d; i++)
        {
            for (int j = 0; j < d; j++)
            {
                double s = 0;
                for (int l = 0; l < d; l++) s += b[i * d + l] * b[j * d + l];
                covariances[3][i, j] = s / (4 * d);
            }
            covariances[3][i, i] += 0.1;
        }
        return new GaussianMixture([0.4, 0.3, 0.2, 0.1], means, covariances);
    }

    /// <summary>A mixture with everything the check compares against, computed once.</summary>
    private sealed class Target
    {
        public Target(GaussianMixture mixture, ulong seed)
        {
            Mixture = mixture;
            Dim = mixture.Dimension;
            Mean = mixture.Mean();
            Covariance = mixture.Covariance();
            var root = new Generator(seed);
            var reference = mixture.Sample(ReferenceN, root.Split(1), DiffusionCore.Kernels.DType.Float64).ToDoubleArray();
            // Standard deviation of each product (x_i - mu_i)(x_j - mu_j) over the reference draws: the sample
            // covariance with the known mean is the average of n such products.
            ProductStd = new double[Dim, Dim];
            for (int i = 0; i < Dim; i++)
            {
                for (int j = 0; j <= i; j++)
                {
                    double s = 0, s2 = 0;
                    for (int r = 0; r < ReferenceN; r++)
                    {
                        double p = (reference[r * Dim + i] - Mean[i]) * (reference[r * Dim + j] - Mean[j]);
                        s += p;
                        s2 += p * p;
                    }
                    double m = s / ReferenceN;
                    ProductStd[i, j] = ProductStd[j, i] = Math.Sqrt(s2 / ReferenceN - m * m);
                }
            }
            NearestFractions = Fractions(reference, ReferenceN);
            EnergyReference = mixture.Sample(EnergyN, root.Split(2)).ToArray();
            NullEnergies = Enumerable.Range(0, EnergyReplicates)
                .Select(r => SampleDistance.EnergyDistance(mixture.Sample(EnergyN, root.Split(100 + (ulong)r)).ToArray(), EnergyReference, Dim))
                .ToArray();
            double mean = NullEnergies.Average();
            double sd = Math.Sqrt(NullEnergies.Sum(e => (e - mean) * (e - mean)) / (EnergyReplicates - 1));
            // Between two samples of one law, (n m / (n + m)) ED tends to sum_k lambda_k (Z_k^2 - 1) (Székely and
            // Rizzo 2013, section 5), a centred weighted chi-square; its most skewed case, one term, has its 99th
            // percentile at mean + 4 sd (P(chi^2_1 > 1 + 4 sqrt 2) = 0.0099). The replicates estimate mean and sd.
            EnergyBound = mean + 4 * sd;
        }

        public GaussianMixture Mixture { get; }
        public int Dim { get; }
        public double[] Mean { get; }
        public double[,] Covariance { get; }
        public double[,] ProductStd { get; }
        public double[] NearestFractions { get; }
        public float[] EnergyReference { get; }
        public double[] NullEnergies { get; }
        public double EnergyBound { get; }

        // Fraction of points whose nearest component mean (Euclidean) is k.
        public double[] Fractions(IReadOnlyList<double> x, int n)
        {
            var counts = new double[Mixture.Components];
            var means = Enumerable.Range(0, Mixture.Components).Select(Mixture.ComponentMean).ToArray();
            for (int r = 0; r < n; r++)
            {
                int best = 0;
                double bestDistance = double.MaxValue;
                for (int k = 0; k < means.Length; k++)
                {
                    double dist = 0;
                    for (int i = 0; i < Dim; i++) dist += Math.Pow(x[r * Dim + i] - means[k][i], 2);
                    if (dist < bestDistance) (best, bestDistance) = (k, dist);
                }
                counts[best]++;
            }
            return counts.Select(c => c / n).ToArray();
        }
    }

    /// <summary>The largest |z| of each family of statistics and the energy distance with its bound.</summary>
    private sealed record Report(double MeanZ, double CovarianceZ, double WeightZ, double Energy, double EnergyBound)
    {
        public bool MomentsPass => MeanZ < ZBound && CovarianceZ < ZBound && WeightZ < ZBound;
        public bool EnergyPasses => Energy < EnergyBound;
        public bool Passed => MomentsPass && EnergyPasses;

        public override string ToString() =>
            $"max |z|: mean {MeanZ:F2}, covariance {CovarianceZ:F2}, weights {WeightZ:F2} (bound {ZBound}); energy distance {Energy:F5} (bound {EnergyBound:F5}) -> {(Passed ? "pass" : "FAIL")}";
    }

    private static Report Check(Tensor samples, Target target)
    {
        int d = target.Dim;
        Assert.That(samples.Shape, Is.EqualTo(new[] { N, d }));
        var f = samples.ToArray();
        Assert.That(f.All(float.IsFinite), "samples must be finite");
        var x = f.Select(v => (double)v).ToArray();
        double meanZ = 0, covZ = 0, weightZ = 0;
        for (int i = 0; i < d; i++)
        {
            double m = 0;
            for (int r = 0; r < N; r++) m += x[r * d + i];
            m /= N;
            meanZ = Math.Max(meanZ, Math.Abs(m - target.Mean[i]) / Math.Sqrt(target.Covariance[i, i] / N));
            for (int j = 0; j <= i; j++)
            {
                double c = 0;
                for (int r = 0; r < N; r++) c += (x[r * d + i] - target.Mean[i]) * (x[r * d + j] - target.Mean[j]);
                c /= N;
                covZ = Math.Max(covZ, Math.Abs(c - target.Covariance[i, j]) / (target.ProductStd[i, j] / Math.Sqrt(N)));
            }
        }
        var fractions = target.Fractions(x, N);
        for (int k = 0; k < fractions.Length; k++)
        {
            double p = target.NearestFractions[k];
            // Binomial standard error of the run's fraction and of the reference estimate of p.
            double se = Math.Sqrt(p * (1 - p) * (1.0 / N + 1.0 / ReferenceN));
            weightZ = Math.Max(weightZ, Math.Abs(fractions[k] - p) / se);
        }
        double energy = SampleDistance.EnergyDistance(f.AsSpan(0, EnergyN * d).ToArray(), target.EnergyReference, d);
        return new Report(meanZ, covZ, weightZ, energy, target.EnergyBound);
    }

    // NCSN levels: sigma_1 = 10 exceeds the largest distance between components (Song and Ermon 2020,
    // Technique 1); sigma_L = 0.1 is a fifth of the smallest component standard deviation, and the final
    // Tweedie step removes most of what it adds (the variance left over is ~3% of a component's, about one
    // standard error of a covariance entry here).
    private static readonly NcsnSigmas AldSigmas = NcsnSigmas.Geometric(10.0, 0.1, 10);

    // Every sampler in the configuration the check runs it in. Step counts are round numbers at which the
    // discretisation bias sits well inside the sampling noise: with the exact score every printed z stays
    // below 4 and every energy distance below its bound.
    private static Tensor Run(string sampler, ScoreModel model, int dim, Generator g)
    {
        int[] shape = [N, dim];
        // Ho et al.'s linear schedule rescaled to 100 steps (betas 1e-3..0.2, the same beta(t) = 0.1..20 as
        // their 1e-4..0.02 over 1000 steps): alpha_bar_T = e^{-10}, so x_T ~ N(0, I) is the right start.
        var ddpm = DdpmSchedule.Linear(100, 1e-3, 0.2);
        return sampler switch
        {
            "ddpm-beta" => DdpmAncestral.Sample(model, ddpm, shape, g, DdpmVariance.Beta),
            "ddpm-betatilde" => DdpmAncestral.Sample(model, ddpm, shape, g, DdpmVariance.PosteriorBetaTilde),
            "ddim-eta0" => Ddim.Sample(model, ddpm, shape, g, 100, eta: 0),
            "ddim-eta1" => Ddim.Sample(model, ddpm, shape, g, 50, eta: 1),
            // eps = sigma_L^2 makes alpha_i = sigma_i^2: at levels above the components' scale (sigma_i^2 >= 0.4)
            // a chain relaxes within ~4 steps, so 20 steps per level track the marginals down to the data's
            // scale; the levels below move the samples little, and the bias left is inside the noise.
            "ald" => AnnealedLangevin.Sample(model, AldSigmas, shape, g, stepsPerLevel: 20, stepSize: 0.1 * 0.1, denoise: true),
            "em-vp" => EulerMaruyama.Sample(model, new VpSde(), shape, g, steps: 100),
            "em-subvp" => EulerMaruyama.Sample(model, new SubVpSde(), shape, g, steps: 100),
            "em-ve" => EulerMaruyama.Sample(model, new VeSde(), shape, g, steps: 100),
            "pc-vp" => PredictorCorrector.Sample(model, new VpSde(), shape, g, steps: 50),
            "pc-subvp" => PredictorCorrector.Sample(model, new SubVpSde(), shape, g, steps: 50),
            "pc-ve" => PredictorCorrector.Sample(model, new VeSde(), shape, g, steps: 50),
            "pc-em-vp" => PredictorCorrector.Sample(model, new VpSde(), shape, g, steps: 50, predictor: Predictor.EulerMaruyama),
            "pf-euler-vp" => ProbabilityFlow.Sample(model, new VpSde(), shape, g, OdeSolverOptions.Fixed(OdeMethod.Euler, 100)).Samples,
            "pf-heun-vp" => ProbabilityFlow.Sample(model, new VpSde(), shape, g, OdeSolverOptions.Fixed(OdeMethod.Heun, 25)).Samples,
            "pf-rk4-vp" => ProbabilityFlow.Sample(model, new VpSde(), shape, g, OdeSolverOptions.Fixed(OdeMethod.Rk4, 12)).Samples,
            "pf-rk45-vp" => ProbabilityFlow.Sample(model, new VpSde(), shape, g, OdeSolverOptions.Adaptive(1e-4, 1e-4)).Samples,
            "pf-rk45-subvp" => ProbabilityFlow.Sample(model, new SubVpSde(), shape, g, OdeSolverOptions.Adaptive(1e-4, 1e-4)).Samples,
            "pf-rk45-ve" => ProbabilityFlow.Sample(model, new VeSde(), shape, g, OdeSolverOptions.Adaptive(1e-4, 1e-4)).Samples,
            "dpmpp2m-vp" => DpmSolverPlusPlus2M.Sample(model, new VpSde(), shape, g, steps: 20),
            "dpmpp2m-ve" => DpmSolverPlusPlus2M.Sample(model, new VeSde(), shape, g, steps: 20),
            // eps = 0.05, about 1/20 of the target's component variances (~1): a chain relaxes at the rate
            // eps / (2 var) ~ 1/40 per step, so 150 steps are ~4 relaxation times, and the unadjusted step
            // inflates the variance by eps / (4 var) ~ 1%.
            "langevin" => LangevinMcmc.Sample(model, LangevinLevel, g.Normal(shape), g, steps: 150, stepSize: 0.05),
            _ => throw new ArgumentException($"unknown sampler {sampler}"),
        };
    }

    private static readonly string[] Samplers2d =
    [
        "ddpm-beta", "ddpm-betatilde", "ddim-eta0", "ddim-eta1", "ald", "em-vp", "em-subvp", "em-ve", "pc-vp", "pc-subvp", "pc-ve",
        "pc-em-vp", "pf-euler-vp", "pf-heun-vp", "pf-rk4-vp", "pf-rk45-vp", "pf-rk45-subvp", "pf-rk45-ve", "dpmpp2m-vp", "dpmpp2m-ve", "langevin",
    ];

    private static readonly string[] Samplers16d = ["ddpm-beta", "ddim-eta0", "ald", "em-vp", "pc-ve", "pf-rk45-subvp", "dpmpp2m-vp"];

    private static IEnumerable<TestCaseData> Cases() =>
        Samplers2d.Select(s => new TestCaseData(s, 2)).Concat(Samplers16d.Select(s => new TestCaseData(s, 16)));

    private static ScoreModel WrongScore(GaussianMixture mixture) =>
        ScoreModel.FromFunction((x, level, _) => mixture.Score(x, level) * 0.5, Parameterisation.Score);

    [TestCaseSource(nameof(Cases))]
    public void SamplerWithTheExactScoreMatchesTheMixture(string sampler, int dim)
    {
        var target = TargetFor(sampler, dim);
        var cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var report = Check(Run(sampler, DataFor(dim).ToScoreModel(), dim, new Generator(77)), target);
        TestContext.Out.WriteLine($"{sampler} {dim}-D ({clock.ElapsedMilliseconds} ms, {(Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMilliseconds:F0} ms CPU): {report}");
        Assert.That(report.Passed, report.ToString());
    }

    // One configuration per sampler family (the others share its update with another SDE or ODE solver).
    private static readonly string[] WrongScoreSamplers = ["ddpm-beta", "ddim-eta0", "ald", "em-ve", "pc-vp", "pf-rk45-vp", "dpmpp2m-vp", "langevin"];

    [TestCaseSource(nameof(WrongScoreSamplers))]
    public void SamplerWithAHalvedScoreFailsTheSameCheck(string sampler)
    {
        var target = TargetFor(sampler, 2);
        var report = Check(Run(sampler, WrongScore(DataFor(2)), 2, new Generator(77)), target);
        TestContext.Out.WriteLine($"{sampler} with 0.5 s: {report}");
        Assert.That(report.Passed, Is.False, report.ToString());
        Assert.That(report.EnergyPasses, Is.False, "the energy distance alone must also see the wrong score");
    }
}
