using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// 2-D convolution over NCHW tensors: x[N, Cin, H, W], weight[Cout, Cin, KH, KW], optional bias[Cout], the same
    /// stride and zero padding on both axes; y is [N, Cout, (H + 2 pad - KH)/stride + 1, (W + 2 pad - KW)/stride + 1].
    /// N may be 0 (an empty batch gives an empty result, and zero weight and bias gradients).
    /// <para>
    /// On a backend with <see cref="IConvolutionKernels"/> the op runs the fused kernels, and its backward rule is closed
    /// under differentiation: y = conv(x, w) + b gives dx = <see cref="Conv2dBackwardInput"/>(dy, w),
    /// dw = <see cref="Conv2dBackwardWeight"/>(x, dy) and db = Σ_{N,H,W} dy (dw and db in one kernel when no graph is
    /// recorded), and those two ops are recorded ops whose own gradients are again convolutions and their backward ops,
    /// so higher-order gradients run on the same kernels. Elsewhere it is <see cref="Conv2dComposite"/> (im2col and GEMM).
    /// </para>
    /// </summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias = null, int stride = 1, int padding = 0)
    {
        const string op = "Conv2d";
        SameDevice(op, x, weight);
        if (bias is not null) SameDevice(op, x, bias);
        var s = ConvShape(op, x.Shape, weight.Shape, stride, padding);
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != s.Cout))
            throw new TensorException(op, $"bias {ShapeUtil.Format(bias.Shape)} does not match weight {ShapeUtil.Format(weight.Shape)} (expected [{s.Cout}])");
        return x.Backend.GetCapability<IConvolutionKernels>() is { } conv
            ? Conv2dCore(conv, s, x, weight, bias)
            : Conv2dComposite(x, weight, bias, stride, padding);
    }

    /// <summary>
    /// The input gradient of <see cref="Conv2d"/> as an op of its own: dx = ∂L/∂x of y = conv(x, w) given dy = ∂L/∂y
    /// (the adjoint of the convolution in x). dy is [N, Cout, OutH, OutW], weight [Cout, Cin, KH, KW], and
    /// <paramref name="inputShape"/> the [N, Cin, H, W] of the forward input (it cannot be recovered from dy when the
    /// stride does not divide the padded extent). Differentiable in dy and weight.
    /// </summary>
    public static Tensor Conv2dBackwardInput(Tensor dy, Tensor weight, int[] inputShape, int stride = 1, int padding = 0)
    {
        const string op = "Conv2dBackwardInput";
        SameDevice(op, dy, weight);
        var s = ConvShape(op, inputShape, weight.Shape, stride, padding);
        RequireShape(op, "dy", dy.Shape, OutputShape(s));
        return dy.Backend.GetCapability<IConvolutionKernels>() is { } conv
            ? Conv2dBackwardInputCore(conv, s, dy, weight)
            : Conv2dBackwardInputComposite(s, dy, weight);
    }

    /// <summary>
    /// The weight gradient of <see cref="Conv2d"/> as an op of its own: dw = ∂L/∂w of y = conv(x, w) given x and
    /// dy = ∂L/∂y. <paramref name="weightShape"/> is the [Cout, Cin, KH, KW] of the forward weight.
    /// Differentiable in x and dy.
    /// </summary>
    public static Tensor Conv2dBackwardWeight(Tensor x, Tensor dy, int[] weightShape, int stride = 1, int padding = 0)
    {
        const string op = "Conv2dBackwardWeight";
        SameDevice(op, x, dy);
        var s = ConvShape(op, x.Shape, weightShape, stride, padding);
        RequireShape(op, "dy", dy.Shape, OutputShape(s));
        return x.Backend.GetCapability<IConvolutionKernels>() is { } conv
            ? Conv2dBackwardWeightCore(conv, s, x, dy)
            : Conv2dBackwardWeightComposite(s, x, dy);
    }

    /// <summary>
    /// y = conv(x, w) + b on the fused kernels, recorded with dx = BackInput(dy, w), dw = BackWeight(x, dy),
    /// db = Σ_{N,H,W} dy. Without a recorded backward pass, dw and db come from one BackWeight call (the kernel sums
    /// db while it reads dy for dw).
    /// </summary>
    private static Tensor Conv2dCore(IConvolutionKernels conv, Conv2dShape s, Tensor x, Tensor w, Tensor? bias)
    {
        var y = NewLike(x, OutputShape(s));
        conv.Conv2dForward(s, x.Buffer, w.Buffer, bias?.Buffer, y.Buffer);
        Tensor[] inputs = bias is null ? [x, w] : [x, w, bias];
        return Autograd.Record(y, "Conv2d", inputs, g =>
        {
            var dx = x.TracksGrad ? Conv2dBackwardInputCore(conv, s, g, w) : null;
            if (!Autograd.IsRecording && w.TracksGrad && bias is not null && bias.TracksGrad)
            {
                var dw = NewLike(x, [s.Cout, s.Cin, s.KH, s.KW]);
                var db = NewLike(x, [s.Cout]);
                conv.Conv2dBackwardWeight(s, x.Buffer, g.Buffer, dw.Buffer, db.Buffer);
                return [dx, dw, db];
            }
            return [dx,
                w.TracksGrad ? Conv2dBackwardWeightCore(conv, s, x, g) : null,
                bias is not null && bias.TracksGrad ? Sum(g, [0, 2, 3]) : null];
        });
    }

    /// <summary>
    /// dx = BackInput(dy, w), bilinear in (dy, w). For an upstream G shaped like x, ⟨G, BackInput(dy, w)⟩ =
    /// ⟨conv(G, w), dy⟩ = ⟨w, BackWeight(G, dy)⟩, so d/ddy = conv(G, w) and d/dw = BackWeight(G, dy).
    /// </summary>
    private static Tensor Conv2dBackwardInputCore(IConvolutionKernels conv, Conv2dShape s, Tensor dy, Tensor w)
    {
        var dx = NewLike(dy, [s.N, s.Cin, s.H, s.W]);
        conv.Conv2dBackwardInput(s, dy.Buffer, w.Buffer, dx.Buffer);
        return Autograd.Record(dx, "Conv2dBackwardInput", [dy, w], g => [
            dy.TracksGrad ? Conv2dCore(conv, s, g, w, null) : null,
            w.TracksGrad ? Conv2dBackwardWeightCore(conv, s, g, dy) : null]);
    }

    /// <summary>
    /// dw = BackWeight(x, dy), bilinear in (x, dy). For an upstream G shaped like w, ⟨G, BackWeight(x, dy)⟩ =
    /// ⟨conv(x, G), dy⟩ = ⟨x, BackInput(dy, G)⟩, so d/dx = BackInput(dy, G) and d/ddy = conv(x, G).
    /// </summary>
    private static Tensor Conv2dBackwardWeightCore(IConvolutionKernels conv, Conv2dShape s, Tensor x, Tensor dy)
    {
        var dw = NewLike(x, [s.Cout, s.Cin, s.KH, s.KW]);
        conv.Conv2dBackwardWeight(s, x.Buffer, dy.Buffer, dw.Buffer, null);
        return Autograd.Record(dw, "Conv2dBackwardWeight", [x, dy], g => [
            x.TracksGrad ? Conv2dBackwardInputCore(conv, s, dy, g) : null,
            dy.TracksGrad ? Conv2dCore(conv, s, x, g, null) : null]);
    }

    private static int[] OutputShape(Conv2dShape s) => [s.N, s.Cout, s.OutH, s.OutW];

    /// <summary>The kernel shape of x conv w, or a <see cref="TensorException"/> naming the op and both shapes.</summary>
    private static Conv2dShape ConvShape(string op, int[] xShape, int[] wShape, int stride, int padding)
    {
        string desc = $"input {ShapeUtil.Format(xShape)}, weight {ShapeUtil.Format(wShape)}, stride {stride}, padding {padding}";
        if (xShape.Length != 4 || wShape.Length != 4)
            throw new TensorException(op, $"needs an NCHW input and a [Cout, Cin, KH, KW] weight, got {desc}");
        if (xShape[1] != wShape[1])
            throw new TensorException(op, $"input channels {xShape[1]} differ from weight input channels {wShape[1]}: {desc}");
        if (xShape[0] < 0 || xShape.Skip(1).Any(d => d <= 0) || wShape.Any(d => d <= 0))
            throw new TensorException(op, $"every extent but the batch must be positive: {desc}");
        if (stride <= 0 || padding < 0)
            throw new TensorException(op, $"needs stride >= 1 and padding >= 0: {desc}");
        if (wShape[2] > xShape[2] + 2 * padding || wShape[3] > xShape[3] + 2 * padding)
            throw new TensorException(op, $"kernel {wShape[2]}x{wShape[3]} is larger than the padded input {xShape[2] + 2 * padding}x{xShape[3] + 2 * padding}: {desc}");
        return new Conv2dShape(xShape[0], xShape[1], xShape[2], xShape[3], wShape[0], wShape[2], wShape[3], stride, padding);
    }

    private static void RequireShape(string op, string name, int[] actual, int[] expected)
    {
        if (!ShapeUtil.Same(actual, expected))
            throw new TensorException(op, $"{name} has shape {ShapeUtil.Format(actual)}, expected {ShapeUtil.Format(expected)}");
    }
}
