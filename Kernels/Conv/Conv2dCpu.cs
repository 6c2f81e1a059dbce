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

/// <summary>The algorithms of <see cref="Conv2dCpu"/>; <see cref="Conv2dCpu.Supports"/> says which apply to a shape.</summary>
public enum Conv2dAlgorithm
{
    /// <summary>The one <see cref="Conv2dCpu.Choose"/> picks for the shape and pass.</summary>
    Auto,

    /// <summary>
    /// A 1x1, stride 1, pad 0 convolution as one GEMM per image (x[n] is already the Cin x HW matrix); forward and
    /// input gradient only.
    /// </summary>
    Gemm,

    /// <summary>Direct convolution over a padded, phase-split copy of each image (every shape, every pass).</summary>
    Direct,

    /// <summary>Winograd's F(2x2, 3x3) (3x3 kernels, stride 1, pad at most 2; every pass).</summary>
    Winograd,

    /// <summary>
    /// Direct convolution with the output channels in vectors and input pixels broadcast: no position of the
    /// padded grid computed and dropped (forward only).
    /// </summary>
    DirectChannels,
}

/// <summary>The three passes of a convolution.</summary>
public enum Conv2dPass
{
    /// <summary>y from x and w.</summary>
    Forward,

    /// <summary>dx from dy and w.</summary>
    BackwardInput,

    /// <summary>dw and db from x and dy.</summary>
    BackwardWeight,
}

/// <summary>
/// Conv2d forward and backward on the CPU, float32 NCHW, no im2col. Each pass picks an algorithm per shape
/// (<see cref="Choose"/>): direct convolution over a padded, phase-split copy of each image in general
/// (<see cref="ConvDirectCpu"/>), and one GEMM per image for 1x1, stride 1, pad 0 convolutions.
/// Every path runs at the widest vector width the machine accelerates (AVX-512, AVX2+FMA, or Vector128 on
/// ARM64 and elsewhere), chosen once per process. dw and db do not depend on the thread count.
/// Outputs must not overlap inputs.
/// </summary>
public static unsafe class Conv2dCpu
{
    /// <summary>y = conv2d(x, w) + bias. <paramref name="bias"/> is [Cout] or empty for none.</summary>
    public static void Forward(Conv2dShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> y)
        => Forward(s, x, w, bias, y, Conv2dAlgorithm.Auto);

    /// <summary>y = conv2d(x, w) + bias with the algorithm given (<see cref="Conv2dAlgorithm.Auto"/> to choose).</summary>
    public static void Forward(Conv2dShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> bias, Span<float> y, Conv2dAlgorithm algorithm)
    {
        s.Validate();
        Require(s, "x", x.Length, s.InputLength);
        Require(s, "w", w.Length, s.WeightLength);
        if (!bias.IsEmpty) Require(s, "bias", bias.Length, s.Cout);
        Require(s, "y", y.Length, s.OutputLength);
        algorithm = Resolve(s, Conv2dPass.Forward, algorithm);
        fixed (float* px = x, pw = w, pb = bias, py = y)
        {
            float* bp = bias.IsEmpty ? null : pb;
            if (algorithm == Conv2dAlgorithm.Gemm) GemmForward(s, px, pw, bp, py);
            else if (algorithm == Conv2dAlgorithm.Winograd) ConvWinogradCpu.Forward(s, px, pw, bp, py);
            else if (algorithm == Conv2dAlgorithm.DirectChannels) ConvChannelsCpu.Forward(s, px, pw, bp, py);
            else ConvDirectCpu.Forward(s, px, pw, bp, py);
        }
    }

    /// <summary>dx = ∂L/∂x given dy = ∂L/∂y (dx is overwritten).</summary>
    public static void BackwardInput(Conv2dShape s, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, Span<float> dx)
        => BackwardInput(s, dy, w, dx, Conv2dAlgorithm.Auto);

    /// <summary>dx = ∂L/∂x given dy = ∂L/∂y with the algorithm given (<see cref="Conv2dAlgorithm.Auto"/> to choose).</summary>
    public static void BackwardInput(Conv2dShape s, ReadOnlySpan<float> dy, ReadOnlySpan<float> w, Span<float> dx, Conv2dAlgorithm algorithm)
    {
        s.Validate();
        Require(s, "dy", dy.Length, s.OutputLength);
        Require(s, "w", w.Length, s.WeightLength);
        Require(s, "dx", dx.Length, s.InputLength);
        algorithm = Resolve(s, Conv2dPass.BackwardInput, algorithm);
        fixed (float* pdy = dy, pw = w, pdx = dx)
        {
            if (algorithm == Conv2dAlgorithm.Gemm) GemmBackwardInput(s, pdy, pw, pdx);
            else if (algorithm == Conv2dAlgorithm.Winograd) ConvWinogradCpu.BackwardInput(s, pdy, pw, pdx);
            else ConvDirectCpu.BackwardInput(s, pdy, pw, pdx);
        }
    }

    /// <summary>
    /// dw = ∂L/∂w and db = ∂L/∂bias given x and dy = ∂L/∂y (both overwritten; an empty
    /// <paramref name="db"/> skips the bias gradient).
    /// </summary>
    public static void BackwardWeight(Conv2dShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dw, Span<float> db)
        => BackwardWeight(s, x, dy, dw, db, Conv2dAlgorithm.Auto);

