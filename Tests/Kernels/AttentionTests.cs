using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Tests.Reference;
using NUnit.Framework;

namespace DiffusionCore.Tests.Kernels;

/// <summary>
/// AttentionCpu (flash-style, float32) against AttentionReference (full score matrix, double).
/// Errors are measured as max |kernel - reference| / max(1, max |reference|): inputs are O(1), so this is
/// the absolute error on outputs of natural size up to 1, and the relative error on larger ones.
/// </summary>
[TestFixture]
public class AttentionTests
{
    // Forward: each output is a softmax-weighted mean of N values after a D-term dot product, all in float32
    // (unit roundoff u = 6e-8). Worst-case bounds grow like (D + N) u, about 1e-5 for N <= 130, D <= 32;
    // observed at most 1.1e-7 (o and lse). 1e-5 stays valid when the GEMM changes its summation order.
    private const double ForwardTolerance = 1e-5;

    // Backward: P is recomputed from lse, then passes through two more products (dP, then dQ/dK), and
    // dS = P (dP - Delta) cancels when dP is close to Delta; observed at most 1e-7, bound as above x 2.
    private const double BackwardTolerance = 2e-5;

    // Scores up to ~1200 (q and k scaled by 30, lse reaches 1214): a score s carries an absolute float32 error
    // of about |s| u ~ 7e-5, which exp turns into a relative error of ~7e-5 in P; dQ and dK then multiply it
    // by |k|, |q| ~ 30 times the scale 0.18, so errors up to ~4e-4 are expected. Observed at most 9e-5.
    private const double LargeScoreTolerance = 2e-3;

    private static readonly object[] Shapes =
    [
        new object[] { 1, 1, 1 },
        new object[] { 1, 1, 5 },
        new object[] { 3, 7, 5 },
        new object[] { 1, 7, 1 },
        new object[] { 3, 65, 32 },
        new object[] { 1, 130, 5 },
        new object[] { 1, 130, 32 },
        new object[] { 3, 129, 1 },
    ];

    /// <summary>o and lse against the double reference on awkward shapes, outputs pre-filled with NaN.</summary>
    [TestCaseSource(nameof(Shapes))]
    public void Forward_MatchesReference(int batch, int n, int d)
    {
        var rng = new Random(1000 + batch * 10000 + n * 100 + d);
        var (q, k, v) = (Uniform(rng, batch * n * d), Uniform(rng, batch * n * d), Uniform(rng, batch * n * d));
        float scale = AttentionCpu.DefaultScale(d);
        var o = Filled(batch * n * d, float.NaN);
        var lse = Filled(batch * n, float.NaN);
        AttentionCpu.Forward(batch, n, d, scale, q, k, v, o, lse);

        var (oRef, lseRef) = (new double[o.Length], new double[lse.Length]);
        AttentionReference.Forward(batch, n, d, scale, D(q), D(k), D(v), oRef, lseRef);
        AssertClose(o, oRef, ForwardTolerance, "o");
        AssertClose(lse, lseRef, ForwardTolerance, "lse");
    }

    // Threads = 1 takes the path where each sequence accumulates its dQ in place; Threads = 4 with B < 4
    // takes the path with per-key-block dQ partials (when N spans more than one key block).
    /// <summary>dq, dk, dv against the double reference, through both dQ strategies.</summary>
    [TestCaseSource(nameof(Shapes))]
    public void Backward_MatchesReference(int batch, int n, int d)
    {
        foreach (int threads in new[] { 1, 4 })
        {
            var rng = new Random(2000 + batch * 10000 + n * 100 + d);
            int count = batch * n * d;
            var (q, k, v, dO) = (Uniform(rng, count), Uniform(rng, count), Uniform(rng, count), Uniform(rng, count));
            CheckBackward(batch, n, d, q, k, v, dO, threads, BackwardTolerance);
        }
    }

    /// <summary>Online-softmax stability: scores in the hundreds and thousands stay finite and accurate.</summary>
    [Test]
    public void LargeScores_StayFiniteAndMatchReference()
    {
        const int batch = 2, n = 130, d = 32;
        var rng = new Random(77);
        int count = batch * n * d;
        var q = Uniform(rng, count, 30f);
        var k = Uniform(rng, count, 30f);
        var (v, dO) = (Uniform(rng, count), Uniform(rng, count));
        float scale = AttentionCpu.DefaultScale(d);
        var o = new float[count];
        var lse = new float[batch * n];
        AttentionCpu.Forward(batch, n, d, scale, q, k, v, o, lse);
        Assert.That(o.Concat(lse).All(float.IsFinite), Is.True, "forward has non-finite values");
        Assert.That(lse.Max(), Is.GreaterThan(100f), "the test is meant to produce large scores");

        var (oRef, lseRef) = (new double[count], new double[batch * n]);
        AttentionReference.Forward(batch, n, d, scale, D(q), D(k), D(v), oRef, lseRef);
        AssertClose(o, oRef, LargeScoreTolerance, "o");
        AssertClose(lse, lseRef, LargeScoreTolerance, "lse");
        CheckBackward(batch, n, d, q, k, v, dO, CpuParallel.Threads, LargeScoreTolerance);
    }

    /// <summary>The forward result is bitwise the same on 1 and 4 threads.</summary>
    [Test]
    public void Forward_IsIndependentOfThreadCount()
    {
        const int batch = 3, n = 130, d = 5;
        var rng = new Random(5);
        int count = batch * n * d;
        var (q, k, v) = (Uniform(rng, count), Uniform(rng, count), Uniform(rng, count));
        float[] Run(int threads)
        {
            var o = new float[count];
            WithThreads(threads, () => AttentionCpu.Forward(batch, n, d, 0.7f, q, k, v, o, new float[batch * n]));
            return o;
        }
        Assert.That(Run(4), Is.EqualTo(Run(1)));
    }

