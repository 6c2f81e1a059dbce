using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    private static int[] NormalizeAxes(string op, Tensor x, int[]? axes)
    {
        if (axes is null || axes.Length == 0) return Enumerable.Range(0, x.Rank).ToArray();
        var r = axes.Select(a => ShapeUtil.Axis(op, a, x.Rank)).Distinct().OrderBy(a => a).ToArray();
        if (r.Length != axes.Length) throw new TensorException(op, $"repeated axis in [{string.Join(",", axes)}]");
        return r;
    }

    private static int[] KeptShape(Tensor x, int[] axes)
    {
        var s = (int[])x.Shape.Clone();
        foreach (var a in axes) s[a] = 1;
        return s;
    }

    private static int[] DroppedShape(Tensor x, int[] axes) => x.Shape.Where((_, i) => !axes.Contains(i)).ToArray();

    /// <summary>Reduces each listed axis in turn with the backend kernel; result has the kept (size-1) axes.</summary>
    private static Tensor ReduceKernel(ReduceOp op, Tensor x, int[] axes)
    {
        var current = x;
        var shape = (int[])x.Shape.Clone();
        foreach (int axis in axes)
        {
            int outer = 1, inner = 1;
            for (int i = 0; i < axis; i++) outer *= shape[i];
            for (int i = axis + 1; i < shape.Length; i++) inner *= shape[i];
            int reduce = shape[axis];
            shape[axis] = 1;
            var next = NewLike(x, (int[])shape.Clone());
            x.Backend.Reduce(op, current.Buffer, next.Buffer, outer, reduce, inner);
            if (!ReferenceEquals(current, x)) current.Dispose();
            current = next;
        }
        if (ReferenceEquals(current, x)) current = x.Clone();
        return current;
    }

    /// <summary>Sum over <paramref name="axes"/> (all when null); the gradient broadcasts back. An empty axis sums to 0.</summary>
    public static Tensor Sum(Tensor x, int[]? axes = null, bool keepDim = false)
    {
        var ax = NormalizeAxes("Sum", x, axes);
        var kept = ReduceKernel(ReduceOp.Sum, x, ax);
        var keptShape = kept.Shape;
        var y = keepDim ? kept : ReshapeStorage(kept, DroppedShape(x, ax));
        return Autograd.Record(y, "Sum", [x], g => [Expand(Reshape(g, keptShape), x.Shape)]);
    }

    /// <summary>
    /// Mean over <paramref name="axes"/> (all when null). The mean over an empty axis is 0/0 = NaN, as in NumPy and
    /// torch; its gradient (with respect to no element) is empty.
    /// </summary>
    public static Tensor Mean(Tensor x, int[]? axes = null, bool keepDim = false)
    {
        var ax = NormalizeAxes("Mean", x, axes);
        long n = 1;
        foreach (int a in ax) n *= x.Shape[a];
        return Scale(Sum(x, ax, keepDim), n == 0 ? double.NaN : 1.0 / n);
    }

    /// <summary>
    /// Maximum over <paramref name="axes"/>; the gradient is shared equally among tied maxima. An empty axis has no
    /// maximum: an error, as in torch.
    /// </summary>
    public static Tensor Max(Tensor x, int[]? axes = null, bool keepDim = false)
    {
        var ax = NormalizeAxes("Max", x, axes);
        foreach (int a in ax)
            if (x.Shape[a] == 0) throw new TensorException("Max", $"max over an empty axis {a} of shape {ShapeUtil.Format(x.Shape)}");
        var kept = ReduceKernel(ReduceOp.Max, x, ax);
        var keptShape = kept.Shape;
        var keptValues = kept.Detach();
        var y = keepDim ? kept : ReshapeStorage(kept, DroppedShape(x, ax));
        return Autograd.Record(y, "Max", [x], g =>
        {
            var mask = EqualMask(x, keptValues);
            var share = Div(mask, Sum(mask, ax, keepDim: true));
            return [Mul(Reshape(g, keptShape), share)];
        });
    }

    /// <summary>log sum exp over <paramref name="axes"/>, computed as m + log sum exp(x - m) with m the (constant) max.</summary>
    public static Tensor LogSumExp(Tensor x, int[]? axes = null, bool keepDim = false)
    {
        var ax = NormalizeAxes("LogSumExp", x, axes);
        Tensor m;
        using (Autograd.NoGrad())
        {
            m = ReduceKernel(ReduceOp.Max, x, ax);
            // An all -inf slice would give -inf - -inf = NaN; shifting by 0 there keeps the result -inf.
            x.Backend.Clamp(m.Buffer, m.Buffer, m.Count, -3.0e38, double.PositiveInfinity);
        }
        var r = Add(Log(Sum(Exp(Sub(x, m)), ax, keepDim: true)), m);
        return keepDim ? r : Reshape(r, DroppedShape(x, ax));
    }
}