    /// <summary>dw and db with the algorithm given (<see cref="Conv2dAlgorithm.Auto"/> to choose).</summary>
    public static void BackwardWeight(Conv2dShape s, ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dw, Span<float> db, Conv2dAlgorithm algorithm)
    {
        s.Validate();
        Require(s, "x", x.Length, s.InputLength);
        Require(s, "dy", dy.Length, s.OutputLength);
        Require(s, "dw", dw.Length, s.WeightLength);
        if (!db.IsEmpty) Require(s, "db", db.Length, s.Cout);
        algorithm = Resolve(s, Conv2dPass.BackwardWeight, algorithm);
        fixed (float* px = x, pdy = dy, pdw = dw, pdb = db)
        {
            if (algorithm == Conv2dAlgorithm.Winograd) ConvWinogradCpu.BackwardWeight(s, px, pdy, pdw, db.IsEmpty ? null : pdb);
            else ConvDirectCpu.BackwardWeight(s, px, pdy, pdw, db.IsEmpty ? null : pdb);
        }
    }

    /// <summary>True when <paramref name="algorithm"/> can run <paramref name="pass"/> of <paramref name="s"/>.</summary>
    public static bool Supports(Conv2dShape s, Conv2dPass pass, Conv2dAlgorithm algorithm) => algorithm switch
    {
        Conv2dAlgorithm.Auto or Conv2dAlgorithm.Direct => true,
        Conv2dAlgorithm.Gemm => pass != Conv2dPass.BackwardWeight && IsPointwise(s),
        Conv2dAlgorithm.Winograd => ConvWinogradCpu.Supports(s),
        Conv2dAlgorithm.DirectChannels => pass == Conv2dPass.Forward,
        _ => false,
    };

    /// <summary>
    /// Fewest input and output channels for which <see cref="Choose"/> takes Winograd: its transforms cost O(C) per
    /// tile and channel and save O(C²) products, so they pay only with enough channels on both sides.
    /// </summary>
    private const int WinogradMinChannels = 16;

    /// <summary>
    /// The algorithm <see cref="Conv2dAlgorithm.Auto"/> runs: <see cref="Conv2dAlgorithm.Winograd"/> for 3x3,
    /// stride-1 convolutions with at least 16 input and output channels, <see cref="Conv2dAlgorithm.Gemm"/> for the
    /// forward pass and input gradient of a 1x1, stride 1, pad 0 convolution; for the other forward passes
    /// <see cref="Conv2dAlgorithm.DirectChannels"/> where the positions-in-vectors grid would compute at least 8% more
    /// positions than there are output pixels (beyond what rounding Cout up to vector tiles costs it, e.g. a stride-2
    /// 3x3 convolution of a 16x16 image: 9 positions per 8 pixels); <see cref="Conv2dAlgorithm.Direct"/> for
    /// everything else.
    /// </summary>
    public static Conv2dAlgorithm Choose(Conv2dShape s, Conv2dPass pass)
    {
        if (ConvWinogradCpu.Supports(s) && s.Cin >= WinogradMinChannels && s.Cout >= WinogradMinChannels) return Conv2dAlgorithm.Winograd;
        if (pass != Conv2dPass.BackwardWeight && IsPointwise(s)) return Conv2dAlgorithm.Gemm;
        return pass == Conv2dPass.Forward && ConvChannelsCpu.Prefer(s) ? Conv2dAlgorithm.DirectChannels : Conv2dAlgorithm.Direct;
    }

    private static bool IsPointwise(in Conv2dShape s) => s.KH == 1 && s.KW == 1 && s.Stride == 1 && s.Pad == 0;

    private static Conv2dAlgorithm Resolve(in Conv2dShape s, Conv2dPass pass, Conv2dAlgorithm algorithm)
    {
        if (algorithm == Conv2dAlgorithm.Auto) return Choose(s, pass);
        if (!Supports(s, pass, algorithm)) throw new KernelException("Conv2d", $"algorithm {algorithm} cannot run the {pass} pass of {s}");
        return algorithm;
    }

    /// <summary>y[n] (Cout x HW) = w (Cout x Cin) · x[n] (Cin x HW) + bias, the bias written first (beta = 1).</summary>
    private static void GemmForward(in Conv2dShape s, float* x, float* w, float* bias, float* y)
    {
        int P = s.H * s.W;
        var wSpan = new ReadOnlySpan<float>(w, s.Cout * s.Cin);
        for (int n = 0; n < s.N; n++)
        {
            float* yn = y + (long)n * s.Cout * P;
            if (bias != null)
                for (int co = 0; co < s.Cout; co++) new Span<float>(yn + (long)co * P, P).Fill(bias[co]);
            GemmCpu.Sgemm(false, false, s.Cout, P, s.Cin, 1f, wSpan, s.Cin, new ReadOnlySpan<float>(x + (long)n * s.Cin * P, s.Cin * P), P,
                bias != null ? 1f : 0f, new Span<float>(yn, s.Cout * P), P);
        }
    }

    /// <summary>dx[n] (Cin x HW) = wᵀ (Cin x Cout) · dy[n] (Cout x HW).</summary>
    private static void GemmBackwardInput(in Conv2dShape s, float* dy, float* w, float* dx)
    {
        int P = s.H * s.W;
        var wSpan = new ReadOnlySpan<float>(w, s.Cout * s.Cin);
        for (int n = 0; n < s.N; n++)
            GemmCpu.Sgemm(true, false, s.Cin, P, s.Cout, 1f, wSpan, s.Cin, new ReadOnlySpan<float>(dy + (long)n * s.Cout * P, s.Cout * P), P,
                0f, new Span<float>(dx + (long)n * s.Cin * P, s.Cin * P), P);
    }

    private static void Require(in Conv2dShape s, string name, int actual, long needed)
    {
        if (actual < needed) throw new KernelException("Conv2d", $"{name} has {actual} elements, needs {needed} for {s}");
    }
}
