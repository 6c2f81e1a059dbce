using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    private static Tensor BinaryKernel(string name, BinaryOp op, Tensor a, Tensor b)
    {
        SameDevice(name, a, b);
        var shape = ShapeUtil.Broadcast(name, a.Shape, b.Shape);
        var y = NewLike(a, shape);
        a.Backend.Binary(op, a.Buffer, ShapeUtil.BroadcastStrides(a.Shape, shape), b.Buffer, ShapeUtil.BroadcastStrides(b.Shape, shape), y.Buffer, shape);
        return y;
    }

    /// <summary>a + b with NumPy broadcasting.</summary>
    public static Tensor Add(Tensor a, Tensor b)
    {
        var y = BinaryKernel("Add", BinaryOp.Add, a, b);
        return Autograd.Record(y, "Add", [a, b], g => [SumTo(g, a.Shape), SumTo(g, b.Shape)]);
    }

    /// <summary>a - b with broadcasting.</summary>
    public static Tensor Sub(Tensor a, Tensor b)
    {
        var y = BinaryKernel("Sub", BinaryOp.Sub, a, b);
        return Autograd.Record(y, "Sub", [a, b], g => [SumTo(g, a.Shape), b.TracksGrad ? SumTo(Neg(g), b.Shape) : null]);
    }

    /// <summary>a * b with broadcasting.</summary>
    public static Tensor Mul(Tensor a, Tensor b)
    {
        var y = BinaryKernel("Mul", BinaryOp.Mul, a, b);
        return Autograd.Record(y, "Mul", [a, b], g => [a.TracksGrad ? SumTo(Mul(g, b), a.Shape) : null, b.TracksGrad ? SumTo(Mul(g, a), b.Shape) : null]);
    }

    /// <summary>a / b with broadcasting; d/db = -a / b^2.</summary>
    public static Tensor Div(Tensor a, Tensor b)
    {
        var y = BinaryKernel("Div", BinaryOp.Div, a, b);
        return Autograd.Record(y, "Div", [a, b], g => [
            a.TracksGrad ? SumTo(Div(g, b), a.Shape) : null,
            b.TracksGrad ? SumTo(Neg(Div(Mul(g, a), Square(b))), b.Shape) : null]);
    }

    /// <summary>Elementwise max(a, b); the gradient goes to the larger input (to a on ties).</summary>
    public static Tensor Maximum(Tensor a, Tensor b)
    {
        var y = BinaryKernel("Maximum", BinaryOp.Max, a, b);
        return Autograd.Record(y, "Maximum", [a, b], g =>
        {
            var takeA = Compare(BinaryOp.GreaterEqual, a, b);
            return [SumTo(Mul(g, takeA), a.Shape), SumTo(Mul(g, AddScalar(Neg(takeA), 1.0)), b.Shape)];
        });
    }

    /// <summary>Elementwise min(a, b); the gradient goes to the smaller input (to a on ties).</summary>
    public static Tensor Minimum(Tensor a, Tensor b)
    {
        var y = BinaryKernel("Minimum", BinaryOp.Min, a, b);
        return Autograd.Record(y, "Minimum", [a, b], g =>
        {
            var takeA = Compare(BinaryOp.GreaterEqual, b, a);
            return [SumTo(Mul(g, takeA), a.Shape), SumTo(Mul(g, AddScalar(Neg(takeA), 1.0)), b.Shape)];
        });
    }

    /// <summary>1 where a &gt; b else 0 (no gradient).</summary>
    public static Tensor Greater(Tensor a, Tensor b) => Compare(BinaryOp.Greater, a, b);

    /// <summary>1 where a == b else 0 (no gradient).</summary>
    public static Tensor EqualMask(Tensor a, Tensor b) => Compare(BinaryOp.Equal, a, b);

    private static Tensor Compare(BinaryOp op, Tensor a, Tensor b) => BinaryKernel(op.ToString(), op, a, b);

    /// <summary>cond != 0 ? a : b, all three broadcast together; gradients flow to the chosen side.</summary>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        SameDevice("Where", a, b);
        SameDevice("Where", cond, a);
        var shape = ShapeUtil.Broadcast("Where", ShapeUtil.Broadcast("Where", cond.Shape, a.Shape), b.Shape);
        using var c = ExpandKernel(cond, shape);
        using var ea = ExpandKernel(a, shape);
        using var eb = ExpandKernel(b, shape);
        var y = NewLike(a, shape);
        a.Backend.Where(c.Buffer, ea.Buffer, eb.Buffer, y.Buffer, y.Count);
        return Autograd.Record(y, "Where", [a, b], g =>
        {
            var zero = Tensor.Zeros([], g.DType, g.Device);
            return [a.TracksGrad ? SumTo(Where(cond, g, zero), a.Shape) : null, b.TracksGrad ? SumTo(Where(cond, zero, g), b.Shape) : null];
        });
    }

    /// <summary>Broadcasts x to <paramref name="shape"/> (a copy); the gradient sums back over the broadcast axes.</summary>
    public static Tensor Expand(Tensor x, int[] shape)
    {
        var target = ShapeUtil.Broadcast("Expand", x.Shape, shape);
        if (!ShapeUtil.Same(target, shape))
            throw new TensorException("Expand", $"shape {ShapeUtil.Format(x.Shape)} cannot be expanded to {ShapeUtil.Format(shape)}");
        var y = ExpandKernel(x, shape);
        return Autograd.Record(y, "Expand", [x], g => [SumTo(g, x.Shape)]);
    }

    private static Tensor ExpandKernel(Tensor x, int[] shape)
    {
        var y = NewLike(x, shape);
        x.Backend.CopyStrided(x.Buffer, 0, ShapeUtil.BroadcastStrides(x.Shape, shape), y.Buffer, 0, ShapeUtil.Strides(shape), shape);
        return y;
    }

    /// <summary>
    /// Sums g over the axes along which <paramref name="shape"/> was broadcast to g's shape (the backward
    /// of broadcasting); returns g itself when the shapes already agree.
    /// </summary>
    public static Tensor SumTo(Tensor g, int[] shape)
    {
        if (ShapeUtil.Same(g.Shape, shape)) return g;
        int lead = g.Rank - shape.Length;
        if (lead < 0) throw new TensorException("SumTo", $"cannot sum shape {ShapeUtil.Format(g.Shape)} to larger rank {ShapeUtil.Format(shape)}");
        var axes = new List<int>();
        for (int i = 0; i < g.Rank; i++)
        {
            if (i < lead) axes.Add(i);
            else if (shape[i - lead] == 1 && g.Shape[i] != 1) axes.Add(i);
            else if (shape[i - lead] != g.Shape[i]) throw new TensorException("SumTo", $"shape {ShapeUtil.Format(g.Shape)} does not reduce to {ShapeUtil.Format(shape)}");
        }
        var s = axes.Count == 0 ? g : Sum(g, axes.ToArray(), keepDim: true);
        return Reshape(s, shape);
    }
}
