using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Gemm;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// Shape of a 2-D convolution over contiguous NCHW float32 data: input x[N, Cin, H, W], weight
/// w[Cout, Cin, KH, KW], bias[Cout], output y[N, Cout, OutH, OutW]; the same stride and zero padding on
/// both spatial axes.
/// </summary>
/// <param name="N">Batch size.</param>
/// <param name="Cin">Input channels.</param>
/// <param name="H">Input height.</param>
/// <param name="W">Input width.</param>
/// <param name="Cout">Output channels.</param>
/// <param name="KH">Kernel height.</param>
/// <param name="KW">Kernel width.</param>
/// <param name="Stride">Step between neighbouring output pixels, in input pixels.</param>
/// <param name="Pad">Zero padding added on every side of the input.</param>
public readonly record struct Conv2dShape(int N, int Cin, int H, int W, int Cout, int KH, int KW, int Stride, int Pad)
{
    /// <summary>Output height, (H + 2 Pad - KH) / Stride + 1.</summary>
    public int OutH => (H + 2 * Pad - KH) / Stride + 1;

    /// <summary>Output width, (W + 2 Pad - KW) / Stride + 1.</summary>
    public int OutW => (W + 2 * Pad - KW) / Stride + 1;

    /// <summary>Elements of the input x.</summary>
    public long InputLength => (long)N * Cin * H * W;

    /// <summary>Elements of the weight w.</summary>
    public long WeightLength => (long)Cout * Cin * KH * KW;

    /// <summary>Elements of the output y.</summary>
    public long OutputLength => (long)N * Cout * OutH * OutW;

    /// <summary>Throws a <see cref="KernelException"/> unless every size is usable.</summary>
    public void Validate()
    {
        if (N <= 0 || Cin <= 0 || H <= 0 || W <= 0 || Cout <= 0 || KH <= 0 || KW <= 0)
            throw new KernelException("Conv2d", $"sizes must be positive, got {this}");
        if (Stride <= 0) throw new KernelException("Conv2d", $"stride must be positive, got {this}");
        if (Pad < 0) throw new KernelException("Conv2d", $"padding must not be negative, got {this}");
        if (KH > H + 2 * Pad || KW > W + 2 * Pad)
            throw new KernelException("Conv2d", $"kernel {KH}x{KW} is larger than the padded input {H + 2 * Pad}x{W + 2 * Pad}, {this}");
        if (InputLength > Array.MaxLength || WeightLength > Array.MaxLength || OutputLength > Array.MaxLength
            || (long)Cin * KH * KW * OutH * OutW > Array.MaxLength)
            throw new KernelException("Conv2d", $"tensors exceed {Array.MaxLength} elements, {this}");
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        string input = $"x[{N},{Cin},{H},{W}] w[{Cout},{Cin},{KH},{KW}] stride {Stride} pad {Pad}";
        return Stride > 0 ? $"{input} -> y[{N},{Cout},{OutH},{OutW}]" : input;
    }
}

/// <summary>
/// Conv2d forward and backward on the CPU as im2col + GEMM (Chellapilla et al. 2006): with
/// K = Cin KH KW and P = OutH OutW, image n gives col[n] (K x P) with
/// col[(c, kh, kw), (oh, ow)] = x[n, c, oh S - pad + kh, ow S - pad + kw] (0 outside the image), and
/// <list type="bullet">
/// <item>forward: y[n] (Cout x P) = w (Cout x K) · col[n] + bias,</item>
/// <item>weight gradient: dw = Σ_n dy[n] · col[n]ᵀ, db[co] = Σ_{n,p} dy[n, co, p],</item>
/// <item>input gradient: dcol = wᵀ · dy[n], then dx[n] = col2im(dcol), the scatter-add adjoint of im2col.</item>
/// </list>
/// col is built for a block of output pixels at a time in a per-thread scratch buffer, so memory stays
/// bounded for large images and nothing is allocated per call once the buffers have grown.
/// A 1x1, stride 1, pad 0 convolution needs no im2col: col[n] is x[n] itself.
/// Outputs must not overlap inputs.
/// </summary>
public static unsafe class Conv2dCpu
{
    /// <summary>
    /// Most floats of one col block (4 MiB). The K3/K4 workloads fit one image per block, so the GEMM sees
    /// the full P columns; larger images are cut into pixel blocks of at most this size.
    /// </summary>
    private const int ColumnBlockFloats = 1 << 20;

    /// <summary>Pixel blocks are rounded up to a multiple of this (one 512-bit vector of floats).</summary>
    private const int PixelBlockAlign = 16;

