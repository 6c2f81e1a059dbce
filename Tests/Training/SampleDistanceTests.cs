using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Random;
using DiffusionCore.Tests.Reference;
using DiffusionCore.Training.Metrics;
using MathNet.Numerics.Distributions;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>Energy distance and MMD^2: against plain loops, closed forms for Gaussians, and invariances.</summary>
[TestFixture]
public sealed class SampleDistanceTests
{
    // n points of N(0, I_dim) with `shift` added to the first coordinate, from Philox stream `seed`.
    private static float[] Gaussian(int n, int dim, ulong seed, float shift = 0f)
    {
        var a = new float[n * dim];
        PhiloxCpu.Fill(a, a.Length, RandomDistribution.Normal, seed, 0);
        for (int i = 0; i < n; i++) a[i * dim] += shift;
        return a;
    }

    private static float[] RandomSet(int n, int dim, int seed)
    {
        var random = new System.Random(seed);
        return Enumerable.Range(0, n * dim).Select(_ => (float)(2 * random.NextDouble() - 1)).ToArray();
    }

    // Awkward sizes: the minimum of 2 points, dim 1, odd counts, dim 2 (the special-cased toy path),
    // and dim 40, which takes the SIMD distance path (dim >= 32).
    [TestCase(2, 2, 1)]
    [TestCase(3, 5, 3)]
    [TestCase(37, 50, 2)]
    [TestCase(129, 64, 17)]
    [TestCase(33, 31, 40)]
    public void MatchesReferenceLoops(int n, int m, int dim)
    {
        float[] x = RandomSet(n, dim, 1 + n), y = RandomSet(m, dim, 2 + m);
        for (int i = 0; i < y.Length; i++) y[i] += 0.3f;
        // Tolerance: both sides sum in double, but the SIMD path takes the distance in float32
        // (relative error ~1e-7 per distance), so 1e-5 relative bounds the difference with room to spare.
        double ed = SampleDistanceReference.EnergyDistance(x, y, dim);
        Assert.That(SampleDistance.EnergyDistance(x, y, dim), Is.EqualTo(ed).Within(1e-5 * Math.Max(1, Math.Abs(ed))));
        double mmd = SampleDistanceReference.Mmd2Rbf(x, y, dim, 0.7);
        Assert.That(SampleDistance.Mmd2Rbf(x, y, dim, 0.7), Is.EqualTo(mmd).Within(1e-5 * Math.Max(1, Math.Abs(mmd))));
    }

    [TestCase(1UL)]
    [TestCase(2UL)]
    [TestCase(3UL)]
    public void SameDistribution_GivesNearZero(ulong seed)
    {
        // Two independent draws of N(0, I_2), n = m = 1000. Under H0 the scaled U-statistic
        // (nm/(n+m)) ED_u tends to sum_k lambda_k (Z_k^2 - 1) with sum_k lambda_k = E|X - X'| = sqrt(pi)
        // (Székely and Rizzo 2013, section 5), so its standard deviation is sqrt(2 sum lambda_k^2) <= sqrt(2 pi):
        // sd(ED_u) <= 2.51 / 500 = 0.0050, and 5 of those give the bound 0.025. (Measured over 30 seeds
        // here: sd 0.0018, largest |ED_u| 0.0057.)
        const int n = 1000;
        float[] x = Gaussian(n, 2, 100 + seed), y = Gaussian(n, 2, 200 + seed);
        Assert.That(Math.Abs(SampleDistance.EnergyDistance(x, y, 2)), Is.LessThan(0.025));
        // MMD^2_u under H0 with h = 1: measured over 30 seeds, sd 0.00062 and largest |value| 0.0016; 5 sd.
        Assert.That(Math.Abs(SampleDistance.Mmd2Rbf(x, y, 2, 1.0)), Is.LessThan(0.0031));
    }

    [Test]
    public void ShiftedGaussians1d_MatchClosedForm()
    {
        // X ~ N(0, 1), Y ~ N(3, 1): X - Y ~ N(-3, 2), whose absolute value has the folded-normal mean
        // s sqrt(2/pi) exp(-d^2/(2 s^2)) + d (1 - 2 Phi(-d/s)) with s = sqrt 2, d = 3; and E|X - X'| = 2/sqrt(pi).
        const double shift = 3, s = 1.4142135623730951;
        double crossMean = s * Math.Sqrt(2 / Math.PI) * Math.Exp(-shift * shift / (2 * s * s)) + shift * (1 - 2 * Normal.CDF(0, 1, -shift / s));
        double expected = 2 * crossMean - 2 * (2 / Math.Sqrt(Math.PI));
        const int n = 1000;
        double ed = SampleDistance.EnergyDistance(Gaussian(n, 1, 7), Gaussian(n, 1, 8, (float)shift), 1);
        // Tolerance: the first-order (Hoeffding) projection gives Var ED_u ~ 4.4/n + 4.4/m, sd 0.094 at
        // n = m = 1000 (measured: sd 0.072 at n = m = 2000 over 30 seeds, i.e. 0.10 here); 5 sd = 0.5.
        Assert.That(ed, Is.EqualTo(expected).Within(0.5));
        Assert.That(expected, Is.EqualTo(3.777).Within(0.001));
    }

