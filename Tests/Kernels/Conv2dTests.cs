using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Tests.Reference;
using NUnit.Framework;

namespace DiffusionCore.Tests.Kernels;

/// <summary>
/// Conv2dCpu against the seven-loop reference on random inputs of awkward shapes, every algorithm forced on every
/// shape it supports (not only the one the chooser picks). Run again under DOTNET_EnableAVX2=0 (and
/// DOTNET_EnableAVX512F=0 on an AVX-512 machine) to check the narrower vector paths.
/// </summary>
[TestFixture]
public class Conv2dTests
{
    /// <summary>
    /// Shapes covering the 1x1 GEMM path, 3x3 stride 1 and 2, non-square and 1-wide kernels, odd sizes,
    /// padding wider than the kernel reach, single channels, N that splits over 2 cores and N that does
    /// not (whole images per thread, or shared grids cut into strips), and one large image.
    /// </summary>
    private static readonly Conv2dShape[] Shapes =
    [
        new(N: 1, Cin: 1, H: 1, W: 1, Cout: 1, KH: 1, KW: 1, Stride: 1, Pad: 0),
        new(N: 3, Cin: 5, H: 7, W: 5, Cout: 3, KH: 1, KW: 1, Stride: 1, Pad: 0),
        new(N: 4, Cin: 7, H: 6, W: 9, Cout: 5, KH: 1, KW: 1, Stride: 1, Pad: 0),
        new(N: 2, Cin: 3, H: 7, W: 5, Cout: 4, KH: 1, KW: 1, Stride: 2, Pad: 0),
        new(N: 1, Cin: 2, H: 3, W: 4, Cout: 3, KH: 1, KW: 1, Stride: 1, Pad: 1),
        new(N: 2, Cin: 3, H: 7, W: 5, Cout: 4, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 1, Cin: 9, H: 7, W: 5, Cout: 1, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 3, Cin: 3, H: 7, W: 5, Cout: 5, KH: 3, KW: 3, Stride: 2, Pad: 1),
        new(N: 4, Cin: 1, H: 8, W: 8, Cout: 3, KH: 3, KW: 3, Stride: 2, Pad: 1),
        new(N: 1, Cin: 2, H: 9, W: 6, Cout: 3, KH: 5, KW: 3, Stride: 1, Pad: 2),
        new(N: 3, Cin: 1, H: 8, W: 7, Cout: 1, KH: 5, KW: 3, Stride: 2, Pad: 0),
        new(N: 2, Cin: 3, H: 5, W: 5, Cout: 2, KH: 3, KW: 5, Stride: 3, Pad: 3),
        new(N: 1, Cin: 10, H: 9, W: 11, Cout: 3, KH: 3, KW: 3, Stride: 1, Pad: 0),
        new(N: 1, Cin: 3, H: 201, W: 199, Cout: 2, KH: 3, KW: 3, Stride: 1, Pad: 1),
        // Output channels past one tile of every path (4/6 rows of the products, 16/32 channels of the
        // weight-gradient tile) with a remainder; the first and last U-Net convs (Cin 3, Cout 3).
        new(N: 2, Cin: 13, H: 6, W: 7, Cout: 37, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 3, Cin: 3, H: 9, W: 9, Cout: 17, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 2, Cin: 17, H: 8, W: 8, Cout: 3, KH: 3, KW: 3, Stride: 1, Pad: 1),
        // Stride 2 with odd and even sizes, stride 3 with pad 2, a 5x5 and a 7x7 kernel, a 2x2 kernel (the
        // dx phases of stride 2 with one tap each), and a kernel smaller than its stride (dx phases with none).
        new(N: 5, Cin: 6, H: 9, W: 8, Cout: 7, KH: 3, KW: 3, Stride: 2, Pad: 1),
        new(N: 2, Cin: 4, H: 11, W: 10, Cout: 5, KH: 3, KW: 3, Stride: 3, Pad: 2),
        new(N: 1, Cin: 3, H: 12, W: 11, Cout: 6, KH: 5, KW: 5, Stride: 1, Pad: 2),
        new(N: 2, Cin: 2, H: 9, W: 9, Cout: 3, KH: 7, KW: 7, Stride: 2, Pad: 3),
        new(N: 3, Cin: 5, H: 8, W: 6, Cout: 4, KH: 2, KW: 2, Stride: 2, Pad: 0),
        new(N: 2, Cin: 3, H: 7, W: 8, Cout: 2, KH: 2, KW: 2, Stride: 3, Pad: 1),
        // Tiny images: 1x1 and 2x2 inputs with 3x3 kernels, and pad larger than K - 1 on a 3x3 kernel.
        new(N: 3, Cin: 4, H: 1, W: 1, Cout: 5, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 2, Cin: 3, H: 2, W: 2, Cout: 4, KH: 3, KW: 3, Stride: 2, Pad: 1),
        new(N: 1, Cin: 2, H: 3, W: 3, Cout: 2, KH: 3, KW: 3, Stride: 1, Pad: 3),
        // 3x3 stride 1 with enough channels for the chooser to take Winograd: pad 2, pad 0, odd output sizes
        // (partial 2x2 tiles), N = 1.
        new(N: 2, Cin: 17, H: 10, W: 9, Cout: 20, KH: 3, KW: 3, Stride: 1, Pad: 2),
        new(N: 3, Cin: 16, H: 5, W: 6, Cout: 16, KH: 3, KW: 3, Stride: 1, Pad: 0),
        new(N: 1, Cin: 24, H: 11, W: 13, Cout: 19, KH: 3, KW: 3, Stride: 1, Pad: 1),
    ];

