using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Resample;
using DiffusionCore.Tests.Reference;
using NUnit.Framework;

namespace DiffusionCore.Tests.Kernels;

/// <summary>ResampleCpu (nearest x2 upsampling, k x k average pooling, both backward) against NormReference.</summary>
[TestFixture]
public sealed class ResampleTests
{
    // Upsampling forward copies values: exact. Its backward adds four values, in float in the kernel and in
    // double in the reference, from float-representable inputs in [-1, 1]: at most 2 roundings of a sum below 4,
    // so the error is below 2 * 2^-24 * 4 ~ 5e-7; 1e-6 covers it.
    // Pooling adds k^2 values (k <= 3, a sum below 9) and scales by 1/k^2: at most k^2 + 1 roundings relative to
    // the sum's magnitude, ~10 * 6e-8 * 9 ~ 5e-6 before the 1/k^2 scale; 1e-6 after scaling holds with margin.
    private const double FloatTolerance = 1e-6;

    // The same sums in double: at most ~10 roundings of magnitudes below 9, i.e. ~1e-14 in the worst case.
    private const double DoubleTolerance = 1e-14;

    // N, C, H, W: all ones; odd sizes; a row wider than the kernels' stack scratch row (1024), using the heap
    // path; enough planes to be split over the cores.
    private static readonly object[] UpsampleShapes =
    [
        new object[] { 1, 1, 1, 1 },
        new object[] { 3, 5, 7, 5 },
        new object[] { 1, 2, 3, 600 },
        new object[] { 2, 40, 16, 16 },
    ];

    [TestCaseSource(nameof(UpsampleShapes))]
    public void UpsampleMatchesReference(int n, int c, int h, int w)
    {
        var x = RandomFloats(n * c * h * w, seed: n + c + h + w);
        var dy = RandomFloats(n * c * 4 * h * w, seed: 3 * (n + c + h + w));

        var y = new float[dy.Length];
        ResampleCpu.UpsampleNearest2x(n, c, h, w, ToFloat(x), y);
        AssertClose(y, NormReference.UpsampleNearest2x(n, c, h, w, x), 0, "y");

        var dx = new float[x.Length];
        ResampleCpu.UpsampleNearest2xBackward(n, c, h, w, ToFloat(dy), dx);
        AssertClose(dx, NormReference.UpsampleNearest2xBackward(n, c, h, w, dy), FloatTolerance, "dx");

        var dxd = new double[x.Length];
        ResampleCpu.UpsampleNearest2xBackward(n, c, h, w, dy, dxd);
        AssertClose(dxd, NormReference.UpsampleNearest2xBackward(n, c, h, w, dy), DoubleTolerance, "dx (double)");
    }

    // N, C, H, W, k: k = 1 (identity), 2 and 3; odd output sizes; a plane wider than the stack scratch row.
    private static readonly object[] PoolShapes =
    [
        new object[] { 1, 1, 1, 1, 1 },
        new object[] { 3, 5, 6, 10, 2 },
        new object[] { 1, 3, 9, 15, 3 },
        new object[] { 2, 2, 4, 2050, 2 },
        new object[] { 2, 40, 16, 16, 2 },
    ];

    [TestCaseSource(nameof(PoolShapes))]
    public void AvgPoolMatchesReference(int n, int c, int h, int w, int k)
    {
        var x = RandomFloats(n * c * h * w, seed: n + c + h + w + k);
        var dy = RandomFloats(n * c * (h / k) * (w / k), seed: 5 * (n + c + h + w + k));

        var y = new float[dy.Length];
        ResampleCpu.AvgPool(n, c, h, w, k, ToFloat(x), y);
        AssertClose(y, NormReference.AvgPool(n, c, h, w, k, x), FloatTolerance, "y");

        var dx = new float[x.Length];
        ResampleCpu.AvgPoolBackward(n, c, h, w, k, ToFloat(dy), dx);
        AssertClose(dx, NormReference.AvgPoolBackward(n, c, h, w, k, dy), FloatTolerance, "dx");

        var yd = new double[dy.Length];
        ResampleCpu.AvgPool(n, c, h, w, k, x, yd);
        AssertClose(yd, NormReference.AvgPool(n, c, h, w, k, x), DoubleTolerance, "y (double)");
    }

    /// <summary>
    /// The backward kernels are the adjoints of the forward ones: &lt;dy, F x&gt; = &lt;F^T dy, x&gt; in double for any
    /// x and dy (both maps are linear), to rounding (1e-12 relative to the sum of |terms|).
    /// </summary>
    [Test]
    public void BackwardIsAdjointOfForward()
    {
        const int n = 2, c = 3, h = 6, w = 9, k = 3;
        var x = RandomFloats(n * c * h * w, seed: 11);
        var up = new double[4 * x.Length];
        ResampleCpu.UpsampleNearest2x(n, c, h, w, x, up);
        var dyUp = RandomFloats(up.Length, seed: 12);
        var dxUp = new double[x.Length];
        ResampleCpu.UpsampleNearest2xBackward(n, c, h, w, dyUp, dxUp);
        Assert.That(Dot(dyUp, up), Is.EqualTo(Dot(dxUp, x)).Within(1e-12 * up.Length));

        var pooled = new double[x.Length / (k * k)];
        ResampleCpu.AvgPool(n, c, h, w, k, x, pooled);
        var dyPool = RandomFloats(pooled.Length, seed: 13);
        var dxPool = new double[x.Length];
        ResampleCpu.AvgPoolBackward(n, c, h, w, k, dyPool, dxPool);
        Assert.That(Dot(dyPool, pooled), Is.EqualTo(Dot(dxPool, x)).Within(1e-12 * x.Length));
    }

    [Test]
    public void PoolRejectsSizesNotDivisibleByK()
    {
        var buffer = new float[100];
        var ex = Assert.Throws<KernelException>(() => ResampleCpu.AvgPool(1, 1, 5, 4, 2, buffer, buffer));
        Assert.That(ex!.Kernel, Is.EqualTo("AvgPool"));
        Assert.That(ex.Message, Does.Contain("H=5").And.Contain("k=2"));
        ex = Assert.Throws<KernelException>(() => ResampleCpu.AvgPoolBackward(1, 1, 4, 4, 0, buffer, buffer));
        Assert.That(ex!.Message, Does.Contain("k must be >= 1"));
        ex = Assert.Throws<KernelException>(() => ResampleCpu.UpsampleNearest2x(1, 2, 3, 4, buffer, new float[95]));
        Assert.That(ex!.Message, Does.Contain("y has 95 elements, needs 96"));
    }

    private static double Dot(double[] a, double[] b) => a.Zip(b, (p, q) => p * q).Sum();

    /// <summary>Uniform values in [-1, 1), each representable in float32.</summary>
    private static double[] RandomFloats(int length, int seed)
    {
        var rng = new System.Random(seed);
        var a = new double[length];
        for (int i = 0; i < length; i++) a[i] = (float)(2 * rng.NextDouble() - 1);
        return a;
    }

    private static float[] ToFloat(double[] a) => Array.ConvertAll(a, v => (float)v);

    private static void AssertClose<T>(T[] actual, double[] expected, double tolerance, string what) where T : struct, IConvertible
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
            worst = Math.Max(worst, Math.Abs(actual[i].ToDouble(null) - expected[i]));
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), what);
    }
}