    /// <summary>B = 0 or N = 0 is a no-op on empty spans.</summary>
    [Test]
    public void EmptySizes_DoNothing()
    {
        AttentionCpu.Forward(0, 5, 3, 1f, [], [], [], [], []);
        AttentionCpu.Backward(2, 0, 3, 1f, [], [], [], [], [], [], [], [], []);
    }

    /// <summary>Bad lengths, D = 0 and a NaN scale raise KernelException naming the shapes.</summary>
    [Test]
    public void WrongSizes_ThrowNamingTheShapes()
    {
        var x = new float[2 * 3 * 4];
        var ex = Assert.Throws<KernelException>(() => AttentionCpu.Forward(2, 3, 4, 0.5f, x, new float[23], x, x, new float[6]));
        Assert.That(ex!.Message, Does.Contain("AttentionForward").And.Contain("k has 23").And.Contain("[B=2, N=3, D=4] = 24"));
        ex = Assert.Throws<KernelException>(() => AttentionCpu.Backward(2, 3, 4, 0.5f, x, x, x, x, new float[5], x, x, x, x));
        Assert.That(ex!.Message, Does.Contain("AttentionBackward").And.Contain("lse has 5").And.Contain("[B=2, N=3] = 6"));
        Assert.Throws<KernelException>(() => AttentionCpu.Forward(1, 1, 0, 1f, [], [], [], [], [0f]));
        Assert.Throws<KernelException>(() => AttentionCpu.Forward(2, 3, 4, float.NaN, x, x, x, x, new float[6]));
    }

    /// <summary>
    /// The reference backward against central finite differences of the reference forward, on
    /// L = sum(o * dO). In double with h = 1e-5 the truncation error is O(h^2) ~ 1e-10 and the rounding
    /// error O(eps / h) ~ 1e-11, so 1e-7 leaves a wide margin while any wrong term (O(0.1)) fails.
    /// </summary>
    [Test]
    public void ReferenceBackward_MatchesFiniteDifferences()
    {
        const int batch = 2, n = 3, d = 2;
        const double scale = 0.8, h = 1e-5;
        var rng = new Random(11);
        int count = batch * n * d;
        double[] Rand() => Enumerable.Range(0, count).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var (q, k, v, dO) = (Rand(), Rand(), Rand(), Rand());
        var (dq, dk, dv) = (new double[count], new double[count], new double[count]);
        AttentionReference.Backward(batch, n, d, scale, q, k, v, dO, dq, dk, dv);

        double Loss()
        {
            var o = new double[count];
            AttentionReference.Forward(batch, n, d, scale, q, k, v, o, new double[batch * n]);
            return o.Zip(dO, (a, b) => a * b).Sum();
        }
        foreach (var (input, grad, name) in new[] { (q, dq, "dq"), (k, dk, "dk"), (v, dv, "dv") })
            for (int i = 0; i < count; i++)
            {
                double saved = input[i];
                input[i] = saved + h;
                double up = Loss();
                input[i] = saved - h;
                double down = Loss();
                input[i] = saved;
                Assert.That(grad[i], Is.EqualTo((up - down) / (2 * h)).Within(1e-7), $"{name}[{i}]");
            }
    }

    private static void CheckBackward(int batch, int n, int d, float[] q, float[] k, float[] v, float[] dO, int threads, double tolerance)
    {
        int count = batch * n * d;
        float scale = AttentionCpu.DefaultScale(d);
        var o = new float[count];
        var lse = new float[batch * n];
        // NaN-filled outputs: the kernel must overwrite every element, never read or accumulate into them.
        var (dq, dk, dv) = (Filled(count, float.NaN), Filled(count, float.NaN), Filled(count, float.NaN));
        WithThreads(threads, () =>
        {
            AttentionCpu.Forward(batch, n, d, scale, q, k, v, o, lse);
            AttentionCpu.Backward(batch, n, d, scale, q, k, v, o, lse, dO, dq, dk, dv);
        });
        var (dqRef, dkRef, dvRef) = (new double[count], new double[count], new double[count]);
        AttentionReference.Backward(batch, n, d, scale, D(q), D(k), D(v), D(dO), dqRef, dkRef, dvRef);
        AssertClose(dq, dqRef, tolerance, $"dq (threads {threads})");
        AssertClose(dk, dkRef, tolerance, $"dk (threads {threads})");
        AssertClose(dv, dvRef, tolerance, $"dv (threads {threads})");
    }

    private static void WithThreads(int threads, Action action)
    {
        int saved = CpuParallel.Threads;
        CpuParallel.Threads = threads;
        try { action(); }
        finally { CpuParallel.Threads = saved; }
    }

    private static void AssertClose(float[] actual, double[] expected, double tolerance, string name)
    {
        double maxErr = 0, maxRef = 1;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.That(float.IsFinite(actual[i]), Is.True, $"{name}[{i}] = {actual[i]}");
            maxErr = Math.Max(maxErr, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        TestContext.Out.WriteLine($"{name}: max error {maxErr:E2}, scale {maxRef:G4}, normalised {maxErr / maxRef:E2}");
        Assert.That(maxErr / maxRef, Is.LessThanOrEqualTo(tolerance), name);
    }

    private static float[] Uniform(Random rng, int count, float amplitude = 1f)
    {
        var a = new float[count];
        for (int i = 0; i < count; i++) a[i] = amplitude * (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    private static float[] Filled(int count, float value) => Enumerable.Repeat(value, count).ToArray();

    private static double[] D(float[] a) => Array.ConvertAll(a, x => (double)x);
}
