using NUnit.Framework;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Tests.Ilgpu;

/// <summary>
/// Every IBackend primitive and fused capability of a device backend against CpuBackend on the same inputs (rounded to the dtype first),
/// float32 and float64, at small sizes chosen to cross the kernels' boundaries: 0 and 1 elements, sizes that are
/// not multiples of a warp, a group or a GEMM tile, reductions long enough to take the two-pass path, and NaN,
/// +-Inf and signed zeros where an op defines them. Written once; a subclass names the device (ILGPU's CPU
/// accelerator always, CUDA where there is a GPU).
/// <para>
/// Tolerances, one rule per op, in units of the dtype's unit roundoff u (2^-24 for float32, 2^-53 for float64), and
/// the reason each is what it is:
/// <list type="bullet">
/// <item>exact (0): ops that round nothing or do one correctly rounded IEEE operation the same way on both sides:
/// negation, |x|, sign, step, ReLU, clamp, selections (Where, max, min, comparisons), copies, fills, +, -, *;
/// Philox uniforms and Rademacher signs (integer arithmetic and one exact scaling);</item>
/// <item>division, square root, reciprocal: 4u|y| (2 ulp: a GPU may use its approximate division and square root);
/// 1/sqrt: 8u|y| (two such roundings);</item>
/// <item>transcendentals (exp, log, tanh, sigmoid, SiLU, softplus, sin, cos, pow): 16u(|y|(1 + |x|) + 1): CPU uses
/// TensorPrimitives' vectorised approximations, the device MathF or the GPU's intrinsics, each a few ulp from the
/// true value; exp's argument scaling (x log2 e) adds u|x| relative error on a GPU, and the GPU's sin/cos/log
/// approximations bound the absolute (not relative) error, hence the absolute term;</item>
/// <item>a sum of n terms in another order: 2 n u Σ|terms| (Higham, Accuracy and Stability of Numerical Algorithms,
/// 2002, eq. 4.4: any order of recursive or pairwise summation is within γ_n Σ|x_i| of the exact sum, so two orders
/// are within twice that), used for Reduce Sum, GEMM (with the terms |alpha| |a||b| and |beta c|) and conv2d (the bound computed by convolving |x| with |w| in float64);</item>
/// <item>fused updates (Affine, Axpby, Adam): a few u times the sum of the magnitudes of the terms,
/// since a GPU may contract a multiply and an add into one FMA (one rounding fewer);</item>
/// <item>softmax: relative 16u(1 + |x - max|) for the exponential plus 2 cols u for the positive sum;</item>
/// <item>GroupNorm and attention: 1e-5 (float32) and 1e-12 (float64) relative to the largest |value| of the output
/// (at least 1), as Tests/Kernels/GroupNormTests and AttentionTests use for the CPU kernels against their references:
/// at these sizes every output accumulates under a hundred roundings (about 6e-6 in float32).</item>
/// </list>
/// </para>
/// </summary>
public abstract class BackendParityTests
{
    private const double Sentinel = 7777.0;
    private IBackend _device = null!;
    private IBackend _tiledDevice = null!;

    private static IBackend Cpu => CpuBackend.Instance;

    /// <summary>The backend under test, shared by every test of the fixture (its kernels compile once).</summary>
    protected abstract IBackend CreateDevice();

    /// <summary>
    /// The backend the tiled kernels run on (GEMM and the image ops, whose groups have 256 threads): the same device
    /// unless that one is kept to smaller groups.
    /// </summary>
    protected virtual IBackend CreateTiledDevice() => CreateDevice();

    /// <summary>
    /// Allowed error of FillRandom normals in units of u times (|y| + 1): 0 where the device evaluates Box-Muller's
    /// log, sqrt, sin and cos with the same .NET functions as CpuBackend, a few ulp on a GPU.
    /// </summary>
    protected abstract double NormalTolerance { get; }

    [OneTimeSetUp]
    public void AcquireDevices()
    {
        _device = CreateDevice();
        _tiledDevice = CreateTiledDevice();
    }

    /// <summary>The backend's kernels of capability <typeparamref name="T"/> (CpuBackend and IlgpuBackend have every one).</summary>
    private static T Fused<T>(IBackend backend) where T : class
        => backend.GetCapability<T>() ?? throw new AssertionException($"backend '{backend.Name}' lacks {typeof(T).Name}");

    /// <summary>|x| for finite x, else 0: an infinite input gives an exact (infinite or zero) output, whose error term must not be 0 * inf.</summary>
    private static double Magnitude(double x) => double.IsFinite(x) ? Math.Abs(x) : 0;

    private static double Unit(DType t) => t == DType.Float32 ? Math.Pow(2, -24) : Math.Pow(2, -53);

