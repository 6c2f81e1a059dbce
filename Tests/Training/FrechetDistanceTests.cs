using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Random;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Training.Metrics;
using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Factorization;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>
/// The Fréchet distance between Gaussians against closed forms (diagonal and commuting covariances, the 2 x 2
/// formula for a non-commuting pair), against two independent computations of tr((S1 S2)^(1/2)) for random
/// non-commuting covariances (the eigenvalues of the non-symmetric product, and Denman-Beavers' matrix square root),
/// on singular covariances, and from samples converging to the closed form.
/// </summary>
[TestFixture]
public sealed class FrechetDistanceTests
{
    private static GaussianStatistics Stats(double[] mean, Matrix<double> covariance) =>
        new(mean, covariance.ToRowMajorArray());

    private static double[] RandomVector(int d, Random random, double scale = 1) =>
        Enumerable.Range(0, d).Select(_ => scale * (2 * random.NextDouble() - 1)).ToArray();

    // A random orthogonal matrix: the Q of a QR decomposition of a matrix of uniform entries.
    private static Matrix<double> RandomRotation(int d, Random random) =>
        Matrix<double>.Build.Dense(d, d, (_, _) => 2 * random.NextDouble() - 1).QR().Q;

    // A random symmetric positive definite matrix A Aᵀ / d + floor I.
    private static Matrix<double> RandomSpd(int d, Random random, double floor = 0.05)
    {
        var a = Matrix<double>.Build.Dense(d, d, (_, _) => 2 * random.NextDouble() - 1);
        return a * a.Transpose() / d + Matrix<double>.Build.DenseIdentity(d) * floor;
    }

    private static double SquaredDistance(double[] a, double[] b) => a.Zip(b, (x, y) => (x - y) * (x - y)).Sum();

    // Independent reference 1: S1 S2 is similar to S1^(1/2) S2 S1^(1/2), so its eigenvalues are real and >= 0, and
    // tr((S1 S2)^(1/2)) is the sum of their square roots; here from MathNet's general (non-symmetric) eigen-solver.
    private static double TraceSqrtByProductEigenvalues(Matrix<double> s1, Matrix<double> s2) =>
        (s1 * s2).Evd(Symmetricity.Asymmetric).EigenValues.Sum(l => Math.Sqrt(Math.Max(0, l.Real)));

    // Independent reference 2: Denman and Beavers (1976) iteration Y <- (Y + Z^-1) / 2, Z <- (Z + Y^-1) / 2 from
    // Y = A, Z = I, which converges quadratically to A^(1/2) for A with no eigenvalues on the closed negative axis.
    private static double TraceSqrtByDenmanBeavers(Matrix<double> s1, Matrix<double> s2)
    {
        var y = s1 * s2;
        var z = Matrix<double>.Build.DenseIdentity(y.RowCount);
        for (int k = 0; k < 60; k++)
        {
            var yInverse = y.Inverse();
            y = (y + z.Inverse()) * 0.5;
            z = (z + yInverse) * 0.5;
        }
        return y.Trace();
    }

    private static double ReferenceDistance(double[] m1, Matrix<double> s1, double[] m2, Matrix<double> s2, Func<Matrix<double>, Matrix<double>, double> traceSqrt) =>
        SquaredDistance(m1, m2) + s1.Trace() + s2.Trace() - 2 * traceSqrt(s1, s2);

    [TestCase(1)]
    [TestCase(5)]
    [TestCase(64)]
    public void DiagonalCovariancesMatchTheClosedForm(int d)
    {
        // For S1 = diag(a), S2 = diag(b): d^2 = |mu1 - mu2|^2 + sum_k (sqrt(a_k) - sqrt(b_k))^2.
        var random = new Random(d);
        double[] m1 = RandomVector(d, random), m2 = RandomVector(d, random);
        double[] a = Enumerable.Range(0, d).Select(_ => 0.01 + 3 * random.NextDouble()).ToArray();
        double[] b = Enumerable.Range(0, d).Select(_ => 0.01 + 3 * random.NextDouble()).ToArray();
        double expected = SquaredDistance(m1, m2) + a.Zip(b, (x, y) => (Math.Sqrt(x) - Math.Sqrt(y)) * (Math.Sqrt(x) - Math.Sqrt(y))).Sum();
        double actual = FrechetDistance.Compute(Stats(m1, Matrix<double>.Build.DenseOfDiagonalArray(a)), Stats(m2, Matrix<double>.Build.DenseOfDiagonalArray(b)));
        // Double-precision eigen-decompositions of well-conditioned matrices: ~1e-14 relative per eigenvalue; 1e-10 leaves room.
        Assert.That(actual, Is.EqualTo(expected).Within(1e-10 * Math.Max(1, expected)));
    }