    /// <summary>Channels per task when im2col/col2im of one image is split over the cores.</summary>
    private const int MinChannelsPerTask = 4;

    [ThreadStatic] private static float[]? t_scratch;

    /// <summary>y = conv2d(x, w) + bias. <paramref name="bias"/> is [Cout] or empty for none.</summary>
    public static void Forward(Conv2dShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> y)
    {
        s.Validate();
        Require(s, "x", x.Length, s.InputLength);
        Require(s, "w", w.Length, s.WeightLength);
        if (!bias.IsEmpty) Require(s, "bias", bias.Length, s.Cout);
        Require(s, "y", y.Length, s.OutputLength);
        fixed (float* px = x, pw = w, pb = bias, py = y)
        {
            float* xp = px, wp = pw, bp = bias.IsEmpty ? null : pb, yp = py;
            var plan = new Plan(s);
            if (plan.OverImages)
            {
                CpuParallel.For(s.N, 1, (n0, n1) =>
                {
                    float* col = plan.Direct ? null : Scratch(plan.ColFloats);
                    for (long n = n0; n < n1; n++) ForwardImage(plan, (int)n, xp, wp, bp, yp, col, splitIm2col: false);
                });
            }
            else
            {
                float* col = plan.Direct ? null : Scratch(plan.ColFloats);
                for (int n = 0; n < s.N; n++) ForwardImage(plan, n, xp, wp, bp, yp, col, splitIm2col: true);
            }
        }
    }

    /// <summary>dx = ∂L/∂x given dy = ∂L/∂y (dx is overwritten).</summary>
    public static void BackwardInput(Conv2dShape s, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, Span<float> dx)
    {
        s.Validate();
        Require(s, "dy", dy.Length, s.OutputLength);
        Require(s, "w", w.Length, s.WeightLength);
        Require(s, "dx", dx.Length, s.InputLength);
        fixed (float* pdy = dy, pw = w, pdx = dx)
        {
            float* dyp = pdy, wp = pw, dxp = pdx;
            var plan = new Plan(s);
            if (plan.OverImages)
            {
                CpuParallel.For(s.N, 1, (n0, n1) =>
                {
                    float* dcol = plan.Direct ? null : Scratch(plan.ColFloats);
                    for (long n = n0; n < n1; n++) BackwardInputImage(plan, (int)n, dyp, wp, dxp, dcol, splitCol2im: false);
                });
            }
            else
            {
                float* dcol = plan.Direct ? null : Scratch(plan.ColFloats);
                for (int n = 0; n < s.N; n++) BackwardInputImage(plan, n, dyp, wp, dxp, dcol, splitCol2im: true);
            }
        }
    }

    /// <summary>
    /// dw = ∂L/∂w and db = ∂L/∂bias given x and dy = ∂L/∂y (both overwritten; an empty
    /// <paramref name="db"/> skips the bias gradient).
    /// </summary>
    public static void BackwardWeight(Conv2dShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dw, Span<float> db)
    {
        s.Validate();
        Require(s, "x", x.Length, s.InputLength);
        Require(s, "dy", dy.Length, s.OutputLength);
        Require(s, "dw", dw.Length, s.WeightLength);
        if (!db.IsEmpty) Require(s, "db", db.Length, s.Cout);
        if (!db.IsEmpty) BiasGradient(s, dy, db);
        fixed (float* px = x, pdy = dy, pdw = dw)
        {
            float* xp = px, dyp = pdy, dwp = pdw;
            var plan = new Plan(s);
            int dwLength = (int)s.WeightLength;
            if (plan.OverImages)
            {
                // Each task sums its images into a private partial dw, then adds it to dw under a lock:
                // the partials cost Cout·K floats per task, far less than the GEMMs that produce them.
                new Span<float>(dwp, dwLength).Clear();
                var gate = new object();
                CpuParallel.For(s.N, 1, (n0, n1) =>
                {
                    float* scratch = Scratch((long)dwLength + plan.ColFloats);
                    float* partial = scratch, col = plan.Direct ? null : scratch + dwLength;
                    for (long n = n0; n < n1; n++) WeightGradientImage(plan, (int)n, xp, dyp, partial, col, accumulate: n > n0, splitIm2col: false);
                    lock (gate) TensorPrimitives.Add(new ReadOnlySpan<float>(dwp, dwLength), new ReadOnlySpan<float>(partial, dwLength), new Span<float>(dwp, dwLength));
                });
            }
            else
            {
                float* col = plan.Direct ? null : Scratch(plan.ColFloats);
                for (int n = 0; n < s.N; n++) WeightGradientImage(plan, n, xp, dyp, dwp, col, accumulate: n > 0, splitIm2col: true);
            }
        }
    }

