namespace DiffusionCore.Kernels;

/// <summary>
/// The base of every backend: implements <see cref="IBackend"/> by checking each call's arguments (ownership,
/// disposal, dtypes, counts, shapes, strides, offsets and buffer lengths, see <see cref="KernelChecks"/>) and then
/// calling the protected core the backend implements, with its own buffer type and only for calls that have work to
/// do (an empty count or shape returns before the core). So the checks are written once, run before any kernel, and
/// fail identically on every backend. Optional capabilities (fused kernels) are registered with
/// <see cref="AddCapability{T}"/>; their checks live in their own bases (e.g. <see cref="ConvolutionKernels{TBuffer}"/>).
/// </summary>
/// <typeparam name="TBuffer">The backend's buffer type; a buffer of another type or another backend is refused.</typeparam>
public abstract class CheckedBackend<TBuffer> : IBackend where TBuffer : DeviceBuffer
{
    private readonly List<object> _capabilities = [];

    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    public T? GetCapability<T>() where T : class
    {
        foreach (var c in _capabilities)
            if (c is T kernels) return kernels;
        return null;
    }

    /// <summary>Registers the kernels of an optional capability (called from the backend's constructor).</summary>
    protected void AddCapability<T>(T kernels) where T : class => _capabilities.Add(kernels);

    /// <inheritdoc />
    public DeviceBuffer Allocate(long length, DType dtype, bool zero = true)
    {
        if (length < 0) throw new KernelException("Allocate", $"negative length {length}");
        KernelChecks.Defined("Allocate", dtype);
        return AllocateCore(length, dtype, zero);
    }

    /// <inheritdoc />
    public void Upload<T>(DeviceBuffer dst, ReadOnlySpan<T> src, long offset = 0) where T : unmanaged
    {
        const string kernel = "Upload";
        var b = Own(dst, kernel);
        KernelChecks.HostType<T>(kernel, b);
        KernelChecks.Range(kernel, b, offset, src.Length);
        if (src.Length > 0) UploadCore(b, src, offset);
    }

    /// <inheritdoc />
    public void Download<T>(DeviceBuffer src, Span<T> dst, long offset = 0) where T : unmanaged
    {
        const string kernel = "Download";
        var b = Own(src, kernel);
        KernelChecks.HostType<T>(kernel, b);
        KernelChecks.Range(kernel, b, offset, dst.Length);
        if (dst.Length > 0) DownloadCore(b, dst, offset);
    }

    /// <inheritdoc />
    public void Fill(DeviceBuffer dst, double value)
    {
        var b = Own(dst, "Fill");
        if (b.Length > 0) FillCore(b, value);
    }

    /// <inheritdoc />
    public void FillRandom(DeviceBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset)
    {
        const string kernel = "FillRandom";
        var b = Own(dst, kernel);
        KernelChecks.Defined(kernel, distribution);
        if (b.Length > 0) FillRandomCore(b, distribution, seed, blockOffset);
    }

    /// <inheritdoc />
    public void Unary(UnaryOp op, DeviceBuffer x, DeviceBuffer y, long count)
    {
        const string kernel = "Unary";
        KernelChecks.Defined(kernel, op);
        var (bx, by) = Pair(kernel, x, y, count);
        if (count > 0) UnaryCore(op, bx, by, count);
    }

    /// <inheritdoc />
    public void Affine(DeviceBuffer x, DeviceBuffer y, long count, double scale, double shift)
    {
        var (bx, by) = Pair("Affine", x, y, count);
        if (count > 0) AffineCore(bx, by, count, scale, shift);
    }

    /// <inheritdoc />
    public void PowScalar(DeviceBuffer x, DeviceBuffer y, long count, double exponent)
    {
        var (bx, by) = Pair("PowScalar", x, y, count);
        if (count > 0) PowScalarCore(bx, by, count, exponent);
    }

    /// <inheritdoc />
    public void Clamp(DeviceBuffer x, DeviceBuffer y, long count, double lo, double hi)
    {
        var (bx, by) = Pair("Clamp", x, y, count);
        if (count > 0) ClampCore(bx, by, count, lo, hi);
    }

