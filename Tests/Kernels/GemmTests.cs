using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Gemm;
using DiffusionCore.Tests.Reference;
using NUnit.Framework;

namespace DiffusionCore.Tests.Kernels;

/// <summary>GemmCpu.Sgemm (packed, blocked, multithreaded) against the double-precision triple loop.</summary>
[TestFixture]
public class GemmTests
{
    /// <summary>
    /// Shapes (m, n, k): sizes 1, 7, 63, 65, 1000 that are not multiples of the 8 x 32 register tile; k
    /// above the 256-deep block (several depth blocks, beta applied once); m above the 384-row block; n above
    /// the 4096-column block (3 x 4100, 130 x 4200); the threaded paths (more than 4M multiply-adds per
    /// thread): blocks of rows shared out (400 x 70 x 600) and columns split for a short m (63 x 520 x 300).
    /// </summary>
    private static readonly int[][] Shapes =
    [
        [1, 1, 1], [7, 63, 65], [65, 7, 63], [63, 65, 1000], [1, 1000, 7], [1000, 1, 7], [33, 40, 2],
        [400, 70, 600], [63, 520, 300], [3, 4100, 20], [130, 4200, 3],
    ];

    /// <summary>
    /// Tolerance: |got - ref| &lt;= (sqrt(k) + 2) * 2^-23 * magnitude, magnitude = |alpha| sum_p |a_ip b_pj| +
    /// |beta c_ij|. Each of the k float roundings of the dot product is at most u = 2^-24 times a partial sum,
    /// itself at most the magnitude; for random signs they add like a random walk, about sqrt(k) u; 2^-23 = 2u
    /// gives a factor 2 margin, and the +2 covers the roundings of the alpha scaling and the beta update.
    /// An indexing or packing error gives an error of the size of the magnitude itself, far above this bound.
    /// </summary>
    private static void AssertClose(float[] c, int ldc, int m, int n, int k, double[] expected, double[] magnitude, string what)
    {
        double factor = (Math.Sqrt(k) + 2) * Math.Pow(2, -23);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double got = c[i * ldc + j], want = expected[i * n + j];
                double tol = factor * magnitude[i * n + j] + float.Epsilon;
                if (!(Math.Abs(got - want) <= tol))
                    Assert.Fail($"{what}: C[{i},{j}] = {got}, expected {want} (tolerance {tol:E2})");
            }
        }
    }

    private static float[] RandomMatrix(System.Random rng, int length)
    {
        var x = new float[length];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var s in Shapes)
            foreach (bool transA in new[] { false, true })
                foreach (bool transB in new[] { false, true })
                    foreach (float beta in new[] { 0f, 1f, 0.5f })
                        yield return new TestCaseData(s[0], s[1], s[2], transA, transB, beta);
    }

    [TestCaseSource(nameof(Cases))]
    public void MatchesReference(int m, int n, int k, bool transA, bool transB, float beta)
    {
        var rng = new System.Random(m * 7919 + n * 104729 + k * 31 + (transA ? 1 : 0) + (transB ? 2 : 0));
        const float alpha = -1.5f;
        int lda = transA ? m : k, ldb = transB ? k : n;
        var a = RandomMatrix(rng, m * k);
        var b = RandomMatrix(rng, k * n);
        // beta == 0 must overwrite C without reading it, so garbage (NaN) there must not leak through.
        var c = beta == 0 ? Enumerable.Repeat(float.NaN, m * n).ToArray() : RandomMatrix(rng, m * n);
        var (expected, magnitude) = GemmReference.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, n);
        GemmCpu.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, n);
        AssertClose(c, n, m, n, k, expected, magnitude, $"{m}x{n}x{k} tA={transA} tB={transB} beta={beta}");
    }

    [Test]
    public void AlphaOneBetaZeroMatchesReference([Values] bool transA, [Values] bool transB)
    {
        const int m = 65, n = 63, k = 257;
        var rng = new System.Random(11);
        int lda = transA ? m : k, ldb = transB ? k : n;
        var a = RandomMatrix(rng, m * k);
        var b = RandomMatrix(rng, k * n);
        var c = Enumerable.Repeat(float.NaN, m * n).ToArray();
        var (expected, magnitude) = GemmReference.Gemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, n);
        GemmCpu.Sgemm(transA, transB, m, n, k, 1f, a, lda, b, ldb, 0f, c, n);
        AssertClose(c, n, m, n, k, expected, magnitude, "alpha=1 beta=0");
    }

    /// <summary>
    /// Submatrices: every leading dimension is larger than its row, the gaps hold NaN (a read outside the
    /// submatrix would poison the result) and the gaps of C must come back untouched.
    /// </summary>
    [Test]
    public void SubmatricesWithLargeLeadingDimensions([Values] bool transA, [Values] bool transB, [Values(0f, 0.5f)] float beta)
    {
        const int m = 70, n = 45, k = 300;
        var rng = new System.Random(5);
        int aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n;
        int lda = aCols + 5, ldb = bCols + 3, ldc = n + 7;
        var a = Padded(rng, aRows, aCols, lda, float.NaN);
        var b = Padded(rng, bRows, bCols, ldb, float.NaN);
        const float sentinel = 12345f;
        var c = Padded(rng, m, n, ldc, sentinel);
        if (beta == 0) for (int i = 0; i < m; i++) Array.Fill(c, float.NaN, i * ldc, n);
        var (expected, magnitude) = GemmReference.Gemm(transA, transB, m, n, k, 0.75, a, lda, b, ldb, beta, c, ldc);
        GemmCpu.Sgemm(transA, transB, m, n, k, 0.75f, a, lda, b, ldb, beta, c, ldc);
        AssertClose(c, ldc, m, n, k, expected, magnitude, "submatrix");
        for (int i = 0; i < m; i++)
            for (int j = n; j < (i == m - 1 ? 0 : ldc); j++)
                Assert.That(c[i * ldc + j], Is.EqualTo(sentinel), $"C gap [{i},{j}] was written");
    }

    /// <summary>A rows x cols matrix with row stride ld, the gap after each row filled with <paramref name="gap"/>.</summary>
    private static float[] Padded(System.Random rng, int rows, int cols, int ld, float gap)
    {
        var x = new float[(rows - 1) * ld + cols];
        Array.Fill(x, gap);
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                x[i * ld + j] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    [Test]
    public void DepthZeroScalesC([Values(0f, 1f, 0.5f)] float beta)
    {
        const int m = 9, n = 37;
        var rng = new System.Random(3);
        var c = RandomMatrix(rng, m * n);
        var before = (float[])c.Clone();
        if (beta == 0) Array.Fill(c, float.NaN);
        GemmCpu.Sgemm(false, false, m, n, 0, 2f, [], 0, [], n, beta, c, n);
        for (int i = 0; i < c.Length; i++)
            Assert.That(c[i], Is.EqualTo(beta == 0 ? 0f : beta * before[i]), $"C[{i}]");
    }

    [Test]
    public void AlphaZeroScalesC()
    {
        const int m = 20, n = 40, k = 30;
        var rng = new System.Random(4);
        var a = RandomMatrix(rng, m * k);
        var b = RandomMatrix(rng, k * n);
        var c = RandomMatrix(rng, m * n);
        var before = (float[])c.Clone();
        GemmCpu.Sgemm(false, false, m, n, k, 0f, a, k, b, n, 0.5f, c, n);
        for (int i = 0; i < c.Length; i++) Assert.That(c[i], Is.EqualTo(0.5f * before[i]), $"C[{i}]");
    }

    [Test]
    public void EmptyOutputIsANoOp()
    {
        var c = new float[] { 1f, 2f };
        GemmCpu.Sgemm(false, false, 0, 2, 3, 1f, [], 3, new float[6], 2, 0f, c, 2);
        GemmCpu.Sgemm(false, false, 1, 0, 3, 1f, new float[3], 3, [], 0, 0f, c, 0);
        Assert.That(c, Is.EqualTo(new[] { 1f, 2f }));
    }

    /// <summary>
    /// Every element of C is summed in the same order whatever the split over threads (the split only
    /// chooses which thread computes a tile), so one thread and two give bit-identical results, both when
    /// blocks of rows are shared out (400 rows) and when the columns are split (40 rows).
    /// </summary>
    [Test]
    public void ResultDoesNotDependOnThreadCount([Values] bool transA, [Values(400, 40)] int m)
    {
        int n = m == 400 ? 300 : 2000, k = m == 400 ? 100 : 200;
        var rng = new System.Random(8);
        var a = RandomMatrix(rng, m * k);
        var b = RandomMatrix(rng, k * n);
        int lda = transA ? m : k;
        var c1 = new float[m * n];
        var c2 = new float[m * n];
        int saved = CpuParallel.Threads;
        try
        {
            CpuParallel.Threads = 1;
            GemmCpu.Sgemm(transA, false, m, n, k, 1f, a, lda, b, n, 0f, c1, n);
            CpuParallel.Threads = 2;
            GemmCpu.Sgemm(transA, false, m, n, k, 1f, a, lda, b, n, 0f, c2, n);
        }
        finally
        {
            CpuParallel.Threads = saved;
        }
        Assert.That(c2, Is.EqualTo(c1));
    }

    /// <summary>
    /// Deep products shared over threads pack op(B) over the whole depth at once, in blocks of columns
    /// narrowed to keep it L3-sized (here 192 of the 200 columns per block at k = 20000). The product is
    /// too large for the triple loop, so a few rows of C (first, last, and at block edges) are compared.
    /// </summary>
    [Test]
    public void DeepProductOverSeveralColumnBlocks([Values] bool transB)
    {
        const int m = 130, n = 200, k = 20000;
        var rng = new System.Random(21);
        var a = RandomMatrix(rng, m * k);
        var b = RandomMatrix(rng, k * n);
        var c = RandomMatrix(rng, m * n);
        var c0 = (float[])c.Clone();
        int ldb = transB ? k : n;
        int saved = CpuParallel.Threads;
        try
        {
            CpuParallel.Threads = 2;
            GemmCpu.Sgemm(false, transB, m, n, k, 0.5f, a, k, b, ldb, 0.25f, c, n);
        }
        finally
        {
            CpuParallel.Threads = saved;
        }
        foreach (int i in new[] { 0, 1, 63, 64, 127, 129 })
        {
            var (expected, magnitude) = GemmReference.Gemm(false, transB, 1, n, k, 0.5, a[(i * k)..((i + 1) * k)], k, b, ldb,
                0.25, c0[(i * n)..((i + 1) * n)], n);
            AssertClose(c[(i * n)..((i + 1) * n)], n, 1, n, k, expected, magnitude, $"row {i}");
        }
    }

    [Test]
    public void RejectsBadShapes()
    {
        var x = new float[12];
        Assert.Throws<KernelException>(() => GemmCpu.Sgemm(false, false, 3, 4, 3, 1f, x, 2, x, 4, 0f, x, 4));
        Assert.Throws<KernelException>(() => GemmCpu.Sgemm(false, false, 3, 4, 5, 1f, x, 5, x, 4, 0f, x, 4));
        Assert.Throws<KernelException>(() => GemmCpu.Sgemm(false, true, 3, 4, 3, 1f, x, 3, x, 3, 0f, x, 5));
        Assert.Throws<KernelException>(() => GemmCpu.Sgemm(false, false, -1, 4, 3, 1f, x, 3, x, 4, 0f, x, 4));
    }
}
