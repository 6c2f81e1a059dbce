using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// Nearest-neighbour x2 upsampling of NCHW x[N, C, H, W] to [N, C, 2H, 2W], y[n, c, i, j] = x[n, c, i/2, j/2].
    /// Linear; its gradient is <see cref="UpsampleNearest2xBackward"/>, the adjoint (2x2 block sums).
    /// </summary>
    public static Tensor UpsampleNearest2x(Tensor x)
    {
        const string op = "UpsampleNearest2x";
        RequireNchw(op, x);
        int n = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        // Without the fused kernel: each pixel broadcast over a 2 x 2 block, whose gradient is the block sum.
        if (x.Backend.GetCapability<IResampleKernels>() is not { } kernels)
            return Reshape(Expand(Reshape(x, n, c, h, 1, w, 1), [n, c, h, 2, w, 2]), n, c, 2 * h, 2 * w);
        var y = NewLike(x, [n, c, 2 * h, 2 * w]);
        kernels.UpsampleNearest2x(n, c, h, w, x.Buffer, y.Buffer);
        return Autograd.Record(y, op, [x], g => [UpsampleNearest2xBackward(g)]);
    }

    /// <summary>
    /// The adjoint of <see cref="UpsampleNearest2x"/> as an op of its own: dy[N, C, 2H, 2W] to [N, C, H, W] by summing
    /// each 2x2 block (4 × a 2x2 average pool). Its gradient is <see cref="UpsampleNearest2x"/>, so both stay
    /// differentiable to any order.
    /// </summary>
    public static Tensor UpsampleNearest2xBackward(Tensor dy)
    {
        const string op = "UpsampleNearest2xBackward";
        RequireNchw(op, dy);
        if (dy.Shape[2] % 2 != 0 || dy.Shape[3] % 2 != 0)
            throw new TensorException(op, $"needs even height and width, got {ShapeUtil.Format(dy.Shape)}");
        int n = dy.Shape[0], c = dy.Shape[1], h = dy.Shape[2] / 2, w = dy.Shape[3] / 2;
        if (dy.Backend.GetCapability<IResampleKernels>() is not { } kernels) return BlockSum(dy, 2);
        var dx = NewLike(dy, [n, c, h, w]);
        kernels.UpsampleNearest2xBackward(n, c, h, w, dy.Buffer, dx.Buffer);
        return Autograd.Record(dx, op, [dy], g => [UpsampleNearest2x(g)]);
    }

    /// <summary>
    /// Average pooling of NCHW x[N, C, H, W] with a k x k window and stride k, to [N, C, H/k, W/k]; H and W must be
    /// multiples of k. Linear; its gradient is <see cref="AvgPool2dBackward"/>, the adjoint.
    /// </summary>
    public static Tensor AvgPool2d(Tensor x, int k)
    {
        const string op = "AvgPool2d";
        RequireNchw(op, x);
        if (k < 1 || x.Shape[2] % k != 0 || x.Shape[3] % k != 0)
            throw new TensorException(op, $"window {k} must be >= 1 and divide the height and width of {ShapeUtil.Format(x.Shape)}");
        int n = x.Shape[0], c = x.Shape[1], h = x.Shape[2], w = x.Shape[3];
        if (x.Backend.GetCapability<IResampleKernels>() is not { } kernels) return Scale(BlockSum(x, k), 1.0 / (k * k));
        var y = NewLike(x, [n, c, h / k, w / k]);
        kernels.AvgPool2d(n, c, h, w, k, x.Buffer, y.Buffer);
        return Autograd.Record(y, op, [x], g => [AvgPool2dBackward(g, k)]);
    }

    /// <summary>
    /// The adjoint of <see cref="AvgPool2d"/> as an op of its own: dy[N, C, H, W] to [N, C, kH, kW], every output of
    /// a window receiving dy/k². Its gradient is <see cref="AvgPool2d"/>, so both stay differentiable to any order.
    /// </summary>
    public static Tensor AvgPool2dBackward(Tensor dy, int k)
    {
        const string op = "AvgPool2dBackward";
        RequireNchw(op, dy);
        if (k < 1) throw new TensorException(op, $"window {k} must be >= 1 for {ShapeUtil.Format(dy.Shape)}");
        int n = dy.Shape[0], c = dy.Shape[1], h = dy.Shape[2] * k, w = dy.Shape[3] * k;
        if (dy.Backend.GetCapability<IResampleKernels>() is not { } kernels)
            return Scale(Reshape(Expand(Reshape(dy, n, c, h / k, 1, w / k, 1), [n, c, h / k, k, w / k, k]), n, c, h, w), 1.0 / (k * k));
        var dx = NewLike(dy, [n, c, h, w]);
        kernels.AvgPool2dBackward(n, c, h, w, k, dy.Buffer, dx.Buffer);
        return Autograd.Record(dx, op, [dy], g => [AvgPool2d(g, k)]);
    }

    /// <summary>Sums of the k x k blocks of NCHW x, [N, C, H/k, W/k]: x viewed as [N, C, H/k, k, W/k, k] summed over the two k axes.</summary>
    private static Tensor BlockSum(Tensor x, int k)
    {
        int n = x.Shape[0], c = x.Shape[1], h = x.Shape[2] / k, w = x.Shape[3] / k;
        return Sum(Reshape(x, n, c, h, k, w, k), [3, 5]);
    }

    private static void RequireNchw(string op, Tensor x)
    {
        if (x.Rank != 4) throw new TensorException(op, $"needs an NCHW tensor of rank 4, got {ShapeUtil.Format(x.Shape)}");
    }
}
