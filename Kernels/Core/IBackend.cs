namespace DiffusionCore.Kernels;

/// <summary>
/// The primitive core of a backend: raw compute on flat buffers, with shapes as plain integers (no Tensor, no
/// autograd). Every backend implements these members, and they are enough for every op of the Engine: allocation,
/// host copies, fills (constant and Philox), elementwise unary and binary ops, selection, reductions, batched GEMM
/// and strided copies. The fused kernels (convolution, GroupNorm, attention, resampling, softmax, optimizer updates)
/// are optional capabilities, separate interfaces found through <see cref="GetCapability{T}"/>; where a backend lacks
/// one, the Engine computes the op from these primitives instead.
/// <para>
/// Every member checks its arguments before any kernel runs: that the buffers belong to this backend, are not
/// disposed and share one dtype, and that counts, shapes, strides and offsets stay inside the buffers. The checks are
/// those of <see cref="CheckedBackend{TBuffer}"/>, the base class of every backend here, so a bad call fails with
/// the same <see cref="KernelException"/> on every backend. Strided arguments give the element stride of each axis
/// (0 broadcasts the axis).
/// </para>
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>Short name, e.g. "cpu" or "cuda:0".</summary>
    string Name { get; }

    /// <summary>Allocates <paramref name="length"/> elements, zeroed when <paramref name="zero"/> is set.</summary>
    DeviceBuffer Allocate(long length, DType dtype, bool zero = true);

    /// <summary>Copies host data (float or double, converted to the buffer's dtype) into the buffer starting at element <paramref name="offset"/>.</summary>
    void Upload<T>(DeviceBuffer dst, ReadOnlySpan<T> src, long offset = 0) where T : unmanaged;

    /// <summary>Copies buffer elements starting at <paramref name="offset"/> into host memory (float or double).</summary>
    void Download<T>(DeviceBuffer src, Span<T> dst, long offset = 0) where T : unmanaged;

    /// <summary>Sets every element of the buffer to <paramref name="value"/>.</summary>
    void Fill(DeviceBuffer dst, double value);

    /// <summary>
    /// Fills the buffer from the Philox4x32-10 stream (seed, counter offset): element e uses block
    /// <c>offset + e / 4</c>, lane <c>e % 4</c>, so any backend and thread count give the same numbers.
    /// </summary>
    void FillRandom(DeviceBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset);

    /// <summary>y[i] = op(x[i]) for the first <paramref name="count"/> elements; y may be x.</summary>
    void Unary(UnaryOp op, DeviceBuffer x, DeviceBuffer y, long count);

    /// <summary>y[i] = scale * x[i] + shift; y may be x.</summary>
    void Affine(DeviceBuffer x, DeviceBuffer y, long count, double scale, double shift);

    /// <summary>y[i] = x[i] ^ exponent; y may be x.</summary>
    void PowScalar(DeviceBuffer x, DeviceBuffer y, long count, double exponent);

    /// <summary>y[i] = min(max(x[i], lo), hi); y may be x.</summary>
    void Clamp(DeviceBuffer x, DeviceBuffer y, long count, double lo, double hi);

    /// <summary>
    /// y = op(a, b) over <paramref name="shape"/>; a and b are read through their strides (0 broadcasts),
    /// y is written contiguously.
    /// </summary>
    void Binary(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aStrides, DeviceBuffer b, ReadOnlySpan<long> bStrides, DeviceBuffer y, ReadOnlySpan<int> shape);

    /// <summary>y[i] = cond[i] != 0 ? a[i] : b[i] over contiguous buffers of one length.</summary>
    void Where(DeviceBuffer cond, DeviceBuffer a, DeviceBuffer b, DeviceBuffer y, long count);

    /// <summary>
    /// Reduces x viewed as [outer, reduce, inner] over its middle axis into y viewed as [outer, inner]; an empty
    /// middle axis gives the op's identity (0 for a sum, -inf for a max).
    /// </summary>
    void Reduce(ReduceOp op, DeviceBuffer x, DeviceBuffer y, int outer, int reduce, int inner);

    /// <summary>
    /// Batched GEMM: C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, op = transpose when
    /// the flag is set. op(A) is M x K, op(B) is K x N. Batch strides are in elements (0 reuses one matrix).
    /// With K = 0 or alpha = 0, A and B are not read; with beta = 0, C is not read.
    /// </summary>
    void Gemm(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        DeviceBuffer a, long aOffset, long aBatchStride,
        DeviceBuffer b, long bOffset, long bBatchStride,
        double beta, DeviceBuffer c, long cOffset, long cBatchStride);

    /// <summary>
    /// Copies the elements of an N-d region: dst[dstOffset + sum(i_k dstStrides_k)] = src[srcOffset + sum(i_k srcStrides_k)]
    /// for every index i of <paramref name="shape"/>. Covers permute, slice, pad, concat, broadcast and im2col
    /// (negative strides read backwards).
    /// </summary>
    void CopyStrided(DeviceBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides,
        DeviceBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape);

    /// <summary>
    /// The backend's kernels for an optional capability <typeparamref name="T"/> (e.g. <see cref="IConvolutionKernels"/>),
    /// or null when it has none, in which case the caller computes the op from the primitives.
    /// </summary>
    T? GetCapability<T>() where T : class;
}