    [TestCase(3)]
    [TestCase(32)]
    public void CommutingCovariancesMatchTheClosedForm(int d)
    {
        // S1 = Q diag(a) Qᵀ and S2 = Q diag(b) Qᵀ commute, and (S1 S2)^(1/2) = Q diag(sqrt(a b)) Qᵀ, so the distance is
        // the diagonal one: the rotation must not change it.
        var random = new Random(100 + d);
        var q = RandomRotation(d, random);
        double[] m1 = RandomVector(d, random), m2 = RandomVector(d, random);
        double[] a = Enumerable.Range(0, d).Select(_ => 0.01 + 2 * random.NextDouble()).ToArray();
        double[] b = Enumerable.Range(0, d).Select(_ => 0.01 + 2 * random.NextDouble()).ToArray();
        var s1 = q * Matrix<double>.Build.DenseOfDiagonalArray(a) * q.Transpose();
        var s2 = q * Matrix<double>.Build.DenseOfDiagonalArray(b) * q.Transpose();
        s1 = (s1 + s1.Transpose()) * 0.5;
        s2 = (s2 + s2.Transpose()) * 0.5;
        double expected = SquaredDistance(m1, m2) + a.Zip(b, (x, y) => (Math.Sqrt(x) - Math.Sqrt(y)) * (Math.Sqrt(x) - Math.Sqrt(y))).Sum();
        // The rotation adds rounding of order d * 1e-16 to each entry; 1e-9 relative is far above it.
        Assert.That(FrechetDistance.Compute(Stats(m1, s1), Stats(m2, s2)), Is.EqualTo(expected).Within(1e-9 * Math.Max(1, expected)));
    }

    [Test]
    public void NonCommutingTwoByTwoMatchesTheClosedForm()
    {
        // For a 2 x 2 matrix M with eigenvalues l1, l2 >= 0: tr(M^(1/2)) = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M)).
        var s1 = Matrix<double>.Build.DenseOfArray(new[,] { { 2.0, 0.9 }, { 0.9, 1.0 } });
        var s2 = Matrix<double>.Build.DenseOfArray(new[,] { { 0.5, -0.3 }, { -0.3, 1.5 } });
        Assert.That((s1 * s2 - s2 * s1).FrobeniusNorm(), Is.GreaterThan(0.5), "the pair must not commute");
        var product = s1 * s2;
        double traceSqrt = Math.Sqrt(product.Trace() + 2 * Math.Sqrt(product.Determinant()));
        double[] m1 = [0.3, -1.0], m2 = [1.0, 0.5];
        double expected = SquaredDistance(m1, m2) + s1.Trace() + s2.Trace() - 2 * traceSqrt;
        Assert.That(FrechetDistance.Compute(Stats(m1, s1), Stats(m2, s2)), Is.EqualTo(expected).Within(1e-12));
    }

    [TestCase(4)]
    [TestCase(20)]
    [TestCase(128)]
    public void NonCommutingCovariancesMatchIndependentComputations(int d)
    {
        var random = new Random(200 + d);
        double[] m1 = RandomVector(d, random), m2 = RandomVector(d, random);
        Matrix<double> s1 = RandomSpd(d, random), s2 = RandomSpd(d, random);
        Assert.That((s1 * s2 - s2 * s1).FrobeniusNorm(), Is.GreaterThan(1e-3), "the pair must not commute");
        double actual = FrechetDistance.Compute(Stats(m1, s1), Stats(m2, s2));
        double byEigenvalues = ReferenceDistance(m1, s1, m2, s2, TraceSqrtByProductEigenvalues);
        double byDenmanBeavers = ReferenceDistance(m1, s1, m2, s2, TraceSqrtByDenmanBeavers);
        TestContext.Out.WriteLine($"d = {d}: {actual:R} vs {byEigenvalues:R} (eigenvalues of S1 S2) and {byDenmanBeavers:R} (Denman-Beavers)");
        // The covariances have condition numbers of about 1e2-1e3 (eigenvalues from the 0.05 floor up to ~d/4); the
        // three routes agree to ~1e-12 relative, so 1e-8 relative of the traces is a safe margin.
        double tolerance = 1e-8 * (s1.Trace() + s2.Trace());
        Assert.That(actual, Is.EqualTo(byEigenvalues).Within(tolerance));
        Assert.That(actual, Is.EqualTo(byDenmanBeavers).Within(tolerance));
    }

    [Test]
    public void SingularCovariancesGiveTheRankDeficientAnswer()
    {
        // Features after a ReLU, or fewer samples than dimensions, give singular covariances. S1 = U Uᵀ of rank 3 in
        // d = 10; the eigenvalues of S1 S2 are then 7 zeros and 3 positives, which the product's eigen-solver finds
        // to ~1e-15 (the clamp of tiny negatives to 0 matters in both routes). S1 against itself is 0.
        const int d = 10;
        var random = new Random(7);
        var u = Matrix<double>.Build.Dense(d, 3, (_, _) => 2 * random.NextDouble() - 1);
        var s1 = u * u.Transpose();
        s1 = (s1 + s1.Transpose()) * 0.5;
        var s2 = RandomSpd(d, random);
        double[] m = RandomVector(d, random);
        double actual = FrechetDistance.Compute(Stats(m, s1), Stats(m, s2));
        double expected = ReferenceDistance(m, s1, m, s2, TraceSqrtByProductEigenvalues);
        // sqrt of eigenvalues rounded at 1e-15 contributes up to 7 sqrt(1e-15) ~ 2e-7 in either route.
        Assert.That(actual, Is.EqualTo(expected).Within(1e-6));
        Assert.That(FrechetDistance.Compute(Stats(m, s1), Stats(m, s1)), Is.EqualTo(0).Within(1e-6));
        Assert.That(FrechetDistance.Compute(Stats(m, s2), Stats(m, s1)), Is.EqualTo(actual).Within(1e-6), "the distance is symmetric");
    }

