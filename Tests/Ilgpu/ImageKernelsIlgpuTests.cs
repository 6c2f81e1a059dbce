using System.Reflection;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Kernels.Resample;
using DiffusionCore.Tests.Reference;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using NUnit.Framework;

namespace DiffusionCore.Tests.Ilgpu;

/// <summary>
/// The ILGPU image kernels (Conv2dIlgpu, GroupNormIlgpu, AttentionIlgpu, ResampleIlgpu) run on ILGPU's CPU accelerator
/// against the plain references of Tests/Reference, at tiny shapes chosen to cross every tile edge (sizes 1, odd
/// sizes, one more than a tile); and every kernel compiled to PTX for sm_80 and sm_90 with no GPU present. The CPU
/// accelerator emulates each GPU thread (256 per group here), so sizes stay tiny; one context, accelerator and set of
/// compiled kernels serve the whole class.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class ImageKernelsIlgpuTests
{
    private const double Eps = 1e-5;
    private const double UnitRoundoff = 1.0 / (1 << 24);

    // GroupNorm, float32, relative to max(1, max |reference|) (and, for dx, to the size of the terms that cancel):
    // every output is O(1) float roundings of the inputs after tree sums of at most a few hundred terms, i.e. a few
    // 1e-7; 1e-5 leaves a wide margin while catching any wrong index, scale or missing term (errors of order 1e-1).
    private const double GroupNormTolerance = 1e-5;

    // Attention, as AttentionTests: forward error bounds grow like (D + N) u, about 1e-5 for N, D <= 70; backward
    // passes P through two more products and dS = P (dP - Delta) cancels, so twice that.
    private const double AttentionForwardTolerance = 1e-5;
    private const double AttentionBackwardTolerance = 2e-5;

    // Scores up to ~2300 (q and k scaled by 30, two keys by 90): a score s carries an absolute float32 error of about
    // |s| u ~ 1.4e-4, which exp turns into a relative error of that size in P; dQ and dK multiply it by |k|, |q| up to
    // 90 times the scale 0.5, so errors up to ~1e-3 are possible; 2e-3, the bound of AttentionTests, covers it.
    private const double LargeScoreTolerance = 2e-3;

    // Resampling, as ResampleTests: upsampling copies (exact); the backward sums and pooling add at most 9 float
    // values below 1 in magnitude, a few roundings, below 1e-6; in double below 1e-14.
    private const double ResampleFloatTolerance = 1e-6;
    private const double ResampleDoubleTolerance = 1e-14;

    private Context _context = null!;
    private Accelerator _accelerator = null!;
    private AcceleratorStream _stream = null!;
    private Conv2dIlgpu.Kernels _conv = null!;
    private GroupNormIlgpu.Kernels _norm = null!;
    private AttentionIlgpu.Kernels _attention = null!;
    private ResampleIlgpu.Kernels _resample = null!;
    private Context _ptxContext = null!;
    private Dictionary<string, PTXBackend> _ptx = null!;

    [OneTimeSetUp]
    public void SetUp()
    {
        // A CPU device shaped like one CUDA multiprocessor running one of our groups: 32-wide warps, 8 warps (256
        // threads, the tile kernels' group size; the default CPU device allows 16). It emulates every thread with an
        // OS thread; measured here, launches cost about 2.7x less than on CPUDeviceKind.Nvidia (1024 threads), barriers
        // about the same. Assertions turn out-of-bounds view accesses into failures.
        _context = Context.Create(b => b.CPU(new CPUDevice(32, 8, 1)).EnableAlgorithms().Assertions());
        _accelerator = _context.CreateCPUAccelerator(0);
        _stream = _accelerator.DefaultStream;
        _conv = new Conv2dIlgpu.Kernels(_accelerator);
        _norm = new GroupNormIlgpu.Kernels(_accelerator);
        _attention = new AttentionIlgpu.Kernels(_accelerator);
        _resample = new ResampleIlgpu.Kernels(_accelerator);
        _ptxContext = Context.Create(b => b.EnableAlgorithms());
        _ptx = new Dictionary<string, PTXBackend>
        {
            ["sm_80"] = new(_ptxContext, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null),
            ["sm_90"] = new(_ptxContext, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null),
        };
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        foreach (var backend in _ptx?.Values ?? Enumerable.Empty<PTXBackend>()) backend.Dispose();
        _ptxContext?.Dispose();
        _conv?.Dispose();
        _norm?.Dispose();
        _attention?.Dispose();
        _accelerator?.Dispose();
        _context?.Dispose();
    }

    // ---------------------------------------------------------------- Conv2d

    /// <summary>
    /// All sizes 1; 84 output pixels (two column tiles, the second with 20) over depth 27 (two slices); Cout = 70 (two
    /// row tiles) over depth 17 with a 1x1 kernel; stride 2 with a non-square kernel; stride 3 with padding wider than
    /// the kernel's reach (outputs that see only zeros).
    /// </summary>
    private static readonly Conv2dShape[] ConvShapes =
    [
        new(N: 1, Cin: 1, H: 1, W: 1, Cout: 1, KH: 1, KW: 1, Stride: 1, Pad: 0),
        new(N: 2, Cin: 3, H: 6, W: 7, Cout: 5, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 1, Cin: 17, H: 4, W: 3, Cout: 70, KH: 1, KW: 1, Stride: 1, Pad: 0),
        new(N: 1, Cin: 2, H: 5, W: 5, Cout: 3, KH: 3, KW: 2, Stride: 2, Pad: 1),
        new(N: 2, Cin: 3, H: 5, W: 5, Cout: 2, KH: 3, KW: 5, Stride: 3, Pad: 3),
    ];

    /// <summary>y with and without bias against the seven-loop reference; y pre-filled with NaN (every element written).</summary>
    [TestCaseSource(nameof(ConvShapes))]
    public void Conv2dForwardMatchesReference(Conv2dShape s)
    {
        var rng = new Random(Seed(s));
        var (x, w, bias) = (Uniform(rng, s.InputLength), Uniform(rng, s.WeightLength), Uniform(rng, s.Cout));
        foreach (bool withBias in new[] { true, false })
        {
            using var bx = Upload(x);
            using var bw = Upload(w);
            using var bb = Upload(bias);
            using var by = Filled(s.OutputLength, float.NaN);
            _conv.Forward(_stream, s, View(bx), View(bw), withBias ? View(bb) : ArrayView<float>.Empty, View(by));
            var (yRef, abs) = Conv2dReference.Forward(s, x, w, withBias ? bias : null);
            AssertWithinSumBound($"y (bias {withBias})", s, Read(by), yRef, abs, (long)s.Cin * s.KH * s.KW + 1);
        }
    }

    /// <summary>
    /// dx, dw and db against the reference, dw with the automatic split count and with 3 depth splits (the split-K
    /// partials and their ordered reduction); outputs pre-filled with NaN.
    /// </summary>
    [TestCaseSource(nameof(ConvShapes))]
    public void Conv2dBackwardMatchesReference(Conv2dShape s)
    {
        var rng = new Random(Seed(s) + 1);
        var (x, w, dy) = (Uniform(rng, s.InputLength), Uniform(rng, s.WeightLength), Uniform(rng, s.OutputLength));
        var r = Conv2dReference.Backward(s, x, w, dy);
        using var bx = Upload(x);
        using var bw = Upload(w);
        using var bdy = Upload(dy);
        using var bdx = Filled(s.InputLength, float.NaN);
        _conv.BackwardInput(_stream, s, View(bdy), View(bw), View(bdx));
        AssertWithinSumBound("dx", s, Read(bdx), r.Dx, r.DxAbs, (long)s.Cout * s.KH * s.KW);
        long terms = (long)s.N * s.OutH * s.OutW;
        foreach (int splits in new[] { 0, 3 })
        {
            using var bdw = Filled(s.WeightLength, float.NaN);
            using var bdb = Filled(s.Cout, float.NaN);
            _conv.BackwardWeight(_stream, s, View(bx), View(bdy), View(bdw), View(bdb), splits);
            AssertWithinSumBound($"dw (splits {splits})", s, Read(bdw), r.Dw, r.DwAbs, terms);
            AssertWithinSumBound($"db (splits {splits})", s, Read(bdb), r.Db, r.DbAbs, terms);
        }
    }

    /// <summary>
    /// A missing bias gradient is skipped (with one split and with split-K partials), and a short buffer is refused
    /// before anything runs.
    /// </summary>
    [Test]
    public void Conv2dSkipsEmptyBiasGradientAndRejectsShortBuffers()
    {
        var s = ConvShapes[1];
        var rng = new Random(3);
        var (x, dy) = (Uniform(rng, s.InputLength), Uniform(rng, s.OutputLength));
        using var bx = Upload(x);
        using var bdy = Upload(dy);
        using var bdw = Filled(s.WeightLength, float.NaN);
        var r = Conv2dReference.Backward(s, x, new float[s.WeightLength], dy);
        foreach (int splits in new[] { 1, 3 })
        {
            _conv.BackwardWeight(_stream, s, View(bx), View(bdy), View(bdw), ArrayView<float>.Empty, splits);
            AssertWithinSumBound($"dw without db (splits {splits})", s, Read(bdw), r.Dw, r.DwAbs, (long)s.N * s.OutH * s.OutW);
        }

        using var shortY = Filled(s.OutputLength - 1, 0f);
        var ex = Assert.Throws<KernelException>(() =>
            _conv.Forward(_stream, s, View(bx), View(bdw), ArrayView<float>.Empty, View(shortY)));
        Assert.That(ex!.Message, Does.Contain($"y has {s.OutputLength - 1} elements"));
    }

    // ---------------------------------------------------------------- GroupNorm

    /// <summary>
    /// N, C, HW, groups, SiLU: an odd plane (35) with 2 channels a group; HW = 1 with one channel a group (M = 1,
    /// variance 0) and N = 2 (dgamma, dbeta summed over the batch); one group of 6 channels; a 300-wide plane of two
    /// channels (wider than the 256 threads of a group and the 32 lanes of a warp, so every loop strides). Each case costs tens of
    /// emulated barriers per (n, g) block, so the SiLU alternates instead of doubling the cases.
    /// </summary>
    private static IEnumerable<TestCaseData> GroupNormCases()
    {
        yield return new TestCaseData(1, 4, 35, 2, false);
        yield return new TestCaseData(2, 1, 1, 1, true);
        yield return new TestCaseData(2, 6, 7, 1, true);
        yield return new TestCaseData(1, 2, 300, 1, false);
    }

    /// <summary>y, mean, rstd, dx, dgamma, dbeta against NormReference, with and without the fused SiLU.</summary>
    [TestCaseSource(nameof(GroupNormCases))]
    public void GroupNormMatchesReference(int n, int c, int hw, int groups, bool silu)
    {
        var p = NormProblem.Random(n, c, hw, groups, seed: 100 * n + 10 * c + hw, offset: 3.0, spread: 2.0);
        CheckGroupNorm(p, silu);
    }

    /// <summary>
    /// |mean| / std = 1e5: the mean rounded to float is off by up to 5e-4, about 1% of std; the kernels work with
    /// deviations from an element of the block and re-derive the mean in backward, so the general tolerance holds.
    /// </summary>
    [Test]
    public void GroupNormSurvivesLargeMean()
    {
        var p = NormProblem.Random(2, 2, 50, 1, seed: 5, offset: 1e4, spread: 0.1);
        CheckGroupNorm(p, silu: true);
    }

    /// <summary>Very negative pre-activations: e^-z overflows, y and the gradients must be exactly 0 or finite, never NaN.</summary>
    [Test]
    public void GroupNormFusedSiluSaturatesWithoutNaN()
    {
        const int n = 1, c = 2, hw = 20, groups = 1;
        var p = NormProblem.Random(n, c, hw, groups, seed: 9, offset: 0, spread: 2.0);
        using var x = Upload(ToFloat(p.X));
        using var gamma = Upload([1f, 1f]);
        using var beta = Upload([-1000f, 1000f]);
        using var y = Filled(n * c * hw, float.NaN);
        using var mean = Filled(1, float.NaN);
        using var rstd = Filled(1, float.NaN);
        _norm.Forward(_stream, n, c, hw, groups, Eps, View(x), View(gamma), View(beta), View(y), View(mean), View(rstd), fuseSilu: true);
        using var dy = Upload(ToFloat(p.Dy));
        using var dx = Filled(n * c * hw, float.NaN);
        using var dgamma = Filled(c, float.NaN);
        using var dbeta = Filled(c, float.NaN);
        _norm.Backward(_stream, n, c, hw, groups, View(x), View(gamma), View(beta), View(mean), View(rstd), View(dy), View(dx),
            View(dgamma), View(dbeta), fuseSilu: true);
        var ys = Read(y);
        Assert.That(ys.Take(hw), Is.All.EqualTo(0f));
        Assert.That(ys.Skip(hw).All(v => float.IsFinite(v) && v > 900), Is.True);
        Assert.That(Read(dx).Concat(Read(dgamma)).Concat(Read(dbeta)).All(float.IsFinite), Is.True);
    }

    /// <summary>N = 0 writes zero parameter gradients; C not divisible by groups is refused.</summary>
    [Test]
    public void GroupNormEmptyBatchAndBadShape()
    {
        using var empty = Filled(1, 0f);
        using var parameters = Filled(2, 1f);
        using var dgamma = Filled(2, float.NaN);
        using var dbeta = Filled(2, float.NaN);
        var e = View(empty);
        _norm.Backward(_stream, 0, 2, 5, 1, e, View(parameters), View(parameters), e, e, e, e, View(dgamma), View(dbeta), fuseSilu: true);
        Assert.That(Read(dgamma).Concat(Read(dbeta)), Is.All.EqualTo(0f));

        var ex = Assert.Throws<KernelException>(() =>
            _norm.Forward(_stream, 1, 6, 4, 4, Eps, e, e, e, e, e, e, fuseSilu: false));
        Assert.That(ex!.Message, Does.Contain("C=6").And.Contain("groups=4"));
    }

    private void CheckGroupNorm(NormProblem p, bool silu)
    {
        var r = p.Reference(silu);
        int stats = p.N * p.Groups;
        using var x = Upload(ToFloat(p.X));
        using var gamma = Upload(ToFloat(p.Gamma));
        using var beta = Upload(ToFloat(p.Beta));
        using var y = Filled(p.X.Length, float.NaN);
        using var mean = Filled(stats, float.NaN);
        using var rstd = Filled(stats, float.NaN);
        _norm.Forward(_stream, p.N, p.C, p.Hw, p.Groups, Eps, View(x), View(gamma), View(beta), View(y), View(mean), View(rstd), silu);
        AssertRelative(Read(y), r.Y, GroupNormTolerance, "y");
        AssertRelative(Read(mean), r.Mean, GroupNormTolerance, "mean");
        AssertRelative(Read(rstd), r.Rstd, GroupNormTolerance, "rstd");

        using var dy = Upload(ToFloat(p.Dy));
        using var dx = Filled(p.X.Length, float.NaN);
        using var dgamma = Filled(p.C, float.NaN);
        using var dbeta = Filled(p.C, float.NaN);
        _norm.Backward(_stream, p.N, p.C, p.Hw, p.Groups, View(x), View(gamma), View(beta), View(mean), View(rstd), View(dy), View(dx),
            View(dgamma), View(dbeta), silu);
        AssertRelative(Read(dx), r.Dx, GroupNormTolerance, "dx", p.DxTermScale(r.Rstd));
        AssertRelative(Read(dgamma), r.Dgamma, GroupNormTolerance, "dgamma");
        AssertRelative(Read(dbeta), r.Dbeta, GroupNormTolerance, "dbeta");
    }

    // ---------------------------------------------------------------- Attention

    /// <summary>
    /// B, N, D: all 1; B = 2 with odd N and D inside one tile; N = 65 (a second tile of one row); D = 65 (five score
    /// slices, the last of one column, and two value blocks).
    /// </summary>
    private static readonly object[] AttentionShapes =
    [
        new object[] { 1, 1, 1 },
        new object[] { 2, 7, 5 },
        new object[] { 1, 65, 3 },
        new object[] { 1, 2, 65 },
    ];

    /// <summary>
    /// o and lse, then dq, dk, dv (from the kernel's own o and lse) against the double reference; every output
    /// pre-filled with NaN. One test for both passes: the backward needs the forward anyway, and each emulated pass
    /// costs seconds on the CPU accelerator.
    /// </summary>
    [TestCaseSource(nameof(AttentionShapes))]
    public void AttentionMatchesReference(int batch, int n, int d)
    {
        var rng = new Random(2000 + batch * 10000 + n * 100 + d);
        int count = batch * n * d;
        var (q, k, v, dO) = (Uniform(rng, count), Uniform(rng, count), Uniform(rng, count), Uniform(rng, count));
        CheckAttention(batch, n, d, q, k, v, dO, AttentionForwardTolerance, AttentionBackwardTolerance, largeScores: false);
    }

    /// <summary>
    /// Online-softmax stability: scores up to about two thousand over two key tiles, with the two keys of the second
    /// tile scaled up so that many rows find their max there: the running max grows between tiles and the
    /// accumulator is rescaled by factors down to exp(-hundreds). Everything finite and close to the reference.
    /// </summary>
    [Test]
    public void AttentionLargeScoresStayFiniteAndMatchReference()
    {
        const int batch = 1, n = 66, d = 4;
        var rng = new Random(77);
        int count = batch * n * d;
        var (q, k) = (Uniform(rng, count, 30f), Uniform(rng, count, 30f));
        for (int c = 0; c < 2 * d; c++) k[(n - 2) * d + c] *= 3f;
        var (v, dO) = (Uniform(rng, count), Uniform(rng, count));
        int rescaledRows = Enumerable.Range(0, n).Count(i =>
        {
            double Score(int j) => Enumerable.Range(0, d).Sum(c => (double)q[i * d + c] * k[j * d + c]);
            return Enumerable.Range(64, n - 64).Max(Score) > Enumerable.Range(0, 64).Max(Score);
        });
        Assert.That(rescaledRows, Is.GreaterThan(n / 4), "the test is meant to move many row maxima into the second tile");
        CheckAttention(batch, n, d, q, k, v, dO, LargeScoreTolerance, LargeScoreTolerance, largeScores: true);
    }

    private void CheckAttention(int batch, int n, int d, float[] q, float[] k, float[] v, float[] dO,
        double forwardTolerance, double backwardTolerance, bool largeScores)
    {
        int count = q.Length;
        float scale = AttentionCpu.DefaultScale(d);
        using var bq = Upload(q);
        using var bk = Upload(k);
        using var bv = Upload(v);
        using var bo = Filled(count, float.NaN);
        using var bl = Filled(batch * n, float.NaN);
        _attention.Forward(_stream, batch, n, d, scale, View(bq), View(bk), View(bv), View(bo), View(bl));
        var (o, lse) = (Read(bo), Read(bl));
        if (largeScores) Assert.That(lse.Max(), Is.GreaterThan(100f), "the test is meant to produce large scores");
        var (oRef, lseRef) = (new double[count], new double[batch * n]);
        AttentionReference.Forward(batch, n, d, scale, D(q), D(k), D(v), oRef, lseRef);
        AssertRelative(o, oRef, forwardTolerance, "o");
        AssertRelative(lse, lseRef, forwardTolerance, "lse");

        using var bdo = Upload(dO);
        using var bdq = Filled(count, float.NaN);
        using var bdk = Filled(count, float.NaN);
        using var bdv = Filled(count, float.NaN);
        _attention.Backward(_stream, batch, n, d, scale, View(bq), View(bk), View(bv), View(bo), View(bl), View(bdo),
            View(bdq), View(bdk), View(bdv));
        var (dq, dk, dv) = (new double[count], new double[count], new double[count]);
        AttentionReference.Backward(batch, n, d, scale, D(q), D(k), D(v), D(dO), dq, dk, dv);
        AssertRelative(Read(bdq), dq, backwardTolerance, "dq");
        AssertRelative(Read(bdk), dk, backwardTolerance, "dk");
        AssertRelative(Read(bdv), dv, backwardTolerance, "dv");
    }

    // ---------------------------------------------------------------- Resample

    /// <summary>Upsampling forward (exact) and backward in float and double on a 1x1 plane and odd planes.</summary>
    [TestCase(1, 1, 1, 1)]
    [TestCase(2, 3, 5, 7)]
    public void UpsampleMatchesReference(int n, int c, int h, int w)
    {
        var rng = new Random(n + c + h + w);
        var x = UniformDoubles(rng, n * c * h * w);
        var dy = UniformDoubles(rng, 4 * n * c * h * w);
        var yRef = NormReference.UpsampleNearest2x(n, c, h, w, x);
        var dxRef = NormReference.UpsampleNearest2xBackward(n, c, h, w, dy);

        using (var bx = Upload(ToFloat(x)))
        using (var by = Filled(dy.Length, float.NaN))
        using (var bdy = Upload(ToFloat(dy)))
        using (var bdx = Filled(x.Length, float.NaN))
        {
            _resample.UpsampleNearest2x(_stream, n, c, h, w, View(bx), View(by));
            _resample.UpsampleNearest2xBackward(_stream, n, c, h, w, View(bdy), View(bdx));
            AssertAbsolute(Read(by), yRef, 0, "y");
            AssertAbsolute(Read(bdx), dxRef, ResampleFloatTolerance, "dx");
        }
        using (var bx = _accelerator.Allocate1D(x))
        using (var by = _accelerator.Allocate1D(Enumerable.Repeat(double.NaN, dy.Length).ToArray()))
        using (var bdy = _accelerator.Allocate1D(dy))
        using (var bdx = _accelerator.Allocate1D(Enumerable.Repeat(double.NaN, x.Length).ToArray()))
        {
            _resample.UpsampleNearest2x(_stream, n, c, h, w, bx.View.AsContiguous(), by.View.AsContiguous());
            _resample.UpsampleNearest2xBackward(_stream, n, c, h, w, bdy.View.AsContiguous(), bdx.View.AsContiguous());
            AssertAbsolute(ReadDouble(by), yRef, 0, "y (double)");
            AssertAbsolute(ReadDouble(bdx), dxRef, ResampleDoubleTolerance, "dx (double)");
        }
    }

    /// <summary>k x k average pooling forward and backward in float and double, k = 1, 2, 3.</summary>
    [TestCase(1, 1, 1, 1, 1)]
    [TestCase(1, 2, 4, 6, 2)]
    [TestCase(2, 3, 6, 9, 3)]
    public void AvgPoolMatchesReference(int n, int c, int h, int w, int k)
    {
        var rng = new Random(n + c + h + w + k);
        var x = UniformDoubles(rng, n * c * h * w);
        var dy = UniformDoubles(rng, n * c * (h / k) * (w / k));
        var yRef = NormReference.AvgPool(n, c, h, w, k, x);
        var dxRef = NormReference.AvgPoolBackward(n, c, h, w, k, dy);

        using (var bx = Upload(ToFloat(x)))
        using (var by = Filled(dy.Length, float.NaN))
        using (var bdy = Upload(ToFloat(dy)))
        using (var bdx = Filled(x.Length, float.NaN))
        {
            _resample.AvgPool2d(_stream, n, c, h, w, k, View(bx), View(by));
            _resample.AvgPool2dBackward(_stream, n, c, h, w, k, View(bdy), View(bdx));
            AssertAbsolute(Read(by), yRef, ResampleFloatTolerance, "y");
            AssertAbsolute(Read(bdx), dxRef, ResampleFloatTolerance, "dx");
        }
        using (var bx = _accelerator.Allocate1D(x))
        using (var by = _accelerator.Allocate1D(Enumerable.Repeat(double.NaN, dy.Length).ToArray()))
        using (var bdy = _accelerator.Allocate1D(dy))
        using (var bdx = _accelerator.Allocate1D(Enumerable.Repeat(double.NaN, x.Length).ToArray()))
        {
            _resample.AvgPool2d(_stream, n, c, h, w, k, bx.View.AsContiguous(), by.View.AsContiguous());
            _resample.AvgPool2dBackward(_stream, n, c, h, w, k, bdy.View.AsContiguous(), bdx.View.AsContiguous());
            AssertAbsolute(ReadDouble(by), yRef, ResampleDoubleTolerance, "y (double)");
            AssertAbsolute(ReadDouble(bdx), dxRef, ResampleDoubleTolerance, "dx (double)");
        }
    }

    /// <summary>A window that does not divide the plane is refused with the shape in the message.</summary>
    [Test]
    public void AvgPoolRejectsWindowNotDividingThePlane()
    {
        using var buffer = Filled(64, 0f);
        var ex = Assert.Throws<KernelException>(() => _resample.AvgPool2d(_stream, 1, 1, 6, 5, 2, View(buffer), View(buffer)));
        Assert.That(ex!.Message, Does.Contain("H=6").And.Contain("W=5").And.Contain("k=2"));
    }

    // ---------------------------------------------------------------- Accelerator checks and PTX

    /// <summary>ILGPU's default CPU device (16 threads per group) is refused with a message naming the fix.</summary>
    [Test]
    public void TileKernelsRefuseSmallGroups()
    {
        using var context = Context.Create(b => b.CPU().EnableAlgorithms());
        using var accelerator = context.CreateCPUAccelerator(0);
        Assume.That(accelerator.MaxNumThreadsPerGroup, Is.LessThan(256), "the default CPU device allows large groups");
        var ex = Assert.Throws<KernelException>(() => new Conv2dIlgpu.Kernels(accelerator).Dispose());
        Assert.That(ex!.Message, Does.Contain("256 threads per group").And.Contain("CPUDeviceKind.Nvidia"));
    }

    /// <summary>
    /// Every kernel: (declaring class, method, explicitly grouped, synchronises with barriers, element type of a
    /// generic kernel).
    /// </summary>
    private static IEnumerable<TestCaseData> PtxKernels()
    {
        var kernels = new (Type Owner, string Name, bool Grouped, bool Barriers, Type? Element)[]
        {
            (typeof(Conv2dIlgpu), nameof(Conv2dIlgpu.ForwardKernel), true, true, null),
            (typeof(Conv2dIlgpu), nameof(Conv2dIlgpu.BackwardInputKernel), true, true, null),
            (typeof(Conv2dIlgpu), nameof(Conv2dIlgpu.BackwardWeightKernel), true, true, null),
            (typeof(Conv2dIlgpu), nameof(Conv2dIlgpu.SumSplitsKernel), false, false, null),
            (typeof(GroupNormIlgpu), nameof(GroupNormIlgpu.ForwardKernel), true, true, null),
            (typeof(GroupNormIlgpu), nameof(GroupNormIlgpu.BackwardKernel), true, true, null),
            (typeof(GroupNormIlgpu), nameof(GroupNormIlgpu.SumOverBatchKernel), false, false, null),
            (typeof(AttentionIlgpu), nameof(AttentionIlgpu.ForwardKernel), true, true, null),
            (typeof(AttentionIlgpu), nameof(AttentionIlgpu.DeltaKernel), false, false, null),
            (typeof(AttentionIlgpu), nameof(AttentionIlgpu.KeyValueGradientKernel), true, true, null),
            (typeof(AttentionIlgpu), nameof(AttentionIlgpu.QueryGradientKernel), true, true, null),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.UpsampleKernel), false, false, typeof(float)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.UpsampleBackwardKernel), false, false, typeof(float)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.AvgPoolKernel), false, false, typeof(float)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.AvgPoolBackwardKernel), false, false, typeof(float)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.UpsampleKernel), false, false, typeof(double)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.UpsampleBackwardKernel), false, false, typeof(double)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.AvgPoolKernel), false, false, typeof(double)),
            (typeof(ResampleIlgpu), nameof(ResampleIlgpu.AvgPoolBackwardKernel), false, false, typeof(double)),
        };
        foreach (string arch in new[] { "sm_80", "sm_90" })
            foreach (var (owner, name, grouped, barriers, element) in kernels)
                yield return new TestCaseData(arch, owner, name, grouped, barriers, element)
                    .SetName($"CompilesToPtx({arch}, {owner.Name}.{name}{(element is null ? "" : $"<{element.Name}>")})");
    }

    /// <summary>
    /// Each kernel compiles to PTX with no GPU present; those that share tiles synchronise with bar.sync, the
    /// attention forward reduces score rows with warp shuffles, and no kernel declares more static shared memory
    /// than CUDA allows.
    /// </summary>
    [TestCaseSource(nameof(PtxKernels))]
    public void CompilesToPtx(string arch, Type owner, string name, bool grouped, bool barriers, Type? element)
    {
        var method = owner.GetMethod(name, BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
            ?? throw new MissingMethodException(owner.Name, name);
        if (element is not null) method = method.MakeGenericMethod(element);
        var entry = grouped
            ? EntryPointDescription.FromExplicitlyGroupedKernel(method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(method);
        var compiled = (PTXCompiledKernel)_ptx[arch].Compile(entry, default);
        string ptx = compiled.PTXAssembly;
        Assert.That(ptx, Does.Contain(".visible .entry"), "no kernel entry in the PTX");
        if (barriers) Assert.That(ptx, Does.Contain("bar.sync"), "a tile kernel without a barrier");
        if (owner == typeof(AttentionIlgpu) && name == nameof(AttentionIlgpu.ForwardKernel))
            Assert.That(ptx, Does.Contain("shfl.sync"), "the row max and sum should use warp shuffles");
        // CUDA refuses a launch whose static shared memory exceeds 48 KiB per block.
        long sharedBytes = System.Text.RegularExpressions.Regex.Matches(ptx, @"\.shared\s[^\[;]*\[(\d+)\]")
            .Sum(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.That(sharedBytes, Is.LessThanOrEqualTo(48 * 1024), "static shared memory per group");
        if (barriers) Assert.That(sharedBytes, Is.GreaterThan(0), "a tile kernel without shared memory (or the PTX pattern is stale)");
    }

    // ---------------------------------------------------------------- helpers

    private MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] data) => _accelerator.Allocate1D(data);

    private MemoryBuffer1D<float, Stride1D.Dense> Filled(long length, float value) =>
        _accelerator.Allocate1D(Enumerable.Repeat(value, (int)length).ToArray());

    private static ArrayView<float> View(MemoryBuffer1D<float, Stride1D.Dense> buffer) => buffer.View.AsContiguous();

    private float[] Read(MemoryBuffer1D<float, Stride1D.Dense> buffer)
    {
        _stream.Synchronize();
        return buffer.GetAsArray1D();
    }

    private double[] ReadDouble(MemoryBuffer1D<double, Stride1D.Dense> buffer)
    {
        _stream.Synchronize();
        return buffer.GetAsArray1D();
    }

    private static int Seed(Conv2dShape s) => ((s.N * 31 + s.Cin) * 31 + s.H * s.W) * 31 + s.Cout * s.KH * s.KW + s.Stride;

    private static float[] Uniform(Random rng, long count, float amplitude = 1f)
    {
        var a = new float[count];
        for (int i = 0; i < a.Length; i++) a[i] = amplitude * (float)(2 * rng.NextDouble() - 1);
        return a;
    }

    /// <summary>Uniform values in [-1, 1), each representable in float32 (float and double runs see the same inputs).</summary>
    private static double[] UniformDoubles(Random rng, int count)
    {
        var a = new double[count];
        for (int i = 0; i < count; i++) a[i] = (float)(2 * rng.NextDouble() - 1);
        return a;
    }

    private static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);

    private static float[] ToFloat(double[] a) => Array.ConvertAll(a, v => (float)v);

    /// <summary>
    /// |kernel - exact| ≤ 2 (k + 1) u Σ|terms| per element, as Conv2dTests: a float32 sum of k products in any order
    /// is off by at most γ_k Σ|terms| (Higham, Accuracy and Stability, eq. 3.5), plus the final rounding; the factor 2
    /// covers γ_k's denominator and the double reference's own rounding.
    /// </summary>
    private static void AssertWithinSumBound(string what, Conv2dShape s, float[] actual, double[] expected, double[] absSum, long terms)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        for (int i = 0; i < expected.Length; i++)
        {
            double tolerance = 2.0 * (terms + 1) * UnitRoundoff * absSum[i];
            double error = Math.Abs(actual[i] - expected[i]);
            if (!(error <= tolerance))
                Assert.Fail($"{what}[{i}] = {actual[i]}, expected {expected[i]} ± {tolerance:G3} for {s}");
        }
    }

    /// <summary>max |actual - expected| ≤ tolerance max(1, termScale, max |expected|); NaN fails.</summary>
    private static void AssertRelative(float[] actual, double[] expected, double tolerance, string what, double termScale = 0)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double scale = Math.Max(Math.Max(1, termScale), expected.Length == 0 ? 0 : expected.Max(Math.Abs));
        double worst = 0;
        int worstAt = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = float.IsNaN(actual[i]) ? double.PositiveInfinity : Math.Abs(actual[i] - expected[i]);
            if (err > worst) (worst, worstAt) = (err, i);
        }
        TestContext.Out.WriteLine($"{what}: max error {worst:E2}, scale {scale:G4}");
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance * scale), $"{what}: worst error {worst:G3} at {worstAt} (scale {scale:G3})");
    }

    /// <summary>max |actual - expected| ≤ tolerance; NaN fails.</summary>
    private static void AssertAbsolute<T>(T[] actual, double[] expected, double tolerance, string what) where T : struct, IConvertible
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double a = actual[i].ToDouble(null);
            worst = Math.Max(worst, double.IsNaN(a) ? double.PositiveInfinity : Math.Abs(a - expected[i]));
        }
        Assert.That(worst, Is.LessThanOrEqualTo(tolerance), what);
    }

    /// <summary>A random GroupNorm problem with float-representable values, and its double reference.</summary>
    private sealed record NormProblem(int N, int C, int Hw, int Groups, double[] X, double[] Gamma, double[] Beta, double[] Dy)
    {
        public static NormProblem Random(int n, int c, int hw, int groups, int seed, double offset, double spread)
        {
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
            return new NormProblem(n, c, hw, groups, x, gamma, beta, dy);
        }

        /// <summary>
        /// max over elements of rstd |gamma_c dy| (times 1.1 ≥ max silu'), the size of the terms that cancel in dx:
        /// dx is only resolvable to the float precision of those terms (with M = 1, dx is exactly 0 but the terms are
        /// ~rstd = 1/sqrt(eps) ~ 316).
        /// </summary>
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

        public NormResult Reference(bool silu)
        {
            var y = new double[X.Length];
            var mean = new double[N * Groups];
            var rstd = new double[N * Groups];
            NormReference.GroupNormForward(N, C, Hw, Groups, Eps, X, Gamma, Beta, y, mean, rstd, silu);
            var dx = new double[X.Length];
            var dgamma = new double[C];
            var dbeta = new double[C];
            NormReference.GroupNormBackward(N, C, Hw, Groups, Eps, X, Gamma, Beta, Dy, dx, dgamma, dbeta, silu);
            return new NormResult(y, mean, rstd, dx, dgamma, dbeta);
        }
    }

    private sealed record NormResult(double[] Y, double[] Mean, double[] Rstd, double[] Dx, double[] Dgamma, double[] Dbeta);
}
