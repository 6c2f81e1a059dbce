namespace DiffusionCore.Engine;

/// <summary>Shape arithmetic shared by the ops: element counts, strides, broadcasting, axis checks.</summary>
public static class ShapeUtil
{
    /// <summary>Formats a shape as <c>[2,3,4]</c> for messages.</summary>
    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(",", shape.ToArray()) + "]";

    /// <summary>Number of elements of a shape (1 for a scalar).</summary>
    public static long Count(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape) n *= d;
        return n;
    }

    /// <summary>Row-major (contiguous) strides of a shape, in elements.</summary>
    public static long[] Strides(ReadOnlySpan<int> shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            s[d] = acc;
            acc *= shape[d];
        }
        return s;
    }

    /// <summary>NumPy broadcasting of two shapes; throws naming <paramref name="op"/> and both shapes.</summary>
    public static int[] Broadcast(string op, ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        int rank = Math.Max(a.Length, b.Length);
        var r = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int da = i < rank - a.Length ? 1 : a[i - (rank - a.Length)];
            int db = i < rank - b.Length ? 1 : b[i - (rank - b.Length)];
            if (da != db && da != 1 && db != 1)
                throw new TensorException(op, $"shapes {Format(a)} and {Format(b)} do not broadcast (axis {i}: {da} vs {db})");
            r[i] = da == 1 ? db : da;
        }
        return r;
    }

    /// <summary>
    /// Strides for reading a tensor of <paramref name="shape"/> as if it had <paramref name="target"/>
    /// (right-aligned; broadcast axes get stride 0).
    /// </summary>
    public static long[] BroadcastStrides(ReadOnlySpan<int> shape, ReadOnlySpan<int> target)
    {
        var own = Strides(shape);
        var s = new long[target.Length];
        int offset = target.Length - shape.Length;
        for (int i = 0; i < target.Length; i++)
        {
            int j = i - offset;
            s[i] = j < 0 || shape[j] == 1 ? 0 : own[j];
        }
        return s;
    }

    /// <summary>Maps a possibly negative axis into [0, rank); throws naming the op and the shape.</summary>
    public static int Axis(string op, int axis, int rank)
    {
        int a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= rank) throw new TensorException(op, $"axis {axis} out of range for rank {rank}");
        return a;
    }

    /// <summary>True when the two shapes are identical.</summary>
    public static bool Same(ReadOnlySpan<int> a, ReadOnlySpan<int> b) => a.SequenceEqual(b);
}
