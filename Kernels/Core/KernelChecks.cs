namespace DiffusionCore.Kernels;

/// <summary>
/// The argument checks of every kernel entry point, shared by all backends (through <see cref="CheckedBackend{TBuffer}"/>
/// and the capability bases such as <see cref="ConvolutionKernels{TBuffer}"/>), so that a bad call fails before any
/// kernel runs, with the same <see cref="KernelException"/> message on every backend. Buffers are named by the
/// parameter they were passed as.
/// </summary>
internal static class KernelChecks
{
    /// <summary>Formats extents as <c>[2, 3, 4]</c>.</summary>
    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    /// <summary>Formats strides as <c>[12, 4, 1]</c>.</summary>
    public static string Format(ReadOnlySpan<long> strides) => "[" + string.Join(", ", strides.ToArray()) + "]";

    /// <summary>Throws unless every buffer has the first one's dtype.</summary>
    public static void SameType(string kernel, params DeviceBuffer?[] buffers)
    {
        DType? first = null;
        foreach (var b in buffers)
        {
            if (b is null) continue;
            first ??= b.DType;
            if (b.DType != first) throw new KernelException(kernel, $"mixed dtypes {first} and {b.DType}");
        }
    }

    /// <summary>Throws unless <paramref name="value"/> is a named member of its enum.</summary>
    public static void Defined<TEnum>(string kernel, TEnum value) where TEnum : struct, Enum
    {
        if (!Enum.IsDefined(value)) throw new KernelException(kernel, $"unknown {typeof(TEnum).Name} {value}");
    }

    /// <summary>Throws unless every size is at least 0.</summary>
    public static void NonNegative(string kernel, string what, params long[] sizes)
    {
        foreach (long s in sizes)
            if (s < 0) throw new KernelException(kernel, $"negative size in {what}");
    }

    /// <summary>Throws unless host elements of <typeparamref name="T"/> can be copied to or from a buffer (float or double).</summary>
    public static void HostType<T>(string kernel, DeviceBuffer buffer) where T : unmanaged
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            throw new KernelException(kernel, $"host elements of {typeof(T).Name} cannot be copied to or from a {buffer.DType} buffer (float or double only)");
    }

    /// <summary>Throws unless [offset, offset + count) lies inside <paramref name="buffer"/>.</summary>
    public static void Range(string kernel, DeviceBuffer buffer, long offset, long count)
    {
        if (offset < 0 || count < 0 || offset + count > buffer.Length)
            throw new KernelException(kernel, $"range [{offset}, {offset + count}) outside a buffer of {buffer.Length} elements");
    }

    /// <summary>Throws unless <paramref name="buffer"/> holds at least <paramref name="needed"/> elements; <paramref name="what"/> says what needs them.</summary>
    public static void Length(string kernel, string name, DeviceBuffer buffer, long needed, string what)
    {
        if (buffer.Length < needed)
            throw new KernelException(kernel, $"{name} holds {buffer.Length} elements, {what} needs {needed}");
    }

    /// <summary>Throws unless the count is at least 0 and every buffer holds that many elements.</summary>
    public static void Count(string kernel, long count, params (string Name, DeviceBuffer Buffer)[] buffers)
    {
        if (count < 0) throw new KernelException(kernel, $"negative count {count}");
        foreach (var (name, buffer) in buffers) Length(kernel, name, buffer, count, $"count {count}");
    }

    /// <summary>
    /// Checks an N-d iteration space: one stride per axis in each stride set, no negative extent. Returns the number
    /// of elements (0 when any extent is 0).
    /// </summary>
    public static long Shape(string kernel, ReadOnlySpan<int> shape, ReadOnlySpan<long> stridesA, string nameA, ReadOnlySpan<long> stridesB, string nameB)
    {
        if (stridesA.Length != shape.Length || stridesB.Length != shape.Length)
            throw new KernelException(kernel, $"shape {Format(shape)} has {shape.Length} axes but {nameA} has {stridesA.Length} strides and {nameB} {stridesB.Length}");
        long count = 1;
        foreach (int n in shape)
        {
            if (n < 0) throw new KernelException(kernel, $"negative extent in shape {Format(shape)}");
            count *= n;
        }
        return count;
    }

    /// <summary>
    /// Throws unless every element a strided view reaches, offset + Σ_k i_k strides_k for 0 &lt;= i_k &lt; shape_k, lies
    /// inside <paramref name="buffer"/>: the smallest and the largest reachable offsets (negative strides allowed) are
    /// compared with [0, length). Nothing is reached when an extent is 0.
    /// </summary>
    public static void Reach(string kernel, string name, DeviceBuffer buffer, long offset, ReadOnlySpan<long> strides, ReadOnlySpan<int> shape)
    {
        long first = offset, last = offset;
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 0) return;
            long span = (shape[d] - 1) * strides[d];
            if (span > 0) last += span; else first += span;
        }
        if (first < 0 || last >= buffer.Length)
            throw new KernelException(kernel, $"{name} is read or written at elements [{first}, {last}] (shape {Format(shape)}, strides {Format(strides)}, offset {offset}) but holds {buffer.Length}");
    }

    /// <summary>
    /// Throws unless <paramref name="batch"/> contiguous matrices of <paramref name="rows"/> x <paramref name="cols"/>
    /// elements, the first at <paramref name="offset"/> and each next one <paramref name="batchStride"/> further on (0:
    /// the same matrix every time), lie inside <paramref name="buffer"/>.
    /// </summary>
    public static void Matrices(string kernel, string name, DeviceBuffer buffer, long offset, long batchStride, int batch, int rows, int cols)
    {
        long size = (long)rows * cols;
        if (batch == 0 || size == 0) return;
        if (offset < 0 || batchStride < 0)
            throw new KernelException(kernel, $"{name}: negative offset {offset} or batch stride {batchStride}");
        long end = offset + (batch - 1) * batchStride + size;
        if (end > buffer.Length)
            throw new KernelException(kernel, $"{name}: {batch} matrices of {rows} x {cols} from offset {offset} with batch stride {batchStride} end at {end}, beyond its {buffer.Length} elements");
    }

    /// <summary>Throws unless the same buffer is not passed as an output and as another argument (the kernel would read what it writes).</summary>
    public static void Distinct(string kernel, (string Name, DeviceBuffer? Buffer)[] outputs, (string Name, DeviceBuffer? Buffer)[] others)
    {
        for (int i = 0; i < outputs.Length; i++)
        {
            if (outputs[i].Buffer is not { } o) continue;
            foreach (var (name, b) in outputs.Skip(i + 1).Concat(others))
                if (ReferenceEquals(o, b)) throw new KernelException(kernel, $"output {outputs[i].Name} is also passed as {name}: outputs must not overlap other arguments");
        }
    }
}
