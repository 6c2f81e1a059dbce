using DiffusionCore.Kernels.Conv;

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
    /// The fused sampler update x[i] = a x[i] + b eps[i] + c z[i] in one pass (one step of DDPM's ancestral sampler,
    /// Ho et al. 2020, Algorithm 2, or of Euler-Maruyama on a reverse SDE); <paramref name="z"/> may be null, which
    /// drops its term (the last, noise-free step).
    /// </summary>
    void SamplerUpdate(DeviceBuffer x, DeviceBuffer eps, DeviceBuffer? z, long count, double a, double b, double c);

    /// <summary>
    /// Per-sample dot products y[s] = Σ_i probe[s, i] v[s, i] over [batch, length] buffers: Hutchinson's trace estimate
    /// eps · (Jᵀ eps) per sample (Hutchinson 1989; the divergence of FFJORD and of sliced score matching), with the
    /// probe drawn by <see cref="FillRandom"/> and v the vector-Jacobian product.
    /// </summary>
    void HutchinsonDot(DeviceBuffer probe, DeviceBuffer v, DeviceBuffer y, int batch, int length);

    /// <summary>
    /// Fills the buffer from the Philox4x32-10 stream (seed, counter offset): element e uses block
    /// <c>offset + e / 4</c>, lane <c>e % 4</c>, so any backend and thread count give the same numbers.
    /// </summary>
    void FillRandom(DeviceBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset);

    /// <summary>
    /// Conv2d forward over contiguous NCHW buffers laid out as <paramref name="shape"/> describes:
    /// y[N, Cout, OutH, OutW] = conv2d(x[N, Cin, H, W], w[Cout, Cin, KH, KW]) + bias[Cout], zero padding, one
    /// stride on both axes. <paramref name="bias"/> may be null (no bias). y must not overlap the inputs.
    /// </summary>
    void Conv2dForward(Conv2dShape shape, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y);

    /// <summary>
    /// Input gradient of <see cref="Conv2dForward"/>: dx[N, Cin, H, W] = ∂L/∂x given dy[N, Cout, OutH, OutW]
    /// (the adjoint of the convolution in x; overwritten). dx must not overlap the inputs.
    /// </summary>
    void Conv2dBackwardInput(Conv2dShape shape, DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx);

    /// <summary>
    /// Weight gradient of <see cref="Conv2dForward"/>: dw[Cout, Cin, KH, KW] = ∂L/∂w given x and dy (overwritten), and
    /// db[Cout] = Σ_{n, oh, ow} dy when <paramref name="db"/> is not null. Outputs must not overlap the inputs.
    /// </summary>
    void Conv2dBackwardWeight(Conv2dShape shape, DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? db);

    /// <summary>
    /// Group normalisation (Wu and He 2018) of x[N, C, spatial], optionally followed by SiLU: per (n, group) block
    /// of C/groups channels, xhat = (x - mean) * rstd with rstd = 1/sqrt(biased variance + eps), then
    /// y = gamma[c] xhat + beta[c] (and y = y sigmoid(y) when <paramref name="fuseSilu"/>). Writes mean and rstd
    /// [N, groups] for <see cref="GroupNormBackward"/>. C must be a multiple of groups, spatial at least 1.
    /// </summary>
    void GroupNormForward(int batch, int channels, int spatial, int groups, double eps,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer y, DeviceBuffer mean, DeviceBuffer rstd, bool fuseSilu);

    /// <summary>
    /// Backward of <see cref="GroupNormForward"/> from the saved mean and rstd: dx[N, C, spatial], and dgamma[C],
    /// dbeta[C] summed over the batch (all overwritten). With <paramref name="fuseSilu"/> the SiLU is differentiated
    /// too (its input recomputed from x, mean, rstd, gamma and beta). dx must not overlap x or dy.
    /// </summary>
    void GroupNormBackward(int batch, int channels, int spatial, int groups,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer mean, DeviceBuffer rstd,
        DeviceBuffer dy, DeviceBuffer dx, DeviceBuffer dgamma, DeviceBuffer dbeta, bool fuseSilu);

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

    /// <summary>
    /// Scaled-dot-product attention per sequence, o = softmax(scale q kᵀ) v, over contiguous q, k, v, o [B, N, D];
    /// also writes lse[B, N] = log Σ_j exp(scale q_i · k_j), the row log-sum-exp kept for
    /// <see cref="AttentionBackward"/>. No N x N buffer is required.
    /// </summary>
    void AttentionForward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse);

    /// <summary>
    /// Backward of <see cref="AttentionForward"/> from its o and lse: given dO = ∂L/∂o [B, N, D], writes (overwrites)
    /// dq, dk, dv [B, N, D] (softmax Jacobian through Delta_i = dO_i · o_i; FlashAttention-2, Algorithm 2).
    /// </summary>
    void AttentionBackward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse,
        DeviceBuffer dO, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv);
}