    private static double[] RandomArray(int seed, int n, double lo, double hi)
    {
        var rng = new System.Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * rng.NextDouble()).ToArray();
    }

    private static double[] Round(double[] x, DType t) => t == DType.Float32 ? x.Select(v => (double)(float)v).ToArray() : x;

    /// <summary>
    /// Uploads <paramref name="inputs"/> and sentinel-filled outputs of <paramref name="outputLengths"/> to a backend,
    /// runs <paramref name="op"/> on them (inputs first) and returns every buffer's final contents, for the device
    /// and for CpuBackend. The sentinel shows an element an op should not touch.
    /// </summary>
    private (double[][] Device, double[][] Cpu) Run(DType dtype, double[][] inputs, long[] outputLengths, Action<IBackend, DeviceBuffer[]> op, bool tiled = false)
        => (RunOn(tiled ? _tiledDevice : _device, dtype, inputs, outputLengths, op), RunOn(Cpu, dtype, inputs, outputLengths, op));

    private static double[][] RunOn(IBackend backend, DType dtype, double[][] inputs, long[] outputLengths, Action<IBackend, DeviceBuffer[]> op)
    {
        var buffers = new List<DeviceBuffer>();
        try
        {
            foreach (var data in inputs)
            {
                var b = backend.Allocate(data.Length, dtype, zero: false);
                buffers.Add(b);
                backend.Upload<double>(b, data);
            }
            foreach (long n in outputLengths)
            {
                var b = backend.Allocate(n, dtype, zero: false);
                buffers.Add(b);
                backend.Upload<double>(b, Enumerable.Repeat(Sentinel, (int)n).ToArray());
            }
            op(backend, buffers.ToArray());
            return buffers.Select(b =>
            {
                var host = new double[b.Length];
                backend.Download<double>(b, host);
                return host;
            }).ToArray();
        }
        finally
        {
            foreach (var b in buffers) b.Dispose();
        }
    }

    /// <summary>Elementwise |device - cpu| &lt;= tolerance(i); NaN must meet NaN and an infinity the same infinity.</summary>
    private static void AssertClose(string what, double[] device, double[] cpu, Func<int, double> tolerance)
    {
        Assert.That(device, Has.Length.EqualTo(cpu.Length), what);
        for (int i = 0; i < cpu.Length; i++)
        {
            double d = device[i], c = cpu[i];
            bool ok = double.IsNaN(c) ? double.IsNaN(d) : double.IsInfinity(c) ? d == c : Math.Abs(d - c) <= tolerance(i);
            if (!ok) Assert.Fail($"{what}[{i}]: device {d:R} vs cpu {c:R} (tolerance {tolerance(i):G3})");
        }
    }

    private static void AssertExact(string what, double[] device, double[] cpu) => AssertClose(what, device, cpu, _ => 0);

    // Inputs with the special values each elementwise op must handle like the CPU: zeros of both signs, +-1, NaN,
    // +-Inf, a tiny and a large magnitude, then random values; 41 elements (not a multiple of a warp).
    private static double[] ElementwiseInputs(int seed, double lo = -3, double hi = 3) =>
        [0.0, -0.0, 1.0, -1.0, double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1e-30, 30.0, -30.0, .. RandomArray(seed, 31, lo, hi)];

    private static double UnaryTolerance(UnaryOp op, double x, double y, DType t)
    {
        double u = Unit(t);
        return op switch
        {
            UnaryOp.Neg or UnaryOp.Abs or UnaryOp.Sign or UnaryOp.Step or UnaryOp.Relu or UnaryOp.Square => 0,
            UnaryOp.Sqrt or UnaryOp.Reciprocal => 4 * u * Math.Abs(y),
            UnaryOp.Rsqrt => 8 * u * Math.Abs(y),
            _ => 16 * u * (Math.Abs(y) * (1 + Magnitude(x)) + 1),
        };
    }

    [Test]
    public void Unary_MatchesCpu([Values] UnaryOp op, [Values] DType dtype)
    {
        var x = Round(ElementwiseInputs(1), dtype);
        var (dev, cpu) = Run(dtype, [x], [x.Length + 3], (b, v) => b.Unary(op, v[0], v[1], x.Length));
        AssertClose($"{op}", dev[1], cpu[1], i => i < x.Length ? UnaryTolerance(op, x[i], cpu[1][i], dtype) : 0);
    }

    [Test]
    public void Unary_InPlace_MatchesCpu([Values(UnaryOp.Exp, UnaryOp.Silu)] UnaryOp op)
    {
        var x = Round(RandomArray(2, 37, -2, 2), DType.Float32);
        var (dev, cpu) = Run(DType.Float32, [x], [], (b, v) => b.Unary(op, v[0], v[0], x.Length));
        AssertClose($"{op} in place", dev[0], cpu[0], i => UnaryTolerance(op, x[i], cpu[0][i], DType.Float32));
    }

    [Test]
    public void Affine_PowScalar_Clamp_Fill_MatchCpu([Values] DType dtype)
    {
        double u = Unit(dtype);
        var x = Round(ElementwiseInputs(3), dtype);
        var (dev, cpu) = Run(dtype, [x], [x.Length], (b, v) => b.Affine(v[0], v[1], x.Length, -1.7, 0.3));
        AssertClose("Affine", dev[1], cpu[1], i => 2 * u * (Math.Abs(1.7 * x[i]) + 0.3));

        foreach (double p in new[] { 2.0, 1.0, 0.5, 3.0, -1.5 })
        {
            (dev, cpu) = Run(dtype, [x], [x.Length], (b, v) => b.PowScalar(v[0], v[1], x.Length, p));
            AssertClose($"Pow {p}", dev[1], cpu[1], i => p is 1.0 or 2.0 ? 0 : 16 * u * (Math.Abs(cpu[1][i]) * (1 + Magnitude(p * Math.Log(Math.Abs(x[i])))) + 1));
        }

        (dev, cpu) = Run(dtype, [x], [x.Length], (b, v) => b.Clamp(v[0], v[1], x.Length, -0.5, double.PositiveInfinity));
        AssertExact("Clamp", dev[1], cpu[1]);
        (dev, cpu) = Run(dtype, [x], [x.Length], (b, v) => b.Clamp(v[0], v[1], x.Length, -1.0, 2.0));
        AssertExact("Clamp", dev[1], cpu[1]);

        (dev, cpu) = Run(dtype, [], [5], (b, v) => b.Fill(v[0], -2.25));
        AssertExact("Fill", dev[0], cpu[0]);
    }

    private static IEnumerable<TestCaseData> BinaryShapes()
    {
        // (shape, a strides, b strides, a length, b length): same shape, row + column broadcast, a scalar, a transposed
        // (permuted) operand, and an empty shape.
        yield return new TestCaseData(new[] { 5, 9 }, new long[] { 9, 1 }, new long[] { 9, 1 }, 45, 45).SetArgDisplayNames("same");
        yield return new TestCaseData(new[] { 5, 9 }, new long[] { 1, 0 }, new long[] { 0, 1 }, 5, 9).SetArgDisplayNames("outer");
        yield return new TestCaseData(new[] { 3, 4, 5 }, new long[] { 20, 5, 1 }, new long[] { 0, 0, 0 }, 60, 1).SetArgDisplayNames("scalar");
        yield return new TestCaseData(new[] { 4, 6 }, new long[] { 1, 4 }, new long[] { 6, 1 }, 24, 24).SetArgDisplayNames("transposed");
        yield return new TestCaseData(new[] { 3, 0 }, new long[] { 0, 1 }, new long[] { 0, 1 }, 1, 1).SetArgDisplayNames("empty");
    }

    [TestCaseSource(nameof(BinaryShapes))]
    public void Binary_MatchesCpu(int[] shape, long[] aStrides, long[] bStrides, int aLength, int bLength)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            // a and b contain the special values at different positions, so NaN/Inf meet finite values and each other.
            var a = Round(ElementwiseInputs(4).Concat(RandomArray(5, 64, -2, 2)).Take(aLength).ToArray(), dtype);
            var b = Round(RandomArray(6, 64, -2, 2).Concat(ElementwiseInputs(7)).Reverse().Take(bLength).ToArray(), dtype);
            int count = shape.Aggregate(1, (p, n) => p * n);
            foreach (var op in Enum.GetValues<BinaryOp>())
            {
                var (dev, cpu) = Run(dtype, [a, b], [count + 2], (be, v) => be.Binary(op, v[0], aStrides, v[1], bStrides, v[2], shape));
                double u = Unit(dtype);
                AssertClose($"{op} {dtype}", dev[2], cpu[2], i => op == BinaryOp.Div ? 4 * u * Math.Abs(cpu[2][i]) : 0);
            }
        }
    }

    [Test]
    public void Where_MatchesCpu([Values] DType dtype)
    {
        var cond = new double[] { 0, 1, -0.0, double.NaN, 2, 0, 1, -1, 0, 3, 0 };
        var a = Round(RandomArray(8, cond.Length, -1, 1), dtype);
        var b = Round(RandomArray(9, cond.Length, -1, 1), dtype);
        var (dev, cpu) = Run(dtype, [cond, a, b], [cond.Length], (be, v) => be.Where(v[0], v[1], v[2], v[3], cond.Length));
        AssertExact("Where", dev[3], cpu[3]);
    }

    private static IEnumerable<TestCaseData> ReduceShapes()
    {
        yield return new TestCaseData(3, 5, 1).SetArgDisplayNames("rows");
        yield return new TestCaseData(1, 1500, 1).SetArgDisplayNames("two-pass");
        yield return new TestCaseData(2, 7, 3).SetArgDisplayNames("strided-rows");
        yield return new TestCaseData(2, 5, 1100).SetArgDisplayNames("columns");
        yield return new TestCaseData(2, 0, 3).SetArgDisplayNames("empty-range");
        yield return new TestCaseData(0, 4, 2).SetArgDisplayNames("no-outputs");
        yield return new TestCaseData(1, 1, 1).SetArgDisplayNames("single");
    }

    [TestCaseSource(nameof(ReduceShapes))]
    public void Reduce_MatchesCpu(int outer, int reduce, int inner)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomArray(10, outer * reduce * inner, -1, 1), dtype);
            if (x.Length > 7) x[7] = double.NaN;
            int outputs = outer * inner;
            var (dev, cpu) = Run(dtype, [x], [outputs], (b, v) => b.Reduce(ReduceOp.Max, v[0], v[1], outer, reduce, inner));
            AssertExact($"Max {dtype}", dev[1], cpu[1]);

            if (x.Length > 7) x[7] = 0.5;
            (dev, cpu) = Run(dtype, [x], [outputs], (b, v) => b.Reduce(ReduceOp.Sum, v[0], v[1], outer, reduce, inner));
            double u = Unit(dtype);
            AssertClose($"Sum {dtype}", dev[1], cpu[1], o =>
            {
                double abs = 0;
                for (int r = 0; r < reduce; r++) abs += Math.Abs(x[(o / inner * reduce + r) * inner + o % inner]);
                return 2 * reduce * u * abs;
            });
        }
    }

    [TestCase(3, 1)]
    [TestCase(2, 100)]
    [TestCase(2, 37)]
    public void Softmax_MatchesCpu(int rows, int cols)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var x = Round(RandomArray(11, rows * cols, -6, 6), dtype);
            // A row of -inf (softmax 0/0 = NaN on both sides) and a -inf entry in a finite row.
            if (cols > 1)
            {
                for (int j = 0; j < cols; j++) x[j] = double.NegativeInfinity;
                x[cols + 1] = double.NegativeInfinity;
            }
            double u = Unit(dtype);
            foreach (bool log in new[] { false, true })
            {
                var (dev, cpu) = Run(dtype, [x], [rows * cols], (b, v) => Fused<ISoftmaxKernels>(b).Softmax(v[0], v[1], rows, cols, log));
                AssertClose($"Softmax log={log} {dtype}", dev[1], cpu[1], i =>
                {
                    double max = x.Skip(i / cols * cols).Take(cols).Max();
                    double spread = Magnitude(x[i] - max);
                    return log
                        ? 16 * u * (1 + Math.Abs(cpu[1][i])) + 2 * cols * u
                        : (16 * u * (1 + spread) + 2 * cols * u) * Math.Abs(cpu[1][i]);
                });
            }
        }
    }

    private static IEnumerable<TestCaseData> GemmCases()
    {
        // (transA, transB, batch, m, n, k, float64 too): every transpose combination on one tile with a depth that
        // crosses two 8-deep stages and ends mid-stage; a product over four 128 x 128 tiles with partial edge tiles; a
        // 1 x 1 x 1 product; a batch. Every GEMM group is 256 emulated threads here, so float64 (the same generic
        // kernel) runs on the smaller cases only.
        foreach (bool ta in new[] { false, true })
            foreach (bool tb in new[] { false, true })
                yield return new TestCaseData(ta, tb, 1, 33, 7, 19, true).SetArgDisplayNames($"ta={ta}", $"tb={tb}", "33x7x19");
        yield return new TestCaseData(true, false, 1, 129, 131, 9, false).SetArgDisplayNames("ta=True", "tb=False", "129x131x9");
        yield return new TestCaseData(false, false, 1, 1, 1, 1, true).SetArgDisplayNames("1x1x1");
        yield return new TestCaseData(false, true, 3, 5, 7, 17, true).SetArgDisplayNames("batched 3 x 5x7x17");
    }

    [TestCaseSource(nameof(GemmCases))]
    public void Gemm_MatchesCpu(bool transA, bool transB, int batch, int m, int n, int k, bool float64)
    {
        // float32 with beta = 0 (C holds a NaN that must not be read) and with alpha, beta both general; float64 once.
        var runs = new List<(DType, double, double)> { (DType.Float32, 1.0, 0.0), (DType.Float32, -0.5, 1.5) };
        if (float64) runs.Add((DType.Float64, -0.5, 1.5));
        foreach (var (dtype, alpha, beta) in runs)
        {
            // A batched with its stride and an offset of 2, B shared by every batch entry (stride 0), C batched.
            long aStride = (long)m * k + 1, cStride = (long)m * n;
            var a = Round(RandomArray(12, (int)(2 + batch * aStride), -1, 1), dtype);
            var b = Round(RandomArray(13, k * n, -1, 1), dtype);
            var c = Round(RandomArray(14, (int)(batch * cStride), -1, 1), dtype);
            if (beta == 0) c[0] = double.NaN;
            var (dev, cpu) = Run(dtype, [a, b, c], [], (be, v) =>
                be.Gemm(transA, transB, batch, m, n, k, alpha, v[0], 2, aStride, v[1], 0, 0, beta, v[2], 0, cStride), tiled: true);
            double u = Unit(dtype);
            AssertClose($"Gemm {dtype} alpha={alpha} beta={beta}", dev[2], cpu[2], idx =>
            {
                int bi = idx / (m * n), i = idx % (m * n) / n, j = idx % n;
                double abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double av = a[2 + bi * aStride + (transA ? p * m + i : i * k + p)];
                    double bv = b[transB ? j * k + p : p * n + j];
                    abs += Math.Abs(av * bv);
                }
                return 2 * (k + 2) * u * (Math.Abs(alpha) * abs + (beta == 0 ? 0 : Math.Abs(beta * c[idx])));
            });
        }
    }

    [Test]
    public void Gemm_ZeroAlphaOrDepth_ScalesCWithoutReadingAB()
    {
        var a = new[] { double.NaN, 1, 2, 3, 4, 5 };
        var b = new[] { 1.0, double.NaN, 2, 3, 4, 5 };
        var c = new[] { 1.0, -2, double.NaN, 4 };
        var (dev, cpu) = Run(DType.Float32, [a, b, c], [], (be, v) => be.Gemm(false, false, 1, 2, 2, 3, 0.0, v[0], 0, 0, v[1], 0, 0, 2.0, v[2], 0, 0), tiled: true);
        AssertExact("alpha = 0", dev[2], cpu[2]);
        (dev, cpu) = Run(DType.Float32, [a, b, c], [], (be, v) => be.Gemm(false, false, 1, 2, 2, 0, 1.0, v[0], 0, 0, v[1], 0, 0, 0.0, v[2], 0, 0), tiled: true);
        AssertExact("k = 0, beta = 0", dev[2], cpu[2]);
    }

    private static IEnumerable<TestCaseData> CopyCases()
    {
        // (shape, src offset, src strides, dst offset, dst strides, src length, dst length)
        yield return new TestCaseData(new[] { 2, 3, 4 }, 0L, new long[] { 1, 8, 2 }, 0L, new long[] { 12, 4, 1 }, 24, 24).SetArgDisplayNames("permute");
        yield return new TestCaseData(new[] { 3, 2 }, 5L, new long[] { 7, 1 }, 0L, new long[] { 2, 1 }, 30, 6).SetArgDisplayNames("slice");
        yield return new TestCaseData(new[] { 4, 5 }, 2L, new long[] { 0, 1 }, 0L, new long[] { 5, 1 }, 8, 20).SetArgDisplayNames("broadcast");
        yield return new TestCaseData(new[] { 2, 3 }, 0L, new long[] { 3, 1 }, 9L, new long[] { 5, 1 }, 6, 25).SetArgDisplayNames("pad");
        yield return new TestCaseData(new[] { 0, 3 }, 0L, new long[] { 3, 1 }, 0L, new long[] { 3, 1 }, 1, 1).SetArgDisplayNames("empty");
    }

    [TestCaseSource(nameof(CopyCases))]
    public void CopyStrided_MatchesCpu(int[] shape, long srcOffset, long[] srcStrides, long dstOffset, long[] dstStrides, int srcLength, int dstLength)
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var src = Round(RandomArray(15, srcLength, -1, 1), dtype);
            var (dev, cpu) = Run(dtype, [src], [dstLength], (b, v) => b.CopyStrided(v[0], srcOffset, srcStrides, v[1], dstOffset, dstStrides, shape));
            AssertExact($"CopyStrided {dtype}", dev[1], cpu[1]);
        }
    }

    [Test]
    public void FillRandom_MatchesCpu([Values] RandomDistribution distribution, [Values] DType dtype, [Values(0, 1, 13)] int length)
    {
        foreach (var (seed, offset) in new[] { (42UL, 0UL), (0xDEADBEEFCAFEUL, 1UL << 40) })
        {
            var (dev, cpu) = Run(dtype, [], [length], (b, v) => b.FillRandom(v[0], distribution, seed, offset));
            double u = Unit(DType.Float32);
            AssertClose($"{distribution} seed {seed}", dev[0], cpu[0], i => distribution == RandomDistribution.Normal ? NormalTolerance * u * (Math.Abs(cpu[0][i]) + 1) : 0);
        }
    }

    [Test]
    public void Axpby_MatchesCpu([Values] DType dtype)
    {
        double u = Unit(dtype);
        var x = Round(RandomArray(16, 45, -2, 2), dtype);
        var y = Round(RandomArray(17, 45, -2, 2), dtype);
        var (dev, cpu) = Run(dtype, [x, y], [], (b, v) => Fused<IOptimizerKernels>(b).Axpby(v[0], v[1], 40, 0.3, -1.25));
        AssertClose("Axpby", dev[1], cpu[1], i => 3 * u * (Math.Abs(0.3 * x[i]) + Math.Abs(1.25 * y[i])));
    }

    [Test]
    public void AdamUpdate_MatchesCpu([Values] DType dtype, [Values] bool decoupled)
    {
        double u = Unit(dtype);
        var p = Round(RandomArray(19, 37, -1, 1), dtype);
        var g = Round(RandomArray(20, 37, -1, 1), dtype);
        var m = Round(RandomArray(21, 37, -0.1, 0.1), dtype);
        var v = Round(RandomArray(22, 37, 0, 0.01), dtype);
        var step = new AdamStep(1e-2, 0.9, 0.999, 1e-8, 0.05, decoupled, 1 - Math.Pow(0.9, 3), 1 - Math.Pow(0.999, 3));
        var (dev, cpu) = Run(dtype, [p, g, m, v], [], (b, x) => Fused<IOptimizerKernels>(b).AdamUpdate(x[0], x[1], x[2], x[3], 37, step));
        // Each new moment is two products and a sum (3u of its terms); the parameter adds a square root and a
        // division on the (relatively) perturbed moments: 32u of |p| plus lr times the step's size.
        AssertClose("m", dev[2], cpu[2], i => 8 * u * (Math.Abs(m[i]) + Math.Abs(g[i]) + Math.Abs(p[i])));
        AssertClose("v", dev[3], cpu[3], i => 8 * u * (Math.Abs(v[i]) + Math.Pow(Math.Abs(g[i]) + Math.Abs(p[i]), 2)));
        AssertClose("p", dev[0], cpu[0], i =>
        {
            double mHat = Math.Abs(cpu[2][i]) / step.BiasCorrection1, vHat = Math.Abs(cpu[3][i]) / step.BiasCorrection2;
            return 32 * u * (Math.Abs(p[i]) + step.LearningRate * mHat / (Math.Sqrt(vHat) + step.Epsilon));
        });
    }

    [Test]
    public void UploadDownload_ConvertAndRespectOffsets()
    {
        using var f = _device.Allocate(6, DType.Float32);
        _device.Upload<double>(f, [1.0 / 3, 2.5], offset: 3);
        var back = new double[6];
        _device.Download<double>(f, back);
        Assert.That(back, Is.EqualTo(new[] { 0, 0, 0, (double)(1f / 3), 2.5, 0 }));
        using var d = _device.Allocate(3, DType.Float64);
        _device.Upload<float>(d, [0.1f, -2f, 3f]);
        var part = new float[2];
        _device.Download<float>(d, part, offset: 1);
        Assert.That(part, Is.EqualTo(new[] { -2f, 3f }));
    }

    [Test]
    public void Errors_NameTheKernel()
    {
        using var mine = _device.Allocate(4, DType.Float32);
        using var other = Cpu.Allocate(4, DType.Float32);
        using var wide = _device.Allocate(4, DType.Float64);
        Assert.That(() => _device.Unary(UnaryOp.Exp, other, mine, 4), Throws.TypeOf<KernelException>().With.Message.Contains("Unary").And.Message.Contains("cpu"));
        Assert.That(() => Fused<IOptimizerKernels>(_device).Axpby(mine, wide, 4, 1, 1), Throws.TypeOf<KernelException>().With.Message.Contains("mixed dtypes"));
        Assert.That(() => _device.Affine(mine, mine, 5, 1, 0), Throws.TypeOf<KernelException>().With.Message.Contains("count 5"));
        Assert.That(() => _device.Binary(BinaryOp.Add, mine, [1, 4], mine, [4, 1], mine, [4, 4]), Throws.TypeOf<KernelException>().With.Message.Contains("Binary"));
        Assert.That(() => _device.Gemm(false, false, 2, 2, 2, 1, 1, mine, 0, 2, mine, 0, 0, 0, mine, 0, 4), Throws.TypeOf<KernelException>().With.Message.Contains("C:"));
    }

    // Image primitives: the same functions as CpuBackend.ImageOps, compared at small NCHW shapes.

    private static readonly Conv2dShape[] ConvShapes =
    [
        new(N: 2, Cin: 3, H: 5, W: 6, Cout: 4, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 1, Cin: 2, H: 7, W: 5, Cout: 3, KH: 3, KW: 3, Stride: 2, Pad: 1),
        new(N: 3, Cin: 5, H: 2, W: 3, Cout: 2, KH: 1, KW: 1, Stride: 1, Pad: 0),
    ];

    /// <summary>Runs a conv pass on CpuBackend in float64 over |inputs|: Σ|terms| of each output, for the summation bound.</summary>
    private static double[] AbsolutePass(Conv2dShape s, double[] first, double[] second, long outputLength, Action<IBackend, Conv2dShape, DeviceBuffer, DeviceBuffer, DeviceBuffer> pass)
        => RunOn(Cpu, DType.Float64, [first.Select(Math.Abs).ToArray(), second.Select(Math.Abs).ToArray()], [outputLength],
            (b, v) => pass(b, s, v[0], v[1], v[2]))[2];

    [Test]
    public void Conv2d_ForwardAndBackward_MatchCpu([Values] DType dtype, [Range(0, 2)] int shapeIndex)
    {
        var s = ConvShapes[shapeIndex];
        double u = Unit(dtype);
        var x = Round(RandomArray(25, (int)s.InputLength, -1, 1), dtype);
        var w = Round(RandomArray(26, (int)s.WeightLength, -1, 1), dtype);
        var bias = Round(RandomArray(27, s.Cout, -1, 1), dtype);
        var dy = Round(RandomArray(28, (int)s.OutputLength, -1, 1), dtype);
        int spatial = s.OutH * s.OutW;

        var (dev, cpu) = Run(dtype, [x, w, bias], [s.OutputLength], (b, v) => Fused<IConvolutionKernels>(b).Conv2dForward(s, v[0], v[1], v[2], v[3]), tiled: true);
        var bound = AbsolutePass(s, x, w, s.OutputLength, (b, sh, p, q, r) => Fused<IConvolutionKernels>(b).Conv2dForward(sh, p, q, null, r));
        int depth = s.Cin * s.KH * s.KW;
        AssertClose("conv y", dev[3], cpu[3], i => 2 * (depth + 1) * u * (bound[i] + Math.Abs(bias[i / spatial % s.Cout])));
        (dev, cpu) = Run(dtype, [x, w], [s.OutputLength], (b, v) => Fused<IConvolutionKernels>(b).Conv2dForward(s, v[0], v[1], null, v[2]), tiled: true);
        AssertClose("conv y without bias", dev[2], cpu[2], i => 2 * depth * u * bound[i]);

        (dev, cpu) = Run(dtype, [dy, w], [s.InputLength], (b, v) => Fused<IConvolutionKernels>(b).Conv2dBackwardInput(s, v[0], v[1], v[2]), tiled: true);
        bound = AbsolutePass(s, dy, w, s.InputLength, (b, sh, p, q, r) => Fused<IConvolutionKernels>(b).Conv2dBackwardInput(sh, p, q, r));
        AssertClose("conv dx", dev[2], cpu[2], i => 2 * s.Cout * s.KH * s.KW * u * bound[i]);

        (dev, cpu) = Run(dtype, [x, dy], [s.WeightLength, s.Cout], (b, v) => Fused<IConvolutionKernels>(b).Conv2dBackwardWeight(s, v[0], v[1], v[2], v[3]), tiled: true);
        bound = AbsolutePass(s, x, dy, s.WeightLength, (b, sh, p, q, r) => Fused<IConvolutionKernels>(b).Conv2dBackwardWeight(sh, p, q, r, null));
        int batchDepth = s.N * spatial;
        AssertClose("conv dw", dev[2], cpu[2], i => 2 * batchDepth * u * bound[i]);
        AssertClose("conv db", dev[3], cpu[3], c =>
            2 * batchDepth * u * Enumerable.Range(0, s.N).Sum(n => dy.Skip((n * s.Cout + c) * spatial).Take(spatial).Sum(Math.Abs)));
    }

    private static double RelativeTolerance(DType t) => t == DType.Float32 ? 1e-5 : 1e-12;

    private static void AssertRelative(string what, double[] device, double[] cpu, DType t)
    {
        double scale = Math.Max(1, cpu.Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max());
        AssertClose(what, device, cpu, _ => RelativeTolerance(t) * scale);
    }

    [Test]
    public void GroupNorm_ForwardAndBackward_MatchCpu([Values] DType dtype, [Values] bool fuseSilu)
    {
        const int n = 2, c = 6, spatial = 7, groups = 3;
        var x = Round(RandomArray(29, n * c * spatial, -2, 3), dtype);
        var gamma = Round(RandomArray(30, c, 0.5, 1.5), dtype);
        var beta = Round(RandomArray(31, c, -0.5, 0.5), dtype);
        var dy = Round(RandomArray(32, n * c * spatial, -1, 1), dtype);
        var (dev, cpu) = Run(dtype, [x, gamma, beta], [x.Length, n * groups, n * groups],
            (b, v) => Fused<IGroupNormKernels>(b).GroupNormForward(n, c, spatial, groups, 1e-5, v[0], v[1], v[2], v[3], v[4], v[5], fuseSilu), tiled: true);
        AssertRelative("y", dev[3], cpu[3], dtype);
        AssertRelative("mean", dev[4], cpu[4], dtype);
        AssertRelative("rstd", dev[5], cpu[5], dtype);
        var mean = cpu[4];
        var rstd = cpu[5];
        (dev, cpu) = Run(dtype, [x, gamma, beta, mean, rstd, dy], [x.Length, c, c],
            (b, v) => Fused<IGroupNormKernels>(b).GroupNormBackward(n, c, spatial, groups, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], fuseSilu), tiled: true);
        AssertRelative("dx", dev[6], cpu[6], dtype);
        AssertRelative("dgamma", dev[7], cpu[7], dtype);
        AssertRelative("dbeta", dev[8], cpu[8], dtype);
    }

    [Test]
    public void Resample_ForwardAndBackward_MatchCpu([Values] DType dtype)
    {
        const int n = 2, c = 3, h = 4, w = 6;
        var x = Round(RandomArray(33, n * c * h * w, -1, 1), dtype);
        var up = Round(RandomArray(34, n * c * 4 * h * w, -1, 1), dtype);
        var (dev, cpu) = Run(dtype, [x], [up.Length], (b, v) => Fused<IResampleKernels>(b).UpsampleNearest2x(n, c, h, w, v[0], v[1]), tiled: true);
        AssertExact("upsample", dev[1], cpu[1]);
        (dev, cpu) = Run(dtype, [up], [x.Length], (b, v) => Fused<IResampleKernels>(b).UpsampleNearest2xBackward(n, c, h, w, v[0], v[1]), tiled: true);
        AssertRelative("upsample backward", dev[1], cpu[1], dtype);
        (dev, cpu) = Run(dtype, [x], [x.Length / 4], (b, v) => Fused<IResampleKernels>(b).AvgPool2d(n, c, h, w, 2, v[0], v[1]), tiled: true);
        AssertRelative("avgpool", dev[1], cpu[1], dtype);
        var pooled = Round(RandomArray(35, x.Length / 4, -1, 1), dtype);
        (dev, cpu) = Run(dtype, [pooled], [x.Length], (b, v) => Fused<IResampleKernels>(b).AvgPool2dBackward(n, c, h, w, 2, v[0], v[1]), tiled: true);
        AssertRelative("avgpool backward", dev[1], cpu[1], dtype);
    }

    [Test]
    public void Attention_ForwardAndBackward_MatchCpu([Values] DType dtype)
    {
        const int batch = 2, tokens = 11, dim = 5;
        double scale = 1 / Math.Sqrt(dim);
        int len = batch * tokens * dim;
        var q = Round(RandomArray(36, len, -1, 1), dtype);
        var k = Round(RandomArray(37, len, -1, 1), dtype);
        var v = Round(RandomArray(38, len, -1, 1), dtype);
        var dO = Round(RandomArray(39, len, -1, 1), dtype);
        var (dev, cpu) = Run(dtype, [q, k, v], [len, batch * tokens], (b, x) => Fused<IAttentionKernels>(b).AttentionForward(batch, tokens, dim, scale, x[0], x[1], x[2], x[3], x[4]), tiled: true);
        AssertRelative("o", dev[3], cpu[3], dtype);
        AssertRelative("lse", dev[4], cpu[4], dtype);
        var o = cpu[3];
        var lse = cpu[4];
        (dev, cpu) = Run(dtype, [q, k, v, o, lse, dO], [len, len, len],
            (b, x) => Fused<IAttentionKernels>(b).AttentionBackward(batch, tokens, dim, scale, x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8]), tiled: true);
        AssertRelative("dq", dev[6], cpu[6], dtype);
        AssertRelative("dk", dev[7], cpu[7], dtype);
        AssertRelative("dv", dev[8], cpu[8], dtype);
    }
}
