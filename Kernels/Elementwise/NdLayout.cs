namespace DiffusionCore.Kernels.Elementwise;

/// <summary>
/// An N-d iteration space read through two stride sets, passed by value to an ILGPU kernel: the coalesced
/// form of a <see cref="StridedLayout"/> (size-1 axes dropped, mergeable axes merged), at most
/// <see cref="MaxRank"/> axes. Kernel parameters must be unmanaged values without arrays, hence one field per
/// axis. Thread i maps to the row-major multi-index of i over <c>Shape</c>.
/// </summary>
public struct NdLayout
{
    /// <summary>Most axes a layout holds after coalescing.</summary>
    public const int MaxRank = 6;

    /// <summary>Number of axes in use (1 to <see cref="MaxRank"/>).</summary>
    public int Rank;

    /// <summary>Extents of the axes, outermost first; unused axes are 1.</summary>
    public int S0, S1, S2, S3, S4, S5;

    /// <summary>Element strides of the first operand per axis.</summary>
    public long A0, A1, A2, A3, A4, A5;

    /// <summary>Element strides of the second operand per axis.</summary>
    public long B0, B1, B2, B3, B4, B5;

    /// <summary>Coalesces <paramref name="shape"/> under two stride sets; throws when more than <see cref="MaxRank"/> axes remain.</summary>
    public static NdLayout Create(string kernel, ReadOnlySpan<int> shape, ReadOnlySpan<long> stridesA, ReadOnlySpan<long> stridesB)
    {
        if (stridesA.Length != shape.Length || stridesB.Length != shape.Length)
            throw new KernelException(kernel, $"shape has {shape.Length} axes but the strides have {stridesA.Length} and {stridesB.Length}");
        foreach (int n in shape)
            if (n < 0) throw new KernelException(kernel, $"negative extent in shape [{string.Join(", ", shape.ToArray())}]");
        var c = StridedLayout.Coalesce(shape, stridesA, stridesB);
        if (c.Shape.Length > MaxRank)
            throw new KernelException(kernel, $"shape [{string.Join(", ", shape.ToArray())}] with these strides needs {c.Shape.Length} axes after merging; the ILGPU kernels take at most {MaxRank}");
        var layout = new NdLayout { Rank = c.Shape.Length, S0 = 1, S1 = 1, S2 = 1, S3 = 1, S4 = 1, S5 = 1 };
        for (int d = 0; d < c.Shape.Length; d++) layout.Set(d, (int)c.Shape[d], c.StridesA[d], c.StridesB[d]);
        return layout;
    }

    private void Set(int d, int n, long a, long b)
    {
        switch (d)
        {
            case 0: S0 = n; A0 = a; B0 = b; break;
            case 1: S1 = n; A1 = a; B1 = b; break;
            case 2: S2 = n; A2 = a; B2 = b; break;
            case 3: S3 = n; A3 = a; B3 = b; break;
            case 4: S4 = n; A4 = a; B4 = b; break;
            default: S5 = n; A5 = a; B5 = b; break;
        }
    }

    /// <summary>Offsets in the two operands of the element with row-major flat index <paramref name="index"/>.</summary>
    public readonly void Offsets(int index, out long offsetA, out long offsetB)
    {
        // Innermost axis first: peel one index per axis with a division (32-bit: far cheaper than 64-bit on a GPU).
        long a = 0, b = 0;
        int rest = index;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int n = d switch { 0 => S0, 1 => S1, 2 => S2, 3 => S3, 4 => S4, _ => S5 };
            int i = rest % n;
            rest /= n;
            a += i * (d switch { 0 => A0, 1 => A1, 2 => A2, 3 => A3, 4 => A4, _ => A5 });
            b += i * (d switch { 0 => B0, 1 => B1, 2 => B2, 3 => B3, 4 => B4, _ => B5 });
        }
        offsetA = a;
        offsetB = b;
    }
}