    /// <summary>Sizes that every image of one call shares.</summary>
    private readonly struct Plan
    {
        public readonly Conv2dShape S;
        public readonly int K, P, PixelBlock, ColFloats;
        public readonly bool Direct, OverImages;

        public Plan(Conv2dShape s)
        {
            S = s;
            K = s.Cin * s.KH * s.KW;
            P = s.OutH * s.OutW;
            Direct = s.KH == 1 && s.KW == 1 && s.Stride == 1 && s.Pad == 0;
            if (Direct)
            {
                PixelBlock = P;
                ColFloats = 0;
            }
            else
            {
                int blocks = (int)Math.Max(1, ((long)K * P + ColumnBlockFloats - 1) / ColumnBlockFloats);
                int block = (P + blocks - 1) / blocks;
                PixelBlock = Math.Min(P, (block + PixelBlockAlign - 1) / PixelBlockAlign * PixelBlockAlign);
                ColFloats = K * PixelBlock;
            }
            // One image per task keeps every core on its own GEMMs with no synchronisation; but when the
            // images do not split evenly (N = 3 on 2 cores runs at 2/3 speed) the GEMM's own threading is
            // the better split, unless there are enough images for the imbalance to be small.
            int threads = CpuParallel.Threads;
            OverImages = threads > 1 && s.N >= threads && (s.N % threads == 0 || s.N >= 4 * threads);
        }
    }

    private static void ForwardImage(in Plan plan, int n, float* x, float* w, float* bias, float* y, float* col, bool splitIm2col)
    {
        var s = plan.S;
        int K = plan.K, P = plan.P;
        float* xn = x + (long)n * s.Cin * s.H * s.W;
        float* yn = y + (long)n * s.Cout * P;
        var wSpan = new ReadOnlySpan<float>(w, s.Cout * K);
        for (int p0 = 0; p0 < P; p0 += plan.PixelBlock)
        {
            int pb = Math.Min(plan.PixelBlock, P - p0);
            // The bias is written first and the GEMM accumulates onto it (beta = 1): no second pass over y.
            if (bias != null)
                for (int co = 0; co < s.Cout; co++) new Span<float>(yn + (long)co * P + p0, pb).Fill(bias[co]);
            float beta = bias != null ? 1f : 0f;
            var ySpan = new Span<float>(yn + p0, (s.Cout - 1) * P + pb);
            if (plan.Direct)
            {
                GemmCpu.Sgemm(false, false, s.Cout, pb, K, 1f, wSpan, K, new ReadOnlySpan<float>(xn + p0, (K - 1) * P + pb), P, beta, ySpan, P);
            }
            else
            {
                Im2col(s, xn, col, p0, pb, splitIm2col);
                GemmCpu.Sgemm(false, false, s.Cout, pb, K, 1f, wSpan, K, new ReadOnlySpan<float>(col, K * pb), pb, beta, ySpan, P);
            }
        }
    }

    private static void BackwardInputImage(in Plan plan, int n, float* dy, float* w, float* dx, float* dcol, bool splitCol2im)
    {
        var s = plan.S;
        int K = plan.K, P = plan.P;
        int imageLength = s.Cin * s.H * s.W;
        float* dxn = dx + (long)n * imageLength;
        float* dyn = dy + (long)n * s.Cout * P;
        var wSpan = new ReadOnlySpan<float>(w, s.Cout * K);
        if (plan.Direct)
        {
            // dx[n] (Cin x HW) = wᵀ (Cin x Cout) · dy[n] (Cout x HW).
            GemmCpu.Sgemm(true, false, K, P, s.Cout, 1f, wSpan, K, new ReadOnlySpan<float>(dyn, s.Cout * P), P, 0f, new Span<float>(dxn, imageLength), P);
            return;
        }
        new Span<float>(dxn, imageLength).Clear();
        for (int p0 = 0; p0 < P; p0 += plan.PixelBlock)
        {
            int pb = Math.Min(plan.PixelBlock, P - p0);
            GemmCpu.Sgemm(true, false, K, pb, s.Cout, 1f, wSpan, K, new ReadOnlySpan<float>(dyn + p0, (s.Cout - 1) * P + pb), P, 0f, new Span<float>(dcol, K * pb), pb);
            Col2im(s, dcol, dxn, p0, pb, splitCol2im);
        }
    }

