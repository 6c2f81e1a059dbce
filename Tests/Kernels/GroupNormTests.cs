using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Tests.Reference;
using NUnit.Framework;

namespace DiffusionCore.Tests.Kernels;

/// <summary>GroupNormCpu (with and without the fused SiLU) against NormReference and finite differences.</summary>
[TestFixture]
public sealed class GroupNormTests
{
    private const double Eps = 1e-5;

    // float32 tolerance, relative to the largest |reference| value of the tensor (at least 1). Every output
    // comes from the T-rounded inputs through O(1) float roundings per element (z, sigmoid: ~2 ulp for
    // Vector512.Exp) plus vector sums of at most 1024 terms per chunk folded into doubles; with magnitudes of
    // order 1-10 that stays near 1e-6. 1e-5 (about 170 ulp) leaves a 10x margin. dx is the difference
    // rstd*(dxhat - mean(dxhat) - xhat*mean(dxhat*xhat)) and cancels: it is only resolvable to the ulp of its
    // terms, so its scale also includes max rstd*|gamma*dy| (Problem.DxTermScale); when one group holds a single
    // value (M = 1) dx is exactly 0 but rstd = 1/sqrt(eps) ~ 316 and the float terms are ~500.
    private const double FloatTolerance = 1e-5;

    // float64 tolerance: the same operation count in double (unit roundoff 1.1e-16) stays below 1e-13.
    private const double DoubleTolerance = 1e-12;

