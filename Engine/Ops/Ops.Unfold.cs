using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// im2col (Chellapilla et al. 2006; torch's <c>unfold</c>): the sliding k x k patches of an NCHW input x[N, C, H, W]
    /// with zero padding and a stride, as columns: y[n, (c, i, j), (oh, ow)] = x[n, c, oh S - pad + i, ow S - pad + j]
    /// (0 outside the image), y of shape [N, C KH KW, OutH OutW]. One strided copy from the padded input. Linear; its
    /// gradient is <see cref="Fold2d"/>, its adjoint, so both stay differentiable to any order.
    /// </summary>
    public static Tensor Unfold2d(Tensor x, int kernelH, int kernelW, int stride = 1, int padding = 0)
    {
        const string op = "Unfold2d";
        RequireNchw(op, x);
        var s = PatchShape(op, x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3], kernelH, kernelW, stride, padding, $"input {ShapeUtil.Format(x.Shape)}");
        var y = NewLike(x, [s.N, s.Cin * s.KH * s.KW, s.OutH * s.OutW]);
        var padded = padding == 0 ? x : PadKernel(x, padding);
        int hp = s.H + 2 * padding, wp = s.W + 2 * padding;
        // Patch element (n, c, i, j, oh, ow) sits at (oh S + i, ow S + j) of the padded image: a 6-axis strided view.
        long plane = (long)hp * wp;
        x.Backend.CopyStrided(padded.Buffer, 0, [s.Cin * plane, plane, wp, 1, (long)stride * wp, stride],
            y.Buffer, 0, ShapeUtil.Strides([s.N, s.Cin, s.KH, s.KW, s.OutH, s.OutW]), [s.N, s.Cin, s.KH, s.KW, s.OutH, s.OutW]);
        if (!ReferenceEquals(padded, x)) padded.Dispose();
        return Autograd.Record(y, op, [x], g => [Fold2d(g, s.Cin, s.H, s.W, kernelH, kernelW, stride, padding)]);
    }

    /// <summary>
    /// col2im (torch's <c>fold</c>), the adjoint of <see cref="Unfold2d"/>: sums every column entry back onto the pixel
    /// it was taken from, y[n, c, h, w] = Σ over the patches (i, j, oh, ow) with oh S - pad + i = h and
    /// ow S - pad + j = w of cols[n, (c, i, j), (oh, ow)], for cols [N, C KH KW, OutH OutW] and y [N, C, H, W].
    /// The patches of one offset (i, j) never overlap, so one strided copy puts each offset in a plane of its own
    /// (padded), a sum over the KH KW planes adds them, and a copy drops the padding. Its gradient is <see cref="Unfold2d"/>.
    /// </summary>
    public static Tensor Fold2d(Tensor columns, int channels, int height, int width, int kernelH, int kernelW, int stride = 1, int padding = 0)
    {
        const string op = "Fold2d";
        if (columns.Rank != 3) throw new TensorException(op, $"needs columns [N, C KH KW, OutH OutW], got {ShapeUtil.Format(columns.Shape)}");
        var s = PatchShape(op, columns.Shape[0], channels, height, width, kernelH, kernelW, stride, padding, $"columns {ShapeUtil.Format(columns.Shape)} to [{columns.Shape[0]},{channels},{height},{width}]");
        RequireShape(op, "columns", columns.Shape, [s.N, s.Cin * s.KH * s.KW, s.OutH * s.OutW]);
        int hp = height + 2 * padding, wp = width + 2 * padding, taps = kernelH * kernelW;
        long plane = (long)hp * wp;
        var be = columns.Backend;
        var planes = Tensor.Zeros([s.N * s.Cin, taps, hp, wp], columns.DType, columns.Device);
        // Column entry (n, c, i, j, oh, ow) goes to plane (i, j) of (n, c) at (oh S + i, ow S + j).
        be.CopyStrided(columns.Buffer, 0, ShapeUtil.Strides([s.N, s.Cin, s.KH, s.KW, s.OutH, s.OutW]),
            planes.Buffer, 0, [s.Cin * taps * plane, taps * plane, kernelW * plane + wp, plane + 1, (long)stride * wp, stride],
            [s.N, s.Cin, s.KH, s.KW, s.OutH, s.OutW]);
        var summed = NewLike(columns, [s.N, s.Cin, hp, wp]);
        be.Reduce(ReduceOp.Sum, planes.Buffer, summed.Buffer, s.N * s.Cin, taps, (int)plane);
        planes.Dispose();
        Tensor y = summed;
        if (padding > 0)
        {
            y = NewLike(columns, [s.N, s.Cin, height, width]);
            be.CopyStrided(summed.Buffer, padding * wp + padding, [s.Cin * plane, plane, wp, 1], y.Buffer, 0, ShapeUtil.Strides(y.Shape), y.Shape);
            summed.Dispose();
        }
        return Autograd.Record(y, op, [columns], g => [Unfold2d(g, kernelH, kernelW, stride, padding)]);
    }

    /// <summary>
    /// <see cref="Conv2d"/> from primitives: y[n] = W · Unfold2d(x)[n] + b with W the weight viewed as [Cout, Cin KH KW],
    /// a batched GEMM over the im2col columns. The path of backends without <see cref="IConvolutionKernels"/>;
    /// differentiable to any order through <see cref="Unfold2d"/>, <see cref="MatMul"/> and <see cref="Add"/>.
    /// </summary>
    public static Tensor Conv2dComposite(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0)
    {
        const string op = "Conv2dComposite";
        SameDevice(op, x, weight);
        if (bias is not null) SameDevice(op, x, bias);
        var s = ConvShape(op, x.Shape, weight.Shape, stride, padding);
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != s.Cout))
            throw new TensorException(op, $"bias {ShapeUtil.Format(bias.Shape)} does not match weight {ShapeUtil.Format(weight.Shape)} (expected [{s.Cout}])");
        var columns = Unfold2d(x, s.KH, s.KW, stride, padding);
        var y = Reshape(MatMul(Reshape(weight, s.Cout, -1), columns), OutputShape(s));
        return bias is null ? y : Add(y, Reshape(bias, s.Cout, 1, 1));
    }

    /// <summary>dx = Fold2d(Wᵀ · dy[n]): the adjoint of <see cref="Conv2dComposite"/> in x.</summary>
    private static Tensor Conv2dBackwardInputComposite(Conv2dShape s, Tensor dy, Tensor weight)
    {
        var columns = MatMul(Reshape(weight, s.Cout, -1), Reshape(dy, s.N, s.Cout, s.OutH * s.OutW), transposeA: true);
        return Fold2d(columns, s.Cin, s.H, s.W, s.KH, s.KW, s.Stride, s.Pad);
    }

    /// <summary>dw = Σ_n dy[n] · Unfold2d(x)[n]ᵀ: the adjoint of <see cref="Conv2dComposite"/> in the weight.</summary>
    private static Tensor Conv2dBackwardWeightComposite(Conv2dShape s, Tensor x, Tensor dy)
    {
        var perSample = MatMul(Reshape(dy, s.N, s.Cout, s.OutH * s.OutW), Unfold2d(x, s.KH, s.KW, s.Stride, s.Pad), transposeB: true);
        return Reshape(Sum(perSample, [0]), s.Cout, s.Cin, s.KH, s.KW);
    }

    /// <summary>A zero-padded copy of NCHW x, <paramref name="padding"/> on every side (no graph).</summary>
    private static Tensor PadKernel(Tensor x, int padding)
    {
        int n = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        var y = Tensor.Zeros([n, c, h + 2 * padding, w + 2 * padding], x.DType, x.Device);
        var ys = ShapeUtil.Strides(y.Shape);
        x.Backend.CopyStrided(x.Buffer, 0, ShapeUtil.Strides(x.Shape), y.Buffer, padding * ys[2] + padding, ys, x.Shape);
        return y;
    }

    /// <summary>The patch geometry of an unfold or fold, as the <see cref="Conv2dShape"/> of a one-output-channel convolution.</summary>
    private static Conv2dShape PatchShape(string op, int n, int c, int h, int w, int kh, int kw, int stride, int padding, string desc)
    {
        desc += $", kernel {kh}x{kw}, stride {stride}, padding {padding}";
        if (n < 0 || c <= 0 || h <= 0 || w <= 0 || kh <= 0 || kw <= 0)
            throw new TensorException(op, $"needs positive channels, image and kernel sizes (batch >= 0): {desc}");
        if (stride <= 0 || padding < 0) throw new TensorException(op, $"needs stride >= 1 and padding >= 0: {desc}");
        if (kh > h + 2 * padding || kw > w + 2 * padding)
            throw new TensorException(op, $"kernel {kh}x{kw} is larger than the padded input {h + 2 * padding}x{w + 2 * padding}: {desc}");
        return new Conv2dShape(n, c, h, w, 1, kh, kw, stride, padding);
    }
}