    [Test]
    public void ShiftedGaussians2d_MmdMatchesClosedForm()
    {
        // X ~ N(0, I_2), Y ~ N(delta, I_2) with |delta| = 1, kernel width h = 1 (sigma = 1, d = 2):
        // E k(X, X') = (h^2/(h^2 + 2 sigma^2))^(d/2) = 1/3 and E k(X, Y) = (1/3) exp(-|delta|^2/(2 (h^2 + 2 sigma^2))),
        // so MMD^2 = (2/3)(1 - exp(-1/6)) = 0.10235.
        double expected = 2.0 / 3.0 * (1 - Math.Exp(-1.0 / 6.0));
        const int n = 1000;
        double mmd = SampleDistance.Mmd2Rbf(Gaussian(n, 2, 11), Gaussian(n, 2, 12, 1f), 2, 1.0);
        // Measured over 30 seeds at n = m = 1000: mean 0.1027, sd 0.012; 5 sd = 0.06.
        Assert.That(mmd, Is.EqualTo(expected).Within(0.06));
        // A larger shift must give a larger distance (the same draws, moved further apart).
        double further = SampleDistance.Mmd2Rbf(Gaussian(n, 2, 11), Gaussian(n, 2, 12, 3f), 2, 1.0);
        Assert.That(further, Is.GreaterThan(mmd + 0.2));
    }

    [Test]
    public void IsSymmetricAndTranslationInvariant()
    {
        float[] x = Gaussian(300, 3, 21), y = Gaussian(250, 3, 22, 0.5f);
        double ed = SampleDistance.EnergyDistance(x, y, 3);
        double mmd = SampleDistance.Mmd2Rbf(x, y, 3, 1.3);
        // Swapping the sets only reorders the sums: agreement to rounding (1e-12 relative).
        Assert.That(SampleDistance.EnergyDistance(y, x, 3), Is.EqualTo(ed).Within(1e-12 * Math.Abs(ed)));
        Assert.That(SampleDistance.Mmd2Rbf(y, x, 3, 1.3), Is.EqualTo(mmd).Within(1e-12 * Math.Abs(mmd)));
        // A common translation by 0.25 (exact in float32 for these magnitudes up to ~1 ulp per coordinate)
        // changes distances by float rounding only: 1e-5 relative.
        float[] xs = x.Select(v => v + 0.25f).ToArray(), ys = y.Select(v => v + 0.25f).ToArray();
        Assert.That(SampleDistance.EnergyDistance(xs, ys, 3), Is.EqualTo(ed).Within(1e-5 * Math.Abs(ed)));
        Assert.That(SampleDistance.Mmd2Rbf(xs, ys, 3, 1.3), Is.EqualTo(mmd).Within(1e-5 * Math.Abs(mmd)));
    }

    [Test]
    public void IsIdenticalForOneAndTwoThreads()
    {
        float[] x = Gaussian(300, 2, 31), y = Gaussian(250, 2, 32, 0.2f);
        int saved = CpuParallel.Threads;
        try
        {
            CpuParallel.Threads = 1;
            double ed1 = SampleDistance.EnergyDistance(x, y, 2), mmd1 = SampleDistance.Mmd2Rbf(x, y, 2);
            CpuParallel.Threads = 2;
            Assert.That(SampleDistance.EnergyDistance(x, y, 2), Is.EqualTo(ed1));
            Assert.That(SampleDistance.Mmd2Rbf(x, y, 2), Is.EqualTo(mmd1));
        }
        finally
        {
            CpuParallel.Threads = saved;
        }
    }

    [Test]
    public void MedianHeuristic_MatchesGaussianMedianDistance()
    {
        // For X, X' ~ N(0, 1), |X - X'| = sqrt 2 |Z|, whose median is m = sqrt 2 Phi^-1(3/4) = 0.9539. The median
        // of the pairwise distances of N = 800 points is a U-quantile with asymptotic standard deviation
        // 2 sqrt(Var h1 / N) / f(m), h1(x) = Phi(x + m) - Phi(x - m) - 1/2 (Var h1 = 0.0266 by quadrature) and
        // f(m) = 0.449 the density of sqrt 2 |Z| at m: 0.026, so 5 sd = 0.13.
        double expected = Math.Sqrt(2) * Normal.InvCDF(0, 1, 0.75);
        float[] x = Gaussian(400, 1, 41), y = Gaussian(400, 1, 42);
        double h = SampleDistance.MedianHeuristicBandwidth(x, y, 1);
        Assert.That(h, Is.EqualTo(expected).Within(0.13));
        // A non-positive bandwidth selects the heuristic.
        Assert.That(SampleDistance.Mmd2Rbf(x, y, 1, 0), Is.EqualTo(SampleDistance.Mmd2Rbf(x, y, 1, h)));
    }

    [Test]
    public void RejectsBadArguments()
    {
        float[] ok = [0f, 1f, 2f, 3f];
        Assert.Throws<ArgumentException>(() => SampleDistance.EnergyDistance(ok, ok, 0));
        Assert.Throws<ArgumentException>(() => SampleDistance.EnergyDistance(ok, [1f, 2f, 3f], 2));
        Assert.Throws<ArgumentException>(() => SampleDistance.EnergyDistance(ok, [1f, 2f], 2));
        var ex = Assert.Throws<ArgumentException>(() => SampleDistance.Mmd2Rbf(ok, [1f, float.NaN, 2f, 3f], 2, 1));
        Assert.That(ex!.Message, Does.Contain("y[1]"));
        Assert.Throws<ArgumentException>(() => SampleDistance.Mmd2Rbf([1f, 1f, 1f, 1f], [1f, 1f, 1f, 1f], 2));
    }
}