    /// <summary>True when the call runs Winograd's F(2x2, 3x3) (forced, or chosen by Auto).</summary>
    private static bool RunsWinograd(Conv2dShape s, Conv2dPass pass, Conv2dAlgorithm algorithm)
        => algorithm == Conv2dAlgorithm.Winograd || (algorithm == Conv2dAlgorithm.Auto && Conv2dCpu.Choose(s, pass) == Conv2dAlgorithm.Winograd);

    /// <summary>
    /// Rounding steps on the longest path of a Winograd result beyond its k products: the input and output-gradient
    /// transforms (2 additions each), the weight transform (one rounding of its double result), the output
    /// transform (2 additions), the bias and the final rounding; 8 covers them with one to spare.
    /// </summary>
    private const int WinogradExtraSteps = 8;

    /// <summary>Every (shape, algorithm) pair the algorithm supports, Auto included.</summary>
    private static IEnumerable<TestCaseData> Cases(Conv2dPass pass)
    {
        foreach (var s in Shapes)
            foreach (var algorithm in Enum.GetValues<Conv2dAlgorithm>())
                if (Conv2dCpu.Supports(s, pass, algorithm))
                    yield return new TestCaseData(s, algorithm).SetArgDisplayNames(s.ToString(), algorithm.ToString());
    }

    private static IEnumerable<TestCaseData> ForwardCases() => Cases(Conv2dPass.Forward);

    private static IEnumerable<TestCaseData> BackwardInputCases() => Cases(Conv2dPass.BackwardInput);

    private static IEnumerable<TestCaseData> BackwardWeightCases() => Cases(Conv2dPass.BackwardWeight);

    /// <summary>
    /// |fast - exact| ≤ 2 (k + 1) u Σ|terms|, u = 2^-24: a float32 sum of k products in any order is off
    /// by at most γ_k Σ|terms| with γ_k = k u / (1 - k u) (Higham, eq. 3.5), plus u |result| for the
    /// final rounding; the factor 2 covers γ_k's denominator and the double reference's own rounding.
    /// Here k is the number of terms of one result: Cin KH KW + 1 for y, at most Cout KH KW for dx,
    /// N OutH OutW for dw and db.
    /// </summary>
    private static void AssertClose(string what, Conv2dShape s, float[] actual, double[] expected, double[] absSum, long terms)
    {
        const double u = 1.0 / (1 << 24);
        for (int i = 0; i < expected.Length; i++)
        {
            double tolerance = 2.0 * (terms + 1) * u * absSum[i];
            double error = Math.Abs(actual[i] - expected[i]);
            if (!(error <= tolerance))
                Assert.Fail($"{what}[{i}] = {actual[i]}, expected {expected[i]} ± {tolerance:G3} for {s}");
        }
    }

    private static float[] RandomArray(Random rng, long length)
    {
        var a = new float[length];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(2 * rng.NextDouble() - 1);
        return a;
    }

    private static float[] Garbage(long length)
    {
        var a = new float[length];
        Array.Fill(a, float.NaN);
        return a;
    }

    [TestCaseSource(nameof(ForwardCases))]
    public void ForwardMatchesReference(Conv2dShape s, Conv2dAlgorithm algorithm)
    {
        var rng = new Random(17);
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength);
        var bias = RandomArray(rng, s.Cout);
        long terms = (long)s.Cin * s.KH * s.KW + 1;

        bool winograd = RunsWinograd(s, Conv2dPass.Forward, algorithm);
        if (winograd) terms = s.Cin + WinogradExtraSteps;

