namespace DiffusionCore.Kernels;

/// <summary>
/// Optional capability: fused nearest x2 upsampling and k x k average pooling of NCHW buffers, with their adjoints.
/// Without it the Engine resamples by a broadcast copy and by block sums (reshape, <c>Reduce</c>).
/// </summary>
public interface IResampleKernels
{
    /// <summary>Nearest-neighbour x2 upsampling, y[n, c, i, j] = x[n, c, i/2, j/2]: x[N, C, H, W] to y[N, C, 2H, 2W].</summary>
    void UpsampleNearest2x(int batch, int channels, int height, int width, DeviceBuffer x, DeviceBuffer y);

    /// <summary>
    /// Backward (adjoint) of <see cref="UpsampleNearest2x"/>: dx[n, c, i, j] = Σ_{a, b ∈ {0, 1}} dy[n, c, 2i + a, 2j + b],
    /// dy[N, C, 2H, 2W] to dx[N, C, H, W] (overwritten); H and W are those of the forward input.
    /// </summary>
    void UpsampleNearest2xBackward(int batch, int channels, int height, int width, DeviceBuffer dy, DeviceBuffer dx);

    /// <summary>
    /// Average pooling with a k x k window and stride k: y[n, c, i, j] = (1/k²) Σ_{a, b &lt; k} x[n, c, k i + a, k j + b],
    /// x[N, C, H, W] to y[N, C, H/k, W/k]; H and W must be multiples of k.
    /// </summary>
    void AvgPool2d(int batch, int channels, int height, int width, int k, DeviceBuffer x, DeviceBuffer y);

    /// <summary>
    /// Backward (adjoint) of <see cref="AvgPool2d"/>: dx[n, c, h, w] = dy[n, c, h/k, w/k] / k², dy[N, C, H/k, W/k]
    /// to dx[N, C, H, W] (overwritten); H and W are those of the forward input.
    /// </summary>
    void AvgPool2dBackward(int batch, int channels, int height, int width, int k, DeviceBuffer dy, DeviceBuffer dx);
}

/// <summary>
/// The checked base of <see cref="IResampleKernels"/>: validates sizes (all &gt;= 0, k &gt;= 1 dividing H and W) and
/// the lengths the shape implies, returns at once for an empty image, and calls the backend's cores.
/// </summary>
public abstract class ResampleKernels<TBuffer>(CheckedBackend<TBuffer> backend) : IResampleKernels where TBuffer : DeviceBuffer
{
    /// <inheritdoc />
    public void UpsampleNearest2x(int batch, int channels, int height, int width, DeviceBuffer x, DeviceBuffer y)
    {
        const string kernel = "UpsampleNearest2x";
        var (shape, image) = Sizes(kernel, batch, channels, height, width, 1);
        var (bx, by) = Pair(kernel, shape, x, "x", image, y, "y", 4 * image);
        if (image > 0) Upsample(batch, channels, height, width, bx, by);
    }

    /// <inheritdoc />
    public void UpsampleNearest2xBackward(int batch, int channels, int height, int width, DeviceBuffer dy, DeviceBuffer dx)
    {
        const string kernel = "UpsampleNearest2xBackward";
        var (shape, image) = Sizes(kernel, batch, channels, height, width, 1);
        var (bdy, bdx) = Pair(kernel, shape, dy, "dy", 4 * image, dx, "dx", image);
        if (image > 0) UpsampleBackward(batch, channels, height, width, bdy, bdx);
    }

    /// <inheritdoc />
    public void AvgPool2d(int batch, int channels, int height, int width, int k, DeviceBuffer x, DeviceBuffer y)
    {
        const string kernel = "AvgPool2d";
        var (shape, image) = Sizes(kernel, batch, channels, height, width, k);
        var (bx, by) = Pair(kernel, shape, x, "x", image, y, "y", image / ((long)k * k));
        if (image > 0) AvgPool(batch, channels, height, width, k, bx, by);
    }

    /// <inheritdoc />
    public void AvgPool2dBackward(int batch, int channels, int height, int width, int k, DeviceBuffer dy, DeviceBuffer dx)
    {
        const string kernel = "AvgPool2dBackward";
        var (shape, image) = Sizes(kernel, batch, channels, height, width, k);
        var (bdy, bdx) = Pair(kernel, shape, dy, "dy", image / ((long)k * k), dx, "dx", image);
        if (image > 0) AvgPoolBackward(batch, channels, height, width, k, bdy, bdx);
    }

    /// <summary>Upsampling; the image is not empty and the buffers are checked.</summary>
    protected abstract void Upsample(int batch, int channels, int height, int width, TBuffer x, TBuffer y);

    /// <summary>Adjoint of upsampling; the image is not empty and the buffers are checked.</summary>
    protected abstract void UpsampleBackward(int batch, int channels, int height, int width, TBuffer dy, TBuffer dx);

    /// <summary>Average pooling; the image is not empty and the buffers are checked.</summary>
    protected abstract void AvgPool(int batch, int channels, int height, int width, int k, TBuffer x, TBuffer y);

    /// <summary>Adjoint of average pooling; the image is not empty and the buffers are checked.</summary>
    protected abstract void AvgPoolBackward(int batch, int channels, int height, int width, int k, TBuffer dy, TBuffer dx);

    /// <summary>Checks the sizes (k = 1 for upsampling); returns them for messages and N·C·H·W, the full-resolution element count.</summary>
    private static (string Shape, long Image) Sizes(string kernel, int batch, int channels, int height, int width, int k)
    {
        string shape = $"N={batch}, C={channels}, H={height}, W={width}" + (kernel.StartsWith("AvgPool", StringComparison.Ordinal) ? $", k={k}" : "");
        KernelChecks.NonNegative(kernel, shape, batch, channels, height, width);
        if (k < 1) throw new KernelException(kernel, $"window k must be >= 1: {shape}");
        if (height % k != 0 || width % k != 0) throw new KernelException(kernel, $"H and W must be multiples of k: {shape}");
        return (shape, (long)batch * channels * height * width);
    }

    private (TBuffer, TBuffer) Pair(string kernel, string shape, DeviceBuffer input, string inName, long inNeeded, DeviceBuffer output, string outName, long outNeeded)
    {
        var bi = backend.Own(input, kernel); var bo = backend.Own(output, kernel);
        KernelChecks.SameType(kernel, bi, bo);
        KernelChecks.Length(kernel, inName, bi, inNeeded, shape);
        KernelChecks.Length(kernel, outName, bo, outNeeded, shape);
        KernelChecks.Distinct(kernel, [(outName, bo)], [(inName, bi)]);
        return (bi, bo);
    }
}
