using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using MathNet.Numerics.LinearAlgebra;
using NUnit.Framework;

namespace DiffusionCore.Tests.Models;

/// <summary>The closed-form Gaussian mixture against an independent MathNet evaluation, finite differences and its own draws.</summary>
[TestFixture]
public class GaussianMixtureTests
{
    // Three components in 3-D: one full (correlated) covariance, one diagonal, one isotropic.
    private static GaussianMixture Mixture() => new(
        [0.5, 0.3, 0.2],
        [[1.0, -1.0, 0.5], [-2.0, 0.5, 0.0], [0.5, 2.0, -1.5]],
        [
            new double[,] { { 0.5, 0.2, 0.1 }, { 0.2, 0.4, -0.1 }, { 0.1, -0.1, 0.3 } },
            new double[,] { { 0.2, 0, 0 }, { 0, 0.6, 0 }, { 0, 0, 0.3 } },
            new double[,] { { 0.25, 0, 0 }, { 0, 0.25, 0 }, { 0, 0, 0.25 } },
        ]);

    private static readonly double[] Points = [0.3, -0.2, 0.1, -1.5, 1.0, 0.4, 4.0, -3.0, 2.0, 0.5, 2.1, -1.4];

    // log sum_k w_k N(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I) with MathNet's LU determinant and inverse.
    private static double ReferenceLogDensity(GaussianMixture g, double[] x, double alpha, double sigma)
    {
        int d = g.Dimension;
        var terms = new double[g.Components];
        for (int k = 0; k < g.Components; k++)
        {
            var c = Matrix<double>.Build.DenseOfArray(g.ComponentCovariance(k)) * (alpha * alpha) + Matrix<double>.Build.DenseIdentity(d) * (sigma * sigma);
            var diff = Vector<double>.Build.DenseOfArray(x) - Vector<double>.Build.DenseOfArray(g.ComponentMean(k)) * alpha;
            terms[k] = Math.Log(g.Weight(k)) - 0.5 * Math.Log(c.Determinant()) - 0.5 * d * Math.Log(2 * Math.PI) - 0.5 * (diff * c.Inverse() * diff);
        }
        double max = terms.Max();
        return max + Math.Log(terms.Sum(t => Math.Exp(t - max)));
    }

    [TestCase(1.0, 0.0)]
    [TestCase(0.8, 0.6)]
    [TestCase(0.05, 0.9987)]
    public void LogDensityMatchesAnIndependentEvaluation(double alpha, double sigma)
    {
        var g = Mixture();
        var level = new NoiseLevel(alpha, sigma, 0);
        var got = g.LogDensity(Tensor.FromArray(Points, 4, 3), level).ToDoubleArray();
        for (int n = 0; n < 4; n++)
        {
            double expected = ReferenceLogDensity(g, Points.Skip(3 * n).Take(3).ToArray(), alpha, sigma);
            // Both sides are float64 evaluations of the same formula by different factorisations (Cholesky vs
            // LU); they agree to ~1e-14 relative on these well-conditioned 3x3 matrices.
            Assert.That(got[n], Is.EqualTo(expected).Within(1e-10).Percent);
        }
        var noised = g.Noised(level).LogDensity(Tensor.FromArray(Points, 4, 3)).ToDoubleArray();
        Assert.That(noised, Is.EqualTo(got).Within(1e-12));
    }

    [TestCase(1.0, 0.0)]
    [TestCase(0.8, 0.6)]
    public void ScoreIsTheGradientOfTheLogDensity(double alpha, double sigma)
    {
        var g = Mixture();
        var level = new NoiseLevel(alpha, sigma, 0);
        var score = g.Score(Tensor.FromArray(Points, 4, 3), level).ToDoubleArray();
        const double h = 1e-5;
        for (int i = 0; i < Points.Length; i++)
        {
            var plus = (double[])Points.Clone();
            var minus = (double[])Points.Clone();
            plus[i] += h;
            minus[i] -= h;
            double fd = (g.LogDensity(Tensor.FromArray(plus, 4, 3), level).ToDoubleArray()[i / 3]
                - g.LogDensity(Tensor.FromArray(minus, 4, 3), level).ToDoubleArray()[i / 3]) / (2 * h);
            // Central differences: truncation ~ h^2 |f'''| ~ 1e-10 * O(10), round-off ~ 1e-16 |f| / h ~ 1e-10.
            Assert.That(score[i], Is.EqualTo(fd).Within(1e-6), $"coordinate {i}");
        }
    }

    [Test]
    public void DifferentiablePathAgreesWithTheHostPathAndAutograd()
    {
        // With x tracking a gradient the mixture runs as tensor ops; autograd of the log density must then give
        // the score, and both must equal the host loops' results.
        var g = Mixture();
        var level = new NoiseLevel(0.8, 0.6, 0);
        var host = g.Score(Tensor.FromArray(Points, 4, 3), level).ToDoubleArray();
        var hostLogp = g.LogDensity(Tensor.FromArray(Points, 4, 3), level).ToDoubleArray();
        var hostR = g.Responsibilities(Tensor.FromArray(Points, 4, 3), level).ToDoubleArray();
        var x = Tensor.FromArray(Points, 4, 3);
        x.RequiresGrad = true;
        var logp = g.LogDensity(x, level);
        var grad = Autograd.Grad([Ops.Sum(logp)], [x])[0]!.ToDoubleArray();
        // float64 throughout; the two paths differ only in summation order (~1e-15 relative).
        Assert.That(logp.ToDoubleArray(), Is.EqualTo(hostLogp).Within(1e-12));
        Assert.That(g.Score(x, level).ToDoubleArray(), Is.EqualTo(host).Within(1e-12));
        Assert.That(g.Responsibilities(x, level).ToDoubleArray(), Is.EqualTo(hostR).Within(1e-12));
        Assert.That(grad, Is.EqualTo(host).Within(1e-12));
    }

