namespace DiffusionCore.Kernels;

/// <summary>Argument checks every backend applies to its buffers, with the same messages on every backend.</summary>
internal static class BufferChecks
{
    /// <summary>Throws unless every buffer has the first one's dtype.</summary>
    public static void SameType(string kernel, params DeviceBuffer[] buffers)
    {
        foreach (var b in buffers)
            if (b.DType != buffers[0].DType)
                throw new KernelException(kernel, $"mixed dtypes {buffers[0].DType} and {b.DType}");
    }

    /// <summary>Throws unless [offset, offset + count) lies inside <paramref name="buffer"/>.</summary>
    public static void CheckRange(string kernel, DeviceBuffer buffer, long offset, long count)
    {
        if (offset < 0 || offset + count > buffer.Length)
            throw new KernelException(kernel, $"range [{offset}, {offset + count}) outside a buffer of {buffer.Length} elements");
    }
}
