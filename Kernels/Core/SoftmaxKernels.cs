namespace DiffusionCore.Kernels;

/// <summary>
/// Optional capability: softmax (or log-softmax) of each row in one pass. A capability, not a primitive, because the
/// primitives give the same numerically stable algorithm (row max by <see cref="IBackend.Reduce"/>, a broadcast
/// subtraction, exp, row sum, a broadcast division or log-subtraction), which the Engine uses without it; a fused
/// kernel only saves passes over the row.
/// </summary>
public interface ISoftmaxKernels
{
    /// <summary>Softmax (or log-softmax) over the last axis of x viewed as [rows, cols].</summary>
    void Softmax(DeviceBuffer x, DeviceBuffer y, int rows, int cols, bool log);
}

/// <summary>The checked base of <see cref="ISoftmaxKernels"/>: validates sizes and buffers, returns at once for an empty matrix.</summary>
public abstract class SoftmaxKernels<TBuffer>(CheckedBackend<TBuffer> backend) : ISoftmaxKernels where TBuffer : DeviceBuffer
{
    /// <inheritdoc />
    public void Softmax(DeviceBuffer x, DeviceBuffer y, int rows, int cols, bool log)
    {
        const string kernel = "Softmax";
        string shape = $"[{rows}, {cols}]";
        KernelChecks.NonNegative(kernel, $"shape {shape}", rows, cols);
        var bx = backend.Own(x, kernel); var by = backend.Own(y, kernel);
        KernelChecks.SameType(kernel, bx, by);
        KernelChecks.Length(kernel, "x", bx, (long)rows * cols, $"shape {shape}");
        KernelChecks.Length(kernel, "y", by, (long)rows * cols, $"shape {shape}");
        if ((long)rows * cols > 0) Softmax(bx, by, rows, cols, log);
    }

    /// <summary>The row softmax; rows and cols are at least 1 and the buffers are checked.</summary>
    protected abstract void Softmax(TBuffer x, TBuffer y, int rows, int cols, bool log);
}