    /// <inheritdoc />
    public void Binary(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aStrides, DeviceBuffer b, ReadOnlySpan<long> bStrides, DeviceBuffer y, ReadOnlySpan<int> shape)
    {
        const string kernel = "Binary";
        KernelChecks.Defined(kernel, op);
        var ba = Own(a, kernel); var bb = Own(b, kernel); var by = Own(y, kernel);
        KernelChecks.SameType(kernel, ba, bb, by);
        long count = KernelChecks.Shape(kernel, shape, aStrides, "a", bStrides, "b");
        KernelChecks.Reach(kernel, "a", ba, 0, aStrides, shape);
        KernelChecks.Reach(kernel, "b", bb, 0, bStrides, shape);
        KernelChecks.Length(kernel, "y", by, count, $"shape {KernelChecks.Format(shape)}");
        if (count > 0) BinaryCore(op, ba, aStrides, bb, bStrides, by, shape);
    }

    /// <inheritdoc />
    public void Where(DeviceBuffer cond, DeviceBuffer a, DeviceBuffer b, DeviceBuffer y, long count)
    {
        const string kernel = "Where";
        var bc = Own(cond, kernel); var ba = Own(a, kernel); var bb = Own(b, kernel); var by = Own(y, kernel);
        KernelChecks.SameType(kernel, bc, ba, bb, by);
        KernelChecks.Count(kernel, count, ("cond", bc), ("a", ba), ("b", bb), ("y", by));
        if (count > 0) WhereCore(bc, ba, bb, by, count);
    }

    /// <inheritdoc />
    public void Reduce(ReduceOp op, DeviceBuffer x, DeviceBuffer y, int outer, int reduce, int inner)
    {
        const string kernel = "Reduce";
        KernelChecks.Defined(kernel, op);
        var bx = Own(x, kernel); var by = Own(y, kernel);
        KernelChecks.SameType(kernel, bx, by);
        string shape = $"[{outer}, {reduce}, {inner}]";
        KernelChecks.NonNegative(kernel, $"shape {shape}", outer, reduce, inner);
        KernelChecks.Length(kernel, "x", bx, (long)outer * reduce * inner, $"shape {shape}");
        KernelChecks.Length(kernel, "y", by, (long)outer * inner, $"shape {shape}");
        if ((long)outer * inner > 0) ReduceCore(op, bx, by, outer, reduce, inner);
    }

    /// <inheritdoc />
    public void Gemm(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        DeviceBuffer a, long aOffset, long aBatchStride, DeviceBuffer b, long bOffset, long bBatchStride,
        double beta, DeviceBuffer c, long cOffset, long cBatchStride)
    {
        const string kernel = "Gemm";
        var ba = Own(a, kernel); var bb = Own(b, kernel); var bc = Own(c, kernel);
        KernelChecks.SameType(kernel, ba, bb, bc);
        KernelChecks.NonNegative(kernel, $"batch {batch}, m {m}, n {n}, k {k}", batch, m, n, k);
        if (batch == 0 || m == 0 || n == 0) return;
        // A and B are stored as their op() says: A is m x k (k x m when transposed), B is k x n (n x k).
        KernelChecks.Matrices(kernel, "A", ba, aOffset, aBatchStride, batch, transA ? k : m, transA ? m : k);
        KernelChecks.Matrices(kernel, "B", bb, bOffset, bBatchStride, batch, transB ? n : k, transB ? k : n);
        KernelChecks.Matrices(kernel, "C", bc, cOffset, cBatchStride, batch, m, n);
        GemmCore(transA, transB, batch, m, n, k, alpha, ba, aOffset, aBatchStride, bb, bOffset, bBatchStride, beta, bc, cOffset, cBatchStride);
    }

    /// <inheritdoc />
    public void CopyStrided(DeviceBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides, DeviceBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape)
    {
        const string kernel = "CopyStrided";
        var bs = Own(src, kernel); var bd = Own(dst, kernel);
        KernelChecks.SameType(kernel, bs, bd);
        long count = KernelChecks.Shape(kernel, shape, srcStrides, "src", dstStrides, "dst");
        KernelChecks.Reach(kernel, "src", bs, srcOffset, srcStrides, shape);
        KernelChecks.Reach(kernel, "dst", bd, dstOffset, dstStrides, shape);
        if (count > 0) CopyStridedCore(bs, srcOffset, srcStrides, bd, dstOffset, dstStrides, shape);
    }

    /// <summary>Releases what the backend holds (pooled memory, compiled kernels, the accelerator it owns).</summary>
    public abstract void Dispose();