    private static void WeightGradientImage(in Plan plan, int n, float* x, float* dy, float* dw, float* col, bool accumulate, bool splitIm2col)
    {
        var s = plan.S;
        int K = plan.K, P = plan.P;
        float* xn = x + (long)n * s.Cin * s.H * s.W;
        float* dyn = dy + (long)n * s.Cout * P;
        var dwSpan = new Span<float>(dw, s.Cout * K);
        for (int p0 = 0; p0 < P; p0 += plan.PixelBlock)
        {
            int pb = Math.Min(plan.PixelBlock, P - p0);
            float beta = accumulate || p0 > 0 ? 1f : 0f;
            var dySpan = new ReadOnlySpan<float>(dyn + p0, (s.Cout - 1) * P + pb);
            if (plan.Direct)
            {
                // dw (Cout x Cin) += dy[n] (Cout x HW) · x[n]ᵀ (HW x Cin).
                GemmCpu.Sgemm(false, true, s.Cout, K, pb, 1f, dySpan, P, new ReadOnlySpan<float>(xn + p0, (K - 1) * P + pb), P, beta, dwSpan, K);
            }
            else
            {
                Im2col(s, xn, col, p0, pb, splitIm2col);
                GemmCpu.Sgemm(false, true, s.Cout, K, pb, 1f, dySpan, P, new ReadOnlySpan<float>(col, K * pb), pb, beta, dwSpan, K);
            }
        }
    }

    /// <summary>db[co] = Σ_n Σ_p dy[n, co, p], each row summed by SIMD and the rows added in double.</summary>
    private static void BiasGradient(Conv2dShape s, ReadOnlySpan<float> dy, Span<float> db)
    {
        int P = s.OutH * s.OutW;
        for (int co = 0; co < s.Cout; co++)
        {
            double sum = 0;
            for (int n = 0; n < s.N; n++) sum += TensorPrimitives.Sum(dy.Slice((n * s.Cout + co) * P, P));
            db[co] = (float)sum;
        }
    }

    /// <summary>
    /// Fills col (K x pb) with the input patches of output pixels [p0, p0 + pb) of one image, split over
    /// input channels when <paramref name="split"/> is set.
    /// </summary>
    private static void Im2col(in Conv2dShape s, float* xn, float* col, int p0, int pb, bool split)
    {
        if (!split || s.Cin < 2 * MinChannelsPerTask)
        {
            Im2colChannels(s, xn, col, p0, pb, 0, s.Cin);
            return;
        }
        var shape = s;
        CpuParallel.For(s.Cin, MinChannelsPerTask, (c0, c1) => Im2colChannels(shape, xn, col, p0, pb, (int)c0, (int)c1));
    }

