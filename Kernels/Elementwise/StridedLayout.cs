namespace DiffusionCore.Kernels.Elementwise;

/// <summary>
/// An N-d iteration space read through two stride sets, with size-1 axes dropped and neighbouring
/// axes merged wherever both stride sets allow it, so kernels loop over long contiguous rows.
/// </summary>
public sealed class StridedLayout
{
    private StridedLayout(long[] shape, long[] a, long[] b, long count)
    {
        Shape = shape;
        StridesA = a;
        StridesB = b;
        Count = count;
    }

    /// <summary>Coalesced extent of each axis (at least one axis).</summary>
    public long[] Shape { get; }

    /// <summary>Strides of the first operand on the coalesced axes.</summary>
    public long[] StridesA { get; }

    /// <summary>Strides of the second operand on the coalesced axes.</summary>
    public long[] StridesB { get; }

    /// <summary>Total number of elements.</summary>
    public long Count { get; }

    /// <summary>
    /// Coalesces <paramref name="shape"/> for two stride sets. A contiguous output is implied: merging
    /// two axes never breaks row-major order.
    /// </summary>
    public static StridedLayout Coalesce(ReadOnlySpan<int> shape, ReadOnlySpan<long> stridesA, ReadOnlySpan<long> stridesB)
    {
        var dims = new List<(long n, long a, long b)>();
        long count = 1;
        for (int d = 0; d < shape.Length; d++)
        {
            count *= shape[d];
            if (shape[d] != 1) dims.Add((shape[d], stridesA[d], stridesB[d]));
        }
        if (dims.Count == 0) dims.Add((1, 0, 0));
        var merged = new List<(long n, long a, long b)> { dims[^1] };
        for (int d = dims.Count - 2; d >= 0; d--)
        {
            var inner = merged[0];
            var outer = dims[d];
            if (outer.a == inner.a * inner.n && outer.b == inner.b * inner.n)
                merged[0] = (outer.n * inner.n, inner.a, inner.b);
            else
                merged.Insert(0, outer);
        }
        return new StridedLayout(merged.Select(m => m.n).ToArray(), merged.Select(m => m.a).ToArray(), merged.Select(m => m.b).ToArray(), count);
    }

    /// <summary>Offsets in A and B of the first element of row <paramref name="row"/> (a row is the innermost axis).</summary>
    public void Offsets(long row, out long offsetA, out long offsetB)
    {
        offsetA = 0;
        offsetB = 0;
        for (int d = Shape.Length - 2; d >= 0; d--)
        {
            long i = row % Shape[d];
            row /= Shape[d];
            offsetA += i * StridesA[d];
            offsetB += i * StridesB[d];
        }
    }
}
