namespace DiffusionCore.Engine;

public static partial class Ops
{
    private static int[] ResolveShape(string op, Tensor x, int[] shape)
    {
        var r = (int[])shape.Clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < r.Length; i++)
        {
            if (r[i] == -1)
            {
                if (infer >= 0) throw new TensorException(op, $"more than one -1 in {ShapeUtil.Format(shape)}");
                infer = i;
            }
            else if (r[i] < 0) throw new TensorException(op, $"negative extent in {ShapeUtil.Format(shape)}");
            else known *= r[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || x.Count % known != 0) throw new TensorException(op, $"cannot reshape {ShapeUtil.Format(x.Shape)} ({x.Count} elements) to {ShapeUtil.Format(shape)}");
            r[infer] = (int)(x.Count / known);
        }
        if (ShapeUtil.Count(r) != x.Count) throw new TensorException(op, $"cannot reshape {ShapeUtil.Format(x.Shape)} ({x.Count} elements) to {ShapeUtil.Format(shape)}");
        return r;
    }

    private static Tensor ReshapeStorage(Tensor x, int[] shape)
    {
        var y = new Tensor(x.Storage.AddReference(), shape, x.DType, x.Device);
        x.Dispose();
        return y;
    }

    /// <summary>Same elements viewed with a new shape (one extent may be -1). Shares storage; no copy.</summary>
    public static Tensor Reshape(Tensor x, params int[] shape)
    {
        var s = ResolveShape("Reshape", x, shape);
        var y = new Tensor(x.Storage.AddReference(), s, x.DType, x.Device);
        var from = x.Shape;
        return Autograd.Record(y, "Reshape", [x], g => [Reshape(g, from)]);
    }

    /// <summary>Inserts a size-1 axis at <paramref name="axis"/>.</summary>
    public static Tensor Unsqueeze(Tensor x, int axis)
    {
        int a = ShapeUtil.Axis("Unsqueeze", axis, x.Rank + 1);
        var s = x.Shape.ToList();
        s.Insert(a, 1);
        return Reshape(x, s.ToArray());
    }

    /// <summary>Reorders the axes: y.shape[i] = x.shape[perm[i]].</summary>
    public static Tensor Permute(Tensor x, params int[] perm)
    {
        if (perm.Length != x.Rank || perm.Distinct().Count() != perm.Length || perm.Any(p => p < 0 || p >= x.Rank))
            throw new TensorException("Permute", $"[{string.Join(",", perm)}] is not a permutation of the axes of {ShapeUtil.Format(x.Shape)}");
        var shape = perm.Select(p => x.Shape[p]).ToArray();
        var xs = ShapeUtil.Strides(x.Shape);
        var srcStrides = perm.Select(p => xs[p]).ToArray();
        var y = NewLike(x, shape);
        x.Backend.CopyStrided(x.Buffer, 0, srcStrides, y.Buffer, 0, ShapeUtil.Strides(shape), shape);
        var inverse = new int[perm.Length];
        for (int i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
        return Autograd.Record(y, "Permute", [x], g => [Permute(g, inverse)]);
    }

    /// <summary>Swaps two axes.</summary>
    public static Tensor Transpose(Tensor x, int axis0, int axis1)
    {
        int a = ShapeUtil.Axis("Transpose", axis0, x.Rank), b = ShapeUtil.Axis("Transpose", axis1, x.Rank);
        var perm = Enumerable.Range(0, x.Rank).ToArray();
        (perm[a], perm[b]) = (perm[b], perm[a]);
        return Permute(x, perm);
    }

    /// <summary>Elements [start, start + length) along <paramref name="axis"/>.</summary>
    public static Tensor Slice(Tensor x, int axis, int start, int length)
    {
        int a = ShapeUtil.Axis("Slice", axis, x.Rank);
        if (start < 0 || length < 0 || start + length > x.Shape[a])
            throw new TensorException("Slice", $"range [{start}, {start + length}) outside axis {a} of {ShapeUtil.Format(x.Shape)}");
        var starts = new int[x.Rank];
        var shape = (int[])x.Shape.Clone();
        starts[a] = start;
        shape[a] = length;
        return Narrow(x, starts, shape);
    }

    /// <summary>The block of shape <paramref name="shape"/> starting at <paramref name="starts"/>; its gradient is zero-padded back.</summary>
    public static Tensor Narrow(Tensor x, int[] starts, int[] shape)
    {
        if (starts.Length != x.Rank || shape.Length != x.Rank)
            throw new TensorException("Narrow", $"starts/shape of rank {starts.Length}/{shape.Length} for a tensor of shape {ShapeUtil.Format(x.Shape)}");
        for (int i = 0; i < x.Rank; i++)
            if (starts[i] < 0 || shape[i] < 0 || starts[i] + shape[i] > x.Shape[i])
                throw new TensorException("Narrow", $"block at {ShapeUtil.Format(starts)} of shape {ShapeUtil.Format(shape)} outside {ShapeUtil.Format(x.Shape)}");
        var xs = ShapeUtil.Strides(x.Shape);
        long offset = 0;
        for (int i = 0; i < x.Rank; i++) offset += starts[i] * xs[i];
        var y = NewLike(x, (int[])shape.Clone());
        x.Backend.CopyStrided(x.Buffer, offset, xs, y.Buffer, 0, ShapeUtil.Strides(shape), shape);
        var after = x.Shape.Select((d, i) => d - starts[i] - shape[i]).ToArray();
        return Autograd.Record(y, "Narrow", [x], g => [Pad(g, starts, after)]);
    }

    /// <summary>Pads with <paramref name="value"/>: before[i] elements before and after[i] after axis i; its gradient is the inner block.</summary>
    public static Tensor Pad(Tensor x, int[] before, int[] after, double value = 0.0)
    {
        if (before.Length != x.Rank || after.Length != x.Rank || before.Any(p => p < 0) || after.Any(p => p < 0))
            throw new TensorException("Pad", $"pads [{string.Join(",", before)}] / [{string.Join(",", after)}] do not fit shape {ShapeUtil.Format(x.Shape)}");
        var shape = x.Shape.Select((d, i) => d + before[i] + after[i]).ToArray();
        var y = Tensor.Full(shape, value, x.DType, x.Device);
        var ys = ShapeUtil.Strides(shape);
        long offset = 0;
        for (int i = 0; i < x.Rank; i++) offset += before[i] * ys[i];
        x.Backend.CopyStrided(x.Buffer, 0, ShapeUtil.Strides(x.Shape), y.Buffer, offset, ys, x.Shape);
        var inner = x.Shape;
        return Autograd.Record(y, "Pad", [x], g => [Narrow(g, before, inner)]);
    }

    /// <summary>Joins tensors along <paramref name="axis"/>; all other extents must agree.</summary>
    public static Tensor Concat(IReadOnlyList<Tensor> xs, int axis)
    {
        if (xs.Count == 0) throw new TensorException("Concat", "no tensors given");
        var first = xs[0];
        int a = ShapeUtil.Axis("Concat", axis, first.Rank);
        int total = 0;
        foreach (var t in xs)
        {
            SameDevice("Concat", first, t);
            bool ok = t.Rank == first.Rank && Enumerable.Range(0, t.Rank).All(i => i == a || t.Shape[i] == first.Shape[i]);
            if (!ok) throw new TensorException("Concat", $"shapes {string.Join(" and ", xs.Select(s => ShapeUtil.Format(s.Shape)))} differ outside axis {a}");
            total += t.Shape[a];
        }
        var shape = (int[])first.Shape.Clone();
        shape[a] = total;
        var y = NewLike(first, shape);
        var ys = ShapeUtil.Strides(shape);
        int at = 0;
        var offsets = new int[xs.Count];
        for (int k = 0; k < xs.Count; k++)
        {
            offsets[k] = at;
            first.Backend.CopyStrided(xs[k].Buffer, 0, ShapeUtil.Strides(xs[k].Shape), y.Buffer, at * ys[a], ys, xs[k].Shape);
            at += xs[k].Shape[a];
        }
        var inputs = xs.ToArray();
        return Autograd.Record(y, "Concat", inputs, g => inputs.Select((t, k) => t.TracksGrad ? Slice(g, a, offsets[k], t.Shape[a]) : null).ToArray());
    }

    /// <summary>Splits along <paramref name="axis"/> into pieces of the given sizes (which must add up to the extent).</summary>
    public static Tensor[] Split(Tensor x, int[] sizes, int axis)
    {
        int a = ShapeUtil.Axis("Split", axis, x.Rank);
        if (sizes.Sum() != x.Shape[a] || sizes.Any(s => s < 0))
            throw new TensorException("Split", $"sizes [{string.Join(",", sizes)}] do not add up to axis {a} of {ShapeUtil.Format(x.Shape)}");
        var r = new Tensor[sizes.Length];
        int at = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            r[i] = Slice(x, a, at, sizes[i]);
            at += sizes[i];
        }
        return r;
    }

    /// <summary>Stacks equal-shaped tensors along a new axis.</summary>
    public static Tensor Stack(IReadOnlyList<Tensor> xs, int axis) => Concat(xs.Select(t => Unsqueeze(t, axis)).ToArray(), axis);
}