    [Test]
    public void SampleStatisticsAreTheUnbiasedMeanAndCovariance()
    {
        // Three points (1, 2), (3, 6), (5, 4): mean (3, 4); deviations x: -2, 0, 2 and y: -2, 2, 0, so with
        // denominator n - 1 = 2: var x = 8/2 = 4, var y = 8/2 = 4, cov = (4 + 0 + 0)/2 = 2.
        var stats = GaussianStatistics.FromSamples([1f, 2f, 3f, 6f, 5f, 4f], 3, 2);
        Assert.That(stats.Mean, Is.EqualTo(new[] { 3.0, 4.0 }));
        Assert.That(stats.Covariance, Is.EqualTo(new[] { 4.0, 2.0, 2.0, 4.0 }));
        Assert.That(stats.Count, Is.EqualTo(3));
    }

    [Test]
    public void BadInputsAreNamed()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => GaussianStatistics.FromSamples([1f, 2f], 1, 2))!.Message, Does.Contain("at least 2 vectors"));
        Assert.That(Assert.Throws<ArgumentException>(() => GaussianStatistics.FromSamples([1f, 2f, 3f], 2, 2))!.Message, Does.Contain("3 values are not 2 vectors of 2"));
        Assert.That(Assert.Throws<ArgumentException>(() => GaussianStatistics.FromSamples([1f, float.NaN, 3f, 4f], 2, 2))!.Message, Does.Contain("vector 0 has NaN"));
        Assert.That(Assert.Throws<ArgumentException>(() => new GaussianStatistics([0, 0], [1, 0.5, 0.4, 1]))!.Message, Does.Contain("not symmetric at (1, 0)"));
        Assert.That(Assert.Throws<ArgumentException>(() => new GaussianStatistics([0, 0], [1, 0, 0]))!.Message, Does.Contain("2 x 2 covariance"));
        var a = new GaussianStatistics([0.0], [1.0]);
        var b = new GaussianStatistics([0.0, 0.0], [1.0, 0, 0, 1]);
        Assert.That(Assert.Throws<ArgumentException>(() => FrechetDistance.Compute(a, b))!.Message, Does.Contain("dimensions 1 and 2"));
    }

    // n draws of N(mean, S) as float rows: mean + L z with L the Cholesky factor of S and z from Philox stream `seed`.
    private static float[] Draw(double[] mean, Matrix<double> s, int n, ulong seed)
    {
        int d = mean.Length;
        var l = s.Cholesky().Factor;
        var z = new float[n * d];
        PhiloxCpu.Fill(z, z.Length, RandomDistribution.Normal, seed, 0);
        var x = new float[n * d];
        for (int i = 0; i < n; i++)
            for (int r = 0; r < d; r++)
            {
                double v = mean[r];
                for (int c = 0; c <= r; c++) v += l[r, c] * z[i * d + c];
                x[i * d + r] = (float)v;
            }
        return x;
    }

    [Test]
    public void SampleEstimatesConvergeToTheClosedForm()
    {
        // Two non-commuting Gaussians in d = 4; the distance of sample statistics from n draws each has an O(1/n) bias
        // and an O(1/sqrt(n)) spread (delta method), so the mean absolute error over seeds shrinks about 10-fold from
        // n = 500 to n = 50,000. Measured over these 6 seeds: 0.065 and 0.0060 (true distance 1.37); the bounds are
        // 0.025 at n = 50,000 (4x the measured error, under 2% of the distance) and a shrink of at least 4x (measured 11x).
        const int d = 4;
        var random = new Random(11);
        double[] m1 = RandomVector(d, random), m2 = RandomVector(d, random);
        Matrix<double> s1 = RandomSpd(d, random, 0.2), s2 = RandomSpd(d, random, 0.2);
        double exact = FrechetDistance.Compute(Stats(m1, s1), Stats(m2, s2));
        double MeanError(int n) => Enumerable.Range(0, 6).Average(seed =>
        {
            var x = GaussianStatistics.FromSamples(Draw(m1, s1, n, 1000 + (ulong)seed), n, d);
            var y = GaussianStatistics.FromSamples(Draw(m2, s2, n, 2000 + (ulong)seed), n, d);
            return Math.Abs(FrechetDistance.Compute(x, y) - exact);
        });
        double small = MeanError(500), large = MeanError(50_000);
        TestContext.Out.WriteLine($"exact {exact:F4}; mean |error| {small:F4} at n = 500, {large:F4} at n = 50,000");
        Assert.That(large, Is.LessThan(0.025));
        Assert.That(small / large, Is.GreaterThan(4));
    }
}
