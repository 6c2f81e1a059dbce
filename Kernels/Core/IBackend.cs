namespace DiffusionCore.Kernels;

/// <summary>
/// Raw compute on flat buffers: shapes are plain integers, there is no Tensor and no autograd here.
/// Every method checks that its buffers belong to this backend and have one dtype. Strided
/// arguments give the element stride of each axis (0 broadcasts the axis).
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>Short name, e.g. "cpu" or "cuda:0".</summary>
    string Name { get; }

    /// <summary>Allocates <paramref name="length"/> elements, zeroed when <paramref name="zero"/> is set.</summary>
    DeviceBuffer Allocate(long length, DType dtype, bool zero = true);

    /// <summary>Copies host data into the buffer starting at element <paramref name="offset"/>.</summary>
    void Upload<T>(DeviceBuffer dst, ReadOnlySpan<T> src, long offset = 0) where T : unmanaged;

    /// <summary>Copies buffer elements starting at <paramref name="offset"/> into host memory.</summary>
    void Download<T>(DeviceBuffer src, Span<T> dst, long offset = 0) where T : unmanaged;

    /// <summary>Sets every element of the buffer to <paramref name="value"/>.</summary>
    void Fill(DeviceBuffer dst, double value);

    /// <summary>y[i] = op(x[i]) for the first <paramref name="count"/> elements; y may be x.</summary>
    void Unary(UnaryOp op, DeviceBuffer x, DeviceBuffer y, long count);

    /// <summary>y[i] = scale * x[i] + shift; y may be x.</summary>
    void Affine(DeviceBuffer x, DeviceBuffer y, long count, double scale, double shift);

    /// <summary>y[i] = x[i] ^ exponent.</summary>
    void PowScalar(DeviceBuffer x, DeviceBuffer y, long count, double exponent);

    /// <summary>y[i] = min(max(x[i], lo), hi).</summary>
    void Clamp(DeviceBuffer x, DeviceBuffer y, long count, double lo, double hi);

    /// <summary>
    /// y = op(a, b) over <paramref name="shape"/>; a and b are read through their strides (0 broadcasts),
    /// y is written contiguously.
    /// </summary>
    void Binary(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aStrides, DeviceBuffer b, ReadOnlySpan<long> bStrides, DeviceBuffer y, ReadOnlySpan<int> shape);

    /// <summary>y[i] = cond[i] != 0 ? a[i] : b[i] over contiguous buffers of one length.</summary>
    void Where(DeviceBuffer cond, DeviceBuffer a, DeviceBuffer b, DeviceBuffer y, long count);

    /// <summary>
    /// Reduces x viewed as [outer, reduce, inner] over its middle axis into y viewed as [outer, inner].
    /// </summary>
    void Reduce(ReduceOp op, DeviceBuffer x, DeviceBuffer y, int outer, int reduce, int inner);

    /// <summary>
    /// Softmax (or log-softmax) over the last axis of x viewed as [rows, cols].
    /// </summary>
    void Softmax(DeviceBuffer x, DeviceBuffer y, int rows, int cols, bool log);

    /// <summary>
    /// Batched GEMM: C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, op = transpose when
    /// the flag is set. op(A) is M x K, op(B) is K x N. Batch strides are in elements (0 reuses one matrix).
    /// </summary>
    void Gemm(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        DeviceBuffer a, long aOffset, long aBatchStride,
        DeviceBuffer b, long bOffset, long bBatchStride,
        double beta, DeviceBuffer c, long cOffset, long cBatchStride);

    /// <summary>
    /// Copies the elements of an N-d region: dst[dstOffset + sum(i_k dstStrides_k)] = src[srcOffset + sum(i_k srcStrides_k)]
    /// for every index i of <paramref name="shape"/>. Covers permute, slice, pad, concat and broadcast.
    /// </summary>
    void CopyStrided(DeviceBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides,
        DeviceBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape);

    /// <summary>y[i] = alpha * x[i] + beta * y[i] (the fused update of optimizers, EMA and samplers).</summary>
    void Axpby(DeviceBuffer x, DeviceBuffer y, long count, double alpha, double beta);

    /// <summary>
    /// One Adam/AdamW step on a parameter buffer (Kingma and Ba 2015, Algorithm 1; Loshchilov and
    /// Hutter 2019 for the decoupled weight decay), moments m and v updated in place.
    /// </summary>
    void AdamUpdate(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long count, AdamStep step);

    /// <summary>
    /// Fills the buffer from the Philox4x32-10 stream (seed, counter offset): element e uses block
    /// <c>offset + e / 4</c>, lane <c>e % 4</c>, so any backend and thread count give the same numbers.
    /// </summary>
    void FillRandom(DeviceBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset);
}