        var y = Garbage(s.OutputLength);
        Conv2dCpu.Forward(s, x, w, bias, y, algorithm);
        var (expected, abs) = Conv2dReference.Forward(s, x, w, bias);
        AssertClose("y", s, y, expected, winograd ? Conv2dReference.WinogradForwardBound(s, x, w, bias) : abs, terms);

        var yNoBias = Garbage(s.OutputLength);
        Conv2dCpu.Forward(s, x, w, [], yNoBias, algorithm);
        (expected, abs) = Conv2dReference.Forward(s, x, w, null);
        AssertClose("y (no bias)", s, yNoBias, expected, winograd ? Conv2dReference.WinogradForwardBound(s, x, w, null) : abs, terms);
    }

    [TestCaseSource(nameof(BackwardInputCases))]
    public void BackwardInputMatchesReference(Conv2dShape s, Conv2dAlgorithm algorithm)
    {
        var rng = new Random(29);
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength);
        var dy = RandomArray(rng, s.OutputLength);
        var r = Conv2dReference.Backward(s, x, w, dy);

        var dx = Garbage(s.InputLength);
        Conv2dCpu.BackwardInput(s, dy, w, dx, algorithm);
        if (RunsWinograd(s, Conv2dPass.BackwardInput, algorithm))
        {
            // dx is the forward convolution of dy with the flipped, channel-swapped kernel: bounded as a forward.
            var (t, flipped) = Conv2dReference.InputGradientAsForward(s, w);
            AssertClose("dx", s, dx, r.Dx, Conv2dReference.WinogradForwardBound(t, dy, flipped, null), s.Cout + WinogradExtraSteps);
        }
        else
        {
            AssertClose("dx", s, dx, r.Dx, r.DxAbs, (long)s.Cout * s.KH * s.KW);
        }
    }

    [TestCaseSource(nameof(BackwardWeightCases))]
    public void BackwardWeightMatchesReference(Conv2dShape s, Conv2dAlgorithm algorithm)
    {
        var rng = new Random(29);
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength);
        var dy = RandomArray(rng, s.OutputLength);
        var r = Conv2dReference.Backward(s, x, w, dy);

        var dw = Garbage(s.WeightLength);
        var db = Garbage(s.Cout);
        Conv2dCpu.BackwardWeight(s, x, dy, dw, db, algorithm);
        long pixels = (long)s.N * s.OutH * s.OutW;
        var dwBound = r.DwAbs;
        long dwTerms = pixels;
        if (RunsWinograd(s, Conv2dPass.BackwardWeight, algorithm))
        {
            // One term per 2x2 tile of every image in each transform-domain sum.
            dwBound = Conv2dReference.WinogradWeightBound(s, x, dy);
            dwTerms = (long)s.N * ((s.OutH + 1) / 2) * ((s.OutW + 1) / 2) + WinogradExtraSteps;
        }
        AssertClose("dw", s, dw, r.Dw, dwBound, dwTerms);
        AssertClose("db", s, db, r.Db, r.DbAbs, pixels);

        var dwOnly = Garbage(s.WeightLength);
        Conv2dCpu.BackwardWeight(s, x, dy, dwOnly, [], algorithm);
        AssertClose("dw (no db)", s, dwOnly, r.Dw, dwBound, dwTerms);
    }

    /// <summary>
    /// Shapes whose work the kernels split in different ways by thread count: whole images, shared grids cut by
    /// output tiles and strips (N = 1 and N = 3 on 2 or 3 threads), and weight-gradient input-channel groups
    /// (one output tile).
    /// </summary>
    private static readonly Conv2dShape[] ThreadShapes =
    [
        new(N: 1, Cin: 5, H: 23, W: 21, Cout: 9, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 3, Cin: 7, H: 12, W: 10, Cout: 6, KH: 3, KW: 3, Stride: 2, Pad: 1),
        new(N: 4, Cin: 6, H: 9, W: 9, Cout: 3, KH: 3, KW: 3, Stride: 1, Pad: 1),
        new(N: 3, Cin: 18, H: 13, W: 12, Cout: 17, KH: 3, KW: 3, Stride: 1, Pad: 1),
    ];

    private static IEnumerable<TestCaseData> ThreadCases()
    {
        foreach (var s in ThreadShapes)
            foreach (var algorithm in Enum.GetValues<Conv2dAlgorithm>())
                if (algorithm != Conv2dAlgorithm.Auto && Conv2dCpu.Supports(s, Conv2dPass.Forward, algorithm))
                    yield return new TestCaseData(s, algorithm).SetArgDisplayNames(s.ToString(), algorithm.ToString());
    }

    /// <summary>
    /// Every pass gives bit-identical results on 1, 2 and 3 threads: the work splits never change the order in
    /// which one output element is summed (dw and db included: each thread owns whole entries and sums the
    /// images in order).
    /// </summary>
    [TestCaseSource(nameof(ThreadCases))]
    public void ResultsDoNotDependOnTheThreadCount(Conv2dShape s, Conv2dAlgorithm algorithm)
    {
        var rng = new Random(41);
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength);
        var bias = RandomArray(rng, s.Cout);
        var dy = RandomArray(rng, s.OutputLength);
        (float[] Y, float[] Dx, float[] Dw, float[] Db) Run(int threads)
        {
            int saved = CpuParallel.Threads;
            try
            {
                CpuParallel.Threads = threads;
                var y = new float[s.OutputLength];
                var dx = new float[s.InputLength];
                var dw = new float[s.WeightLength];
                var db = new float[s.Cout];
                Conv2dCpu.Forward(s, x, w, bias, y, algorithm);
                var backward = Conv2dCpu.Supports(s, Conv2dPass.BackwardInput, algorithm) ? algorithm : Conv2dAlgorithm.Auto;
                Conv2dCpu.BackwardInput(s, dy, w, dx, backward);
                var weight = Conv2dCpu.Supports(s, Conv2dPass.BackwardWeight, algorithm) ? algorithm : Conv2dAlgorithm.Auto;
                Conv2dCpu.BackwardWeight(s, x, dy, dw, db, weight);
                return (y, dx, dw, db);
            }
            finally
            {
                CpuParallel.Threads = saved;
            }
        }
        var one = Run(1);
        foreach (int threads in new[] { 2, 3 })
        {
            var r = Run(threads);
            Assert.Multiple(() =>
            {
                Assert.That(r.Y, Is.EqualTo(one.Y), $"y on {threads} threads");
                Assert.That(r.Dx, Is.EqualTo(one.Dx), $"dx on {threads} threads");
                Assert.That(r.Dw, Is.EqualTo(one.Dw), $"dw on {threads} threads");
                Assert.That(r.Db, Is.EqualTo(one.Db), $"db on {threads} threads");
            });
        }
    }

    [Test]
    public void UnsupportedAlgorithmThrowsNamingIt()
    {
        var s = new Conv2dShape(1, 2, 5, 5, 3, 3, 3, 1, 1);
        var buffer = new float[4096];
        var ex = Assert.Throws<KernelException>(() => Conv2dCpu.Forward(s, buffer, buffer, [], buffer, Conv2dAlgorithm.Gemm));
        Assert.That(ex!.Message, Does.Contain("Gemm").And.Contain("x[1,2,5,5]"));
    }

    [Test]
    public void RepeatedCallsGiveIdenticalResults()
    {
        // The per-thread scratch buffers are reused between calls and shapes; stale contents must not leak.
        var big = new Conv2dShape(4, 6, 9, 7, 5, 3, 3, 1, 1);
        var small = new Conv2dShape(2, 2, 5, 4, 3, 3, 3, 2, 1);
        var rng = new Random(5);
        var x = RandomArray(rng, small.InputLength);
        var w = RandomArray(rng, small.WeightLength);
        var y1 = new float[small.OutputLength];
        var y2 = new float[small.OutputLength];
        Conv2dCpu.Forward(small, x, w, [], y1);
        Conv2dCpu.Forward(big, RandomArray(rng, big.InputLength), RandomArray(rng, big.WeightLength), [], new float[big.OutputLength]);
        Conv2dCpu.Forward(small, x, w, [], y2);
        Assert.That(y2, Is.EqualTo(y1));
    }

    [Test]
    public void SteadyStateCallsReuseTheScratch()
    {
        // One image, so the call stays on this thread; its col block is 36 x 1024 floats (144 KiB). After a
        // first call has grown the scratch, a second may allocate only small bookkeeping (closures), so a
        // 64 KiB ceiling catches any per-call col buffer.
        var s = new Conv2dShape(1, 4, 32, 32, 8, 3, 3, 1, 1);
        var rng = new Random(3);
        var x = RandomArray(rng, s.InputLength);
        var w = RandomArray(rng, s.WeightLength);
        var dy = RandomArray(rng, s.OutputLength);
        var y = new float[s.OutputLength];
        var dx = new float[s.InputLength];
        var dw = new float[s.WeightLength];
        var db = new float[s.Cout];
        void Step()
        {
            Conv2dCpu.Forward(s, x, w, [], y);
            Conv2dCpu.BackwardInput(s, dy, w, dx);
            Conv2dCpu.BackwardWeight(s, x, dy, dw, db);
        }
        Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Step();
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(64 * 1024));
    }

    private static IEnumerable<TestCaseData> BadShapes()
    {
        yield return new TestCaseData(new Conv2dShape(0, 2, 5, 5, 3, 3, 3, 1, 1), "sizes must be positive").SetName("ZeroBatch");
        yield return new TestCaseData(new Conv2dShape(1, 2, 5, 5, -3, 3, 3, 1, 1), "sizes must be positive").SetName("NegativeCout");
        yield return new TestCaseData(new Conv2dShape(1, 2, 5, 5, 3, 3, 3, 0, 1), "stride must be positive").SetName("ZeroStride");
        yield return new TestCaseData(new Conv2dShape(1, 2, 5, 5, 3, 3, 3, 1, -1), "padding must not be negative").SetName("NegativePad");
        yield return new TestCaseData(new Conv2dShape(1, 2, 2, 5, 3, 5, 3, 1, 1), "larger than the padded input").SetName("KernelTallerThanInput");
        yield return new TestCaseData(new Conv2dShape(1, 2, 5, 1, 3, 3, 4, 1, 1), "larger than the padded input").SetName("KernelWiderThanInput");
    }

    [TestCaseSource(nameof(BadShapes))]
    public void BadShapeThrowsNamingTheShape(Conv2dShape s, string reason)
    {
        var buffer = new float[4096];
        var ex = Assert.Throws<KernelException>(() => Conv2dCpu.Forward(s, buffer, buffer, [], buffer));
        Assert.That(ex!.Message, Does.Contain("Conv2d").And.Contain(reason).And.Contain($"x[{s.N},{s.Cin},{s.H},{s.W}]").And.Contain($"w[{s.Cout},{s.Cin},{s.KH},{s.KW}]"));
        Assert.Throws<KernelException>(() => Conv2dCpu.BackwardInput(s, buffer, buffer, buffer));
        Assert.Throws<KernelException>(() => Conv2dCpu.BackwardWeight(s, buffer, buffer, buffer, []));
    }

    [Test]
    public void ShortSpansThrowNamingTheShape()
    {
        var s = new Conv2dShape(2, 3, 7, 5, 4, 3, 3, 2, 1);
        var x = new float[s.InputLength];
        var w = new float[s.WeightLength];
        var y = new float[s.OutputLength];
        var bias = new float[s.Cout];
        string shape = "x[2,3,7,5] w[4,3,3,3] stride 2 pad 1 -> y[2,4,4,3]";
        Assert.Multiple(() =>
        {
            Assert.That(() => Conv2dCpu.Forward(s, x.AsSpan(1), w, bias, y), Throws.TypeOf<KernelException>().With.Message.Contains("x has").And.Message.Contains(shape));
            Assert.That(() => Conv2dCpu.Forward(s, x, w.AsSpan(1), bias, y), Throws.TypeOf<KernelException>().With.Message.Contains("w has"));
            Assert.That(() => Conv2dCpu.Forward(s, x, w, bias.AsSpan(1), y), Throws.TypeOf<KernelException>().With.Message.Contains("bias has"));
            Assert.That(() => Conv2dCpu.Forward(s, x, w, bias, y.AsSpan(1)), Throws.TypeOf<KernelException>().With.Message.Contains("y has"));
            Assert.That(() => Conv2dCpu.BackwardInput(s, y.AsSpan(1), w, x), Throws.TypeOf<KernelException>().With.Message.Contains("dy has"));
            Assert.That(() => Conv2dCpu.BackwardInput(s, y, w, x.AsSpan(1)), Throws.TypeOf<KernelException>().With.Message.Contains("dx has"));
            Assert.That(() => Conv2dCpu.BackwardWeight(s, x, y, w.AsSpan(1), bias), Throws.TypeOf<KernelException>().With.Message.Contains("dw has"));
            Assert.That(() => Conv2dCpu.BackwardWeight(s, x, y, w, bias.AsSpan(1)), Throws.TypeOf<KernelException>().With.Message.Contains("db has"));
        });
    }

    [Test]
    public void OutputSizeFollowsTheFormula()
    {
        var s = new Conv2dShape(1, 1, 7, 5, 1, 5, 3, 2, 1);
        Assert.That((s.OutH, s.OutW), Is.EqualTo(((7 + 2 - 5) / 2 + 1, (5 + 2 - 3) / 2 + 1)));
    }
}