    // N, C, HW, groups: groups 1; C = groups (one channel a group); HW = 1; odd HW (7x5 = 35, 17) that leave a
    // tail after the 16-wide (float) or 8-wide (double) vectors; N = 1 and 3; a 33x35 plane whose group block
    // (4620 values) spans several accumulation chunks and whose 6 blocks are split over the cores.
    private static readonly object[] Shapes =
    [
        new object[] { 1, 6, 35, 1 },
        new object[] { 3, 6, 35, 3 },
        new object[] { 3, 8, 17, 8 },
        new object[] { 1, 4, 1, 4 },
        new object[] { 2, 12, 1, 4 },
        new object[] { 3, 8, 33 * 35, 2 },
        new object[] { 2, 64, 16, 32 },
    ];

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (object[] s in Shapes)
        {
            yield return new TestCaseData(s[0], s[1], s[2], s[3], false);
            yield return new TestCaseData(s[0], s[1], s[2], s[3], true);
        }
    }

    [TestCaseSource(nameof(Cases))]
    public void FloatMatchesReference(int n, int c, int hw, int groups, bool silu)
    {
        var data = Problem.Random(n, c, hw, groups, seed: 1000 * n + 10 * c + hw, offset: 3.0);
        var r = data.Reference(silu);

        var y = new float[data.X.Length];
        var mean = new float[n * groups];
        var rstd = new float[n * groups];
        GroupNormCpu.Forward(n, c, hw, groups, Eps, ToFloat(data.X), ToFloat(data.Gamma), ToFloat(data.Beta), y, mean, rstd, silu);
        AssertClose(y, r.Y, FloatTolerance, "y");
        AssertClose(mean, r.Mean, FloatTolerance, "mean");
        AssertClose(rstd, r.Rstd, FloatTolerance, "rstd");

        var dx = new float[data.X.Length];
        var dgamma = new float[c];
        var dbeta = new float[c];
        GroupNormCpu.Backward(n, c, hw, groups, ToFloat(data.X), ToFloat(data.Gamma), ToFloat(data.Beta), mean, rstd,
            ToFloat(data.Dy), dx, dgamma, dbeta, silu);
        AssertClose(dx, r.Dx, FloatTolerance, "dx", data.DxTermScale(r.Rstd));
        AssertClose(dgamma, r.Dgamma, FloatTolerance, "dgamma");
        AssertClose(dbeta, r.Dbeta, FloatTolerance, "dbeta");
    }

    [TestCaseSource(nameof(Cases))]
    public void DoubleMatchesReference(int n, int c, int hw, int groups, bool silu)
    {
        var data = Problem.Random(n, c, hw, groups, seed: 7 + n + c + hw, offset: -2.0);
        var r = data.Reference(silu);

        var y = new double[data.X.Length];
        var mean = new double[n * groups];
        var rstd = new double[n * groups];
        GroupNormCpu.Forward(n, c, hw, groups, Eps, data.X, data.Gamma, data.Beta, y, mean, rstd, silu);
        AssertClose(y, r.Y, DoubleTolerance, "y");
        AssertClose(mean, r.Mean, DoubleTolerance, "mean");
        AssertClose(rstd, r.Rstd, DoubleTolerance, "rstd");

        var dx = new double[data.X.Length];
        var dgamma = new double[c];
        var dbeta = new double[c];
        GroupNormCpu.Backward(n, c, hw, groups, data.X, data.Gamma, data.Beta, mean, rstd, data.Dy, dx, dgamma, dbeta, silu);
        AssertClose(dx, r.Dx, DoubleTolerance, "dx", data.DxTermScale(r.Rstd));
        AssertClose(dgamma, r.Dgamma, DoubleTolerance, "dgamma");
        AssertClose(dbeta, r.Dbeta, DoubleTolerance, "dbeta");
    }

    /// <summary>
    /// Both backward passes (reference and fast, in double) against central differences of the reference
    /// forward for L = sum(dy * y). Step h = 1e-5: truncation error ~h^2 |L'''| ~ 1e-9 and cancellation error
    /// ~1e-16 |L| / h ~ 1e-10 for |L| ~ 10, so a tolerance of 1e-6 (relative to max(1, |gradient|)) is safe.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void BackwardMatchesFiniteDifferences(bool silu)
    {
        const int n = 2, c = 4, hw = 3, groups = 2;
        const double h = 1e-5, tolerance = 1e-6;
        var data = Problem.Random(n, c, hw, groups, seed: 42, offset: 0.5);
        double Loss(double[] x, double[] gamma, double[] beta)
        {
            var y = new double[x.Length];
            NormReference.GroupNormForward(n, c, hw, groups, Eps, x, gamma, beta, y, new double[n * groups], new double[n * groups], silu);
            double l = 0;
            for (int i = 0; i < y.Length; i++) l += data.Dy[i] * y[i];
            return l;
        }
        double[] Numeric(double[] v)
        {
            var grad = new double[v.Length];
            for (int i = 0; i < v.Length; i++)
            {
                double keep = v[i];
                v[i] = keep + h;
                double plus = Loss(data.X, data.Gamma, data.Beta);
                v[i] = keep - h;
                double minus = Loss(data.X, data.Gamma, data.Beta);
                v[i] = keep;
                grad[i] = (plus - minus) / (2 * h);
            }
            return grad;
        }
        double[] ndx = Numeric(data.X), ndgamma = Numeric(data.Gamma), ndbeta = Numeric(data.Beta);

        var r = data.Reference(silu);
        AssertClose(r.Dx, ndx, tolerance, "reference dx");
        AssertClose(r.Dgamma, ndgamma, tolerance, "reference dgamma");
        AssertClose(r.Dbeta, ndbeta, tolerance, "reference dbeta");

        var mean = new double[n * groups];
        var rstd = new double[n * groups];
        GroupNormCpu.Forward(n, c, hw, groups, Eps, data.X, data.Gamma, data.Beta, new double[data.X.Length], mean, rstd, silu);
        var dx = new double[data.X.Length];
        var dgamma = new double[c];
        var dbeta = new double[c];
        GroupNormCpu.Backward(n, c, hw, groups, data.X, data.Gamma, data.Beta, mean, rstd, data.Dy, dx, dgamma, dbeta, silu);
        AssertClose(dx, ndx, tolerance, "fast dx");
        AssertClose(dgamma, ndgamma, tolerance, "fast dgamma");
        AssertClose(dbeta, ndbeta, tolerance, "fast dbeta");
    }

    /// <summary>
    /// |mean| / std = 1e5 in float32: E[x^2] - E[x]^2 would lose every digit of the variance here. x - mean is
    /// exact near the mean (Sterbenz), so rstd, y and the gradients keep the general float tolerance.
    /// </summary>
    [Test]
    public void FloatStatisticsSurviveLargeMean()
    {
        const int n = 2, c = 4, hw = 50, groups = 2;
        var data = Problem.Random(n, c, hw, groups, seed: 5, offset: 1e4, spread: 0.1);
        var r = data.Reference(silu: true);
        var x = ToFloat(data.X);
        var y = new float[x.Length];
        var mean = new float[n * groups];
        var rstd = new float[n * groups];
        GroupNormCpu.Forward(n, c, hw, groups, Eps, x, ToFloat(data.Gamma), ToFloat(data.Beta), y, mean, rstd, fuseSilu: true);
        AssertClose(rstd, r.Rstd, FloatTolerance, "rstd");
        AssertClose(y, r.Y, FloatTolerance, "y");
        var dx = new float[x.Length];
        var dgamma = new float[c];
        var dbeta = new float[c];
        GroupNormCpu.Backward(n, c, hw, groups, x, ToFloat(data.Gamma), ToFloat(data.Beta), mean, rstd, ToFloat(data.Dy),
            dx, dgamma, dbeta, fuseSilu: true);
        AssertClose(dx, r.Dx, FloatTolerance, "dx", data.DxTermScale(r.Rstd));
        AssertClose(dgamma, r.Dgamma, FloatTolerance, "dgamma");
    }

    /// <summary>Very negative pre-activations: e^-z overflows, and y and dx must be exactly 0, never NaN.</summary>
    [Test]
    public void FusedSiluSaturatesWithoutNaN()
    {
        const int n = 1, c = 2, hw = 20, groups = 1;
        var data = Problem.Random(n, c, hw, groups, seed: 9, offset: 0);
        var gamma = new float[] { 1, 1 };
        var beta = new float[] { -1000, 1000 };
        var y = new float[n * c * hw];
        var mean = new float[1];
        var rstd = new float[1];
        var x = ToFloat(data.X);
        GroupNormCpu.Forward(n, c, hw, groups, Eps, x, gamma, beta, y, mean, rstd, fuseSilu: true);
        var dx = new float[y.Length];
        var dgamma = new float[c];
        var dbeta = new float[c];
        GroupNormCpu.Backward(n, c, hw, groups, x, gamma, beta, mean, rstd, ToFloat(data.Dy), dx, dgamma, dbeta, fuseSilu: true);
        Assert.That(y.Take(hw), Is.All.EqualTo(0f));
        Assert.That(y.Skip(hw).Zip(x.Skip(hw)).All(p => float.IsFinite(p.First) && p.First > 900), Is.True);
        Assert.That(dx.Concat(dgamma).Concat(dbeta).All(float.IsFinite), Is.True);
    }

    [Test]
    public void RejectsBadShapes()
    {
        var buffer = new float[64];
        var ex = Assert.Throws<KernelException>(() =>
            GroupNormCpu.Forward(1, 6, 4, 4, Eps, buffer, buffer, buffer, buffer, buffer, buffer, false));
        Assert.That(ex!.Kernel, Is.EqualTo("GroupNorm"));
        Assert.That(ex.Message, Does.Contain("C=6").And.Contain("groups=4"));

        var shortY = new float[10];
        ex = Assert.Throws<KernelException>(() =>
            GroupNormCpu.Forward(2, 4, 8, 2, Eps, buffer, buffer, buffer, shortY, buffer, buffer, false));
        Assert.That(ex!.Message, Does.Contain("y has 10 elements, needs 64"));

        ex = Assert.Throws<KernelException>(() =>
            GroupNormCpu.Backward(1, 4, 0, 2, buffer, buffer, buffer, buffer, buffer, buffer, buffer, buffer, buffer, false));
        Assert.That(ex!.Message, Does.Contain("HW=0"));
    }

    [Test]
    public void EmptyBatchZeroesParameterGradients()
    {
        var dgamma = new float[] { 1, 2 };
        var dbeta = new float[] { 3, 4 };
        GroupNormCpu.Backward<float>(0, 2, 5, 1, [], new float[2], new float[2], [], [], [], [], dgamma, dbeta, true);
        Assert.That(dgamma.Concat(dbeta), Is.All.EqualTo(0f));
    }

    private static float[] ToFloat(double[] a) => Array.ConvertAll(a, v => (float)v);

    /// <summary>|actual - expected| &lt;= tolerance * max(1, termScale, max |expected|) elementwise.</summary>
    private static void AssertClose<T>(T[] actual, double[] expected, double tolerance, string what, double termScale = 0)
        where T : struct, IConvertible
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double scale = Math.Max(Math.Max(1, termScale), expected.Length == 0 ? 0 : expected.Max(Math.Abs));
        double worst = 0;
        int worstAt = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double a = actual[i].ToDouble(null);
            double err = double.IsNaN(a) ? double.PositiveInfinity : Math.Abs(a - expected[i]);
            if (err > worst) (worst, worstAt) = (err, i);
        }
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance * scale),
            $"{what}: worst error {worst:G3} at {worstAt} (scale {scale:G3})");
    }

    private sealed record Problem(int N, int C, int Hw, int Groups, double[] X, double[] Gamma, double[] Beta, double[] Dy)
    {
        public static Problem Random(int n, int c, int hw, int groups, int seed, double offset, double spread = 2.0)
        {
            // Every value is representable in float32, so float and double kernels and the reference all see
            // the same inputs and a comparison measures the kernel's own error.
            var rng = new System.Random(seed);
            double U() => (float)(2 * rng.NextDouble() - 1);
            var x = new double[n * c * hw];
            for (int i = 0; i < x.Length; i++) x[i] = (float)(offset + spread * U());
            var gamma = new double[c];
            var beta = new double[c];
            for (int i = 0; i < c; i++)
            {
                gamma[i] = (float)(1.5 * U());
                beta[i] = U();
            }
            var dy = new double[x.Length];
            for (int i = 0; i < dy.Length; i++) dy[i] = U();
            return new Problem(n, c, hw, groups, x, gamma, beta, dy);
        }

        /// <summary>max over elements of rstd*|gamma_c*dy|, the size of the terms that cancel in dx (silu' &lt;= 1.1).</summary>
        public double DxTermScale(double[] rstd)
        {
            double scale = 0;
            int cg = C / Groups;
            for (int i = 0; i < X.Length; i++)
            {
                int ch = i / Hw % C, stat = i / (C * Hw) * Groups + ch / cg;
                scale = Math.Max(scale, 1.1 * rstd[stat] * Math.Abs(Gamma[ch] * Dy[i]));
            }
            return scale;
        }

        public Result Reference(bool silu)
        {
            var y = new double[X.Length];
            var mean = new double[N * Groups];
            var rstd = new double[N * Groups];
            NormReference.GroupNormForward(N, C, Hw, Groups, Eps, X, Gamma, Beta, y, mean, rstd, silu);
            var dx = new double[X.Length];
            var dgamma = new double[C];
            var dbeta = new double[C];
            NormReference.GroupNormBackward(N, C, Hw, Groups, Eps, X, Gamma, Beta, Dy, dx, dgamma, dbeta, silu);
            return new Result(y, mean, rstd, dx, dgamma, dbeta);
        }
    }

    private sealed record Result(double[] Y, double[] Mean, double[] Rstd, double[] Dx, double[] Dgamma, double[] Dbeta);
}