    [Test]
    public void FarPointsGetTheNearestComponentsScoreNotNaN()
    {
        // At x = (300, 0, 0) every component's density underflows (log N ~ -1e5): without log-sum-exp the
        // responsibilities would be 0 / 0. The component with the largest log joint there dominates exactly.
        var g = Mixture();
        var x = Tensor.FromArray(new[] { 300.0, 0, 0 }, 1, 3);
        var score = g.Score(x, new NoiseLevel(1, 0, 0)).ToDoubleArray();
        var logp = g.LogDensity(x).ToDoubleArray()[0];
        Assert.That(score.All(double.IsFinite) && double.IsFinite(logp));
        var r = g.Responsibilities(x, new NoiseLevel(1, 0, 0)).ToDoubleArray();
        int k = Array.IndexOf(r, r.Max());
        var p = Matrix<double>.Build.DenseOfArray(g.ComponentCovariance(k)).Inverse();
        var expected = -(p * (Vector<double>.Build.DenseOfArray(new[] { 300.0, 0, 0 }) - Vector<double>.Build.DenseOfArray(g.ComponentMean(k))));
        // The other components' responsibilities are exp(-O(1e4)) = 0 in float64.
        Assert.That(score, Is.EqualTo(expected.ToArray()).Within(1e-9).Percent);
    }

    [Test]
    public void ScoreKeepsTheInputsShapeAndDType()
    {
        var g = Mixture();
        var x = Tensor.FromArray(Points.Select(v => (float)v).ToArray(), 4, 3, 1);
        var s = g.ToScoreModel().Score(x, new NoiseLevel(0.9, 0.4, 0));
        Assert.That(s.Shape, Is.EqualTo(new[] { 4, 3, 1 }));
        Assert.That(s.DType, Is.EqualTo(DType.Float32));
        var reference = g.Score(Tensor.FromArray(Points, 4, 3), new NoiseLevel(0.9, 0.4, 0)).ToDoubleArray();
        // float32 input rounding (~6e-8 relative) times the precision (<= ~5) moves the score by ~1e-6.
        Assert.That(s.ToArray().Select(v => (double)v), Is.EqualTo(reference).Within(1e-5));
    }

    [Test]
    public void DrawsHaveTheMixturesMomentsAndWeights()
    {
        var g = Mixture();
        const int n = 40_000;
        var (samples, labels) = g.SampleWithComponents(n, new Generator(7), DType.Float64);
        var x = samples.ToDoubleArray();
        var mean = g.Mean();
        var cov = g.Covariance();
        for (int i = 0; i < 3; i++)
        {
            double m = Enumerable.Range(0, n).Average(r => x[r * 3 + i]);
            // Standard error sqrt(var / n) <= sqrt(3 / 4e4) ~ 0.009; 5 standard errors.
            Assert.That(m, Is.EqualTo(mean[i]).Within(5 * Math.Sqrt(cov[i, i] / n)), $"mean {i}");
            for (int j = 0; j <= i; j++)
            {
                double c = Enumerable.Range(0, n).Average(r => (x[r * 3 + i] - mean[i]) * (x[r * 3 + j] - mean[j]));
                // The sample covariance's standard error is at most sqrt(E[x_i^2 x_j^2] / n); bounding the fourth
                // moment by 3 (var_i var_j + cov_ij^2) (a Gaussian's, ample for this mixture) gives the scale.
                double se = Math.Sqrt(3 * (cov[i, i] * cov[j, j] + cov[i, j] * cov[i, j]) / n);
                Assert.That(c, Is.EqualTo(cov[i, j]).Within(5 * se), $"covariance ({i}, {j})");
            }
        }
        for (int k = 0; k < 3; k++)
        {
            double p = labels.Count(l => l == k) / (double)n;
            // Binomial standard error sqrt(w (1 - w) / n) ~ 0.0025; 5 standard errors.
            Assert.That(p, Is.EqualTo(g.Weight(k)).Within(5 * Math.Sqrt(g.Weight(k) * (1 - g.Weight(k)) / n)));
        }
        var again = g.Sample(n, new Generator(7), DType.Float64).ToDoubleArray();
        Assert.That(again, Is.EqualTo(x), "the same generator state gives the same draws");
    }

    [Test]
    public void BadArgumentsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => new GaussianMixture([1.0], [[0.0, 0.0]], [new double[,] { { 1, 2 }, { 2, 1 } }]));
        Assert.Throws<ArgumentException>(() => new GaussianMixture([1.0], [[0.0, 0.0]], [new double[,] { { 1, 0.5 }, { 0.4, 1 } }]));
        Assert.Throws<ArgumentOutOfRangeException>(() => GaussianMixture.Isotropic([1.0, -1.0], [[0.0], [1.0]], [1.0, 1.0]));
        var ex = Assert.Throws<ArgumentException>(() => Mixture().Score(Tensor.Zeros([5, 2]), new NoiseLevel(1, 0.5, 0)));
        Assert.That(ex!.Message, Does.Contain("[5,2]"));
    }
}