    /// <summary>Allocates a buffer; <paramref name="length"/> is at least 0.</summary>
    protected abstract TBuffer AllocateCore(long length, DType dtype, bool zero);

    /// <summary>Copies 1 or more host elements (float or double) into [offset, offset + src.Length), inside the buffer.</summary>
    protected abstract void UploadCore<T>(TBuffer dst, ReadOnlySpan<T> src, long offset) where T : unmanaged;

    /// <summary>Copies 1 or more elements from [offset, offset + dst.Length), inside the buffer, to host memory.</summary>
    protected abstract void DownloadCore<T>(TBuffer src, Span<T> dst, long offset) where T : unmanaged;

    /// <summary>Fills a non-empty buffer.</summary>
    protected abstract void FillCore(TBuffer dst, double value);

    /// <summary>Fills a non-empty buffer from the Philox stream.</summary>
    protected abstract void FillRandomCore(TBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset);

    /// <summary>See <see cref="Unary"/>; count is at least 1 and within both buffers.</summary>
    protected abstract void UnaryCore(UnaryOp op, TBuffer x, TBuffer y, long count);

    /// <summary>See <see cref="Affine"/>; count is at least 1 and within both buffers.</summary>
    protected abstract void AffineCore(TBuffer x, TBuffer y, long count, double scale, double shift);

    /// <summary>See <see cref="PowScalar"/>; count is at least 1 and within both buffers.</summary>
    protected abstract void PowScalarCore(TBuffer x, TBuffer y, long count, double exponent);

    /// <summary>See <see cref="Clamp"/>; count is at least 1 and within both buffers.</summary>
    protected abstract void ClampCore(TBuffer x, TBuffer y, long count, double lo, double hi);

    /// <summary>See <see cref="Binary"/>; the shape is not empty and every element read or written is inside its buffer.</summary>
    protected abstract void BinaryCore(BinaryOp op, TBuffer a, ReadOnlySpan<long> aStrides, TBuffer b, ReadOnlySpan<long> bStrides, TBuffer y, ReadOnlySpan<int> shape);

    /// <summary>See <see cref="Where"/>; count is at least 1 and within every buffer.</summary>
    protected abstract void WhereCore(TBuffer cond, TBuffer a, TBuffer b, TBuffer y, long count);

    /// <summary>See <see cref="Reduce"/>; outer and inner are at least 1 (reduce may be 0), the buffers hold the shape.</summary>
    protected abstract void ReduceCore(ReduceOp op, TBuffer x, TBuffer y, int outer, int reduce, int inner);

    /// <summary>See <see cref="Gemm"/>; batch, m and n are at least 1 and every matrix lies inside its buffer.</summary>
    protected abstract void GemmCore(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        TBuffer a, long aOffset, long aBatchStride, TBuffer b, long bOffset, long bBatchStride,
        double beta, TBuffer c, long cOffset, long cBatchStride);

    /// <summary>See <see cref="CopyStrided"/>; the shape is not empty and every element read or written is inside its buffer.</summary>
    protected abstract void CopyStridedCore(TBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides, TBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape);

    /// <summary>The buffer as this backend's own, or a <see cref="KernelException"/> naming the kernel when it is another backend's or disposed.</summary>
    internal TBuffer Own(DeviceBuffer buffer, string kernel)
    {
        if (buffer is not TBuffer own || !ReferenceEquals(buffer.Backend, this))
            throw new KernelException(kernel, $"buffer belongs to backend '{buffer.Backend.Name}', not '{Name}'");
        if (own.IsDisposed) throw new KernelException(kernel, "buffer was disposed");
        return own;
    }

    /// <summary><see cref="Own"/> for an optional buffer (null stays null).</summary>
    internal TBuffer? OwnOptional(DeviceBuffer? buffer, string kernel) => buffer is null ? null : Own(buffer, kernel);

    /// <summary>The two buffers of an elementwise map of <paramref name="count"/> elements, checked.</summary>
    private (TBuffer, TBuffer) Pair(string kernel, DeviceBuffer x, DeviceBuffer y, long count)
    {
        var bx = Own(x, kernel); var by = Own(y, kernel);
        KernelChecks.SameType(kernel, bx, by);
        KernelChecks.Count(kernel, count, ("x", bx), ("y", by));
        return (bx, by);
    }
}