    private static void Im2colChannels(in Conv2dShape s, float* xn, float* col, int p0, int pb, int c0, int c1)
    {
        int OW = s.OutW, S = s.Stride;
        int ohFirst = p0 / OW, ohLast = (p0 + pb - 1) / OW;
        for (int c = c0; c < c1; c++)
        {
            float* xc = xn + (long)c * s.H * s.W;
            for (int kh = 0; kh < s.KH; kh++)
            {
                for (int kw = 0; kw < s.KW; kw++)
                {
                    float* dst = col + (long)((c * s.KH + kh) * s.KW + kw) * pb - p0;
                    // Output columns whose input column iw = ow S - pad + kw lies inside [0, W).
                    int owValidLo = CeilDiv(s.Pad - kw, S), owValidHi = FloorDiv(s.W - 1 + s.Pad - kw, S) + 1;
                    for (int oh = ohFirst; oh <= ohLast; oh++)
                    {
                        int owStart = oh == ohFirst ? p0 - oh * OW : 0;
                        int owEnd = oh == ohLast ? p0 + pb - oh * OW : OW;
                        float* d = dst + oh * OW;
                        int ih = oh * S - s.Pad + kh;
                        if ((uint)ih >= (uint)s.H)
                        {
                            ZeroRow(d + owStart, owEnd - owStart);
                            continue;
                        }
                        int lo = Math.Clamp(owValidLo, owStart, owEnd), hi = Math.Clamp(owValidHi, lo, owEnd);
                        ZeroRow(d + owStart, lo - owStart);
                        ZeroRow(d + hi, owEnd - hi);
                        float* src = xc + (long)ih * s.W - s.Pad + kw;
                        if (S == 1)
                        {
                            CopyRow(src + lo, d + lo, hi - lo);
                        }
                        else
                        {
                            for (int ow = lo; ow < hi; ow++) d[ow] = src[ow * S];
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Adds dcol (K x pb), the gradient of the patches of output pixels [p0, p0 + pb), back onto dx of one
    /// image (the adjoint of <see cref="Im2col"/>). Split over input channels, since the patches of one
    /// channel overlap each other but never another channel's.
    /// </summary>
    private static void Col2im(in Conv2dShape s, float* dcol, float* dxn, int p0, int pb, bool split)
    {
        if (!split || s.Cin < 2 * MinChannelsPerTask)
        {
            Col2imChannels(s, dcol, dxn, p0, pb, 0, s.Cin);
            return;
        }
        var shape = s;
        CpuParallel.For(s.Cin, MinChannelsPerTask, (c0, c1) => Col2imChannels(shape, dcol, dxn, p0, pb, (int)c0, (int)c1));
    }

    private static void Col2imChannels(in Conv2dShape s, float* dcol, float* dxn, int p0, int pb, int c0, int c1)
    {
        int OW = s.OutW, S = s.Stride;
        int ohFirst = p0 / OW, ohLast = (p0 + pb - 1) / OW;
        for (int c = c0; c < c1; c++)
        {
            float* dxc = dxn + (long)c * s.H * s.W;
            for (int kh = 0; kh < s.KH; kh++)
            {
                for (int kw = 0; kw < s.KW; kw++)
                {
                    float* src = dcol + (long)((c * s.KH + kh) * s.KW + kw) * pb - p0;
                    int owValidLo = CeilDiv(s.Pad - kw, S), owValidHi = FloorDiv(s.W - 1 + s.Pad - kw, S) + 1;
                    for (int oh = ohFirst; oh <= ohLast; oh++)
                    {
                        int ih = oh * S - s.Pad + kh;
                        if ((uint)ih >= (uint)s.H) continue;
                        int owStart = oh == ohFirst ? p0 - oh * OW : 0;
                        int owEnd = oh == ohLast ? p0 + pb - oh * OW : OW;
                        int lo = Math.Clamp(owValidLo, owStart, owEnd), hi = Math.Clamp(owValidHi, lo, owEnd);
                        if (hi <= lo) continue;
                        float* s0 = src + oh * OW;
                        float* d = dxc + (long)ih * s.W - s.Pad + kw;
                        if (S == 1)
                        {
                            AddRow(s0 + lo, d + lo, hi - lo);
                        }
                        else
                        {
                            for (int ow = lo; ow < hi; ow++) d[ow * S] += s0[ow];
                        }
                    }
                }
            }
        }
    }

    // The rows of im2col and col2im are one output row long (often 8 to 64 floats): too short for the
    // call overhead of Span.CopyTo or TensorPrimitives to vanish, so they are copied and added inline.

    private static void CopyRow(float* src, float* dst, int length)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= length - Vector512<float>.Count; i += Vector512<float>.Count) Vector512.Store(Vector512.Load(src + i), dst + i);
        for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count) Vector256.Store(Vector256.Load(src + i), dst + i);
        for (; i < length; i++) dst[i] = src[i];
    }

    private static void AddRow(float* src, float* dst, int length)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= length - Vector512<float>.Count; i += Vector512<float>.Count) Vector512.Store(Vector512.Load(dst + i) + Vector512.Load(src + i), dst + i);
        for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count) Vector256.Store(Vector256.Load(dst + i) + Vector256.Load(src + i), dst + i);
        for (; i < length; i++) dst[i] += src[i];
    }

    private static void ZeroRow(float* dst, int length)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= length - Vector512<float>.Count; i += Vector512<float>.Count) Vector512.Store(Vector512<float>.Zero, dst + i);
        for (; i < length; i++) dst[i] = 0f;
    }

    /// <summary>
    /// This thread's scratch buffer of at least <paramref name="floats"/> floats. It lives on the pinned
    /// heap, so its address stays valid while other threads fill it, and it only grows.
    /// </summary>
    private static float* Scratch(long floats)
    {
        var buffer = t_scratch;
        if (buffer == null || buffer.Length < floats)
        {
            if (floats > Array.MaxLength) throw new KernelException("Conv2d", $"scratch of {floats} floats exceeds the largest managed array ({Array.MaxLength})");
            buffer = GC.AllocateUninitializedArray<float>((int)floats, pinned: true);
            t_scratch = buffer;
        }
        return (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref buffer[0]);
    }

    private static void Require(in Conv2dShape s, string name, int actual, long needed)
    {
        if (actual < needed) throw new KernelException("Conv2d", $"{name} has {actual} elements, needs {needed} for {s}");
    }

    private static int FloorDiv(int a, int b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    private static int CeilDiv(int a, int b) => -FloorDiv(-a, b);
}
