using System.Runtime.InteropServices;
using DiffusionCore.Kernels.Elementwise;
using DiffusionCore.Kernels.Gemm;
using DiffusionCore.Kernels.Memory;
using DiffusionCore.Kernels.Random;

namespace DiffusionCore.Kernels.Cpu;

/// <summary>
/// The managed CPU backend: pooled arrays, SIMD kernels (TensorPrimitives and Vector512 micro-kernels),
/// work split over every core. float32 everywhere, float64 for gradient checks. Arguments are checked by
/// <see cref="CheckedBackend{TBuffer}"/> before the cores below run; every fused capability is provided
/// (convolution, GroupNorm, attention, resampling, softmax, optimizer updates).
/// </summary>
public sealed partial class CpuBackend : CheckedBackend<CpuBuffer>
{
    private CpuBackend()
    {
        AddCapability<IConvolutionKernels>(new CpuConvolution(this));
        AddCapability<IGroupNormKernels>(new CpuGroupNorm(this));
        AddCapability<IAttentionKernels>(new CpuAttention(this));
        AddCapability<IResampleKernels>(new CpuResample(this));
        AddCapability<ISoftmaxKernels>(new CpuSoftmax(this));
        AddCapability<IOptimizerKernels>(new CpuOptimizer(this));
    }

    /// <summary>The process-wide CPU backend.</summary>
    public static CpuBackend Instance { get; } = new();

    /// <inheritdoc />
    public override string Name => "cpu";

    internal CpuArrayPool<float> Float32Pool { get; } = new();
    internal CpuArrayPool<double> Float64Pool { get; } = new();

    /// <summary>Elements allocated fresh so far (float32 and float64); flat in a steady-state loop.</summary>
    public long AllocatedElements => Float32Pool.AllocatedElements + Float64Pool.AllocatedElements;

    /// <summary>Elements idle in the pools.</summary>
    public long PooledElements => Float32Pool.PooledElements + Float64Pool.PooledElements;

    /// <summary>Bytes of the arrays held by live buffers (rented from the pools, not yet returned).</summary>
    public long InUseBytes => Float32Pool.InUseElements * sizeof(float) + Float64Pool.InUseElements * sizeof(double);

    /// <summary>
    /// The peak of <see cref="InUseBytes"/> since the last <see cref="ResetPeakInUse"/>: the sum of the float32 and
    /// the float64 pools' own peaks, so exact when one dtype is in use and otherwise an upper bound.
    /// </summary>
    public long PeakInUseBytes => Float32Pool.PeakInUseElements * sizeof(float) + Float64Pool.PeakInUseElements * sizeof(double);

    /// <summary>Starts a new <see cref="PeakInUseBytes"/> measurement from the bytes in use now.</summary>
    public void ResetPeakInUse()
    {
        Float32Pool.ResetPeak();
        Float64Pool.ResetPeak();
    }

    /// <inheritdoc />
    protected override CpuBuffer AllocateCore(long length, DType dtype, bool zero)
    {
        if (length > Array.MaxLength) throw new KernelException("Allocate", $"length {length} exceeds the largest managed array ({Array.MaxLength})");
        if (dtype == DType.Float32)
        {
            var a = Float32Pool.Rent(length);
            if (zero) a.AsSpan(0, (int)length).Clear();
            return new CpuBuffer(this, length, a);
        }
        var d = Float64Pool.Rent(length);
        if (zero) d.AsSpan(0, (int)length).Clear();
        return new CpuBuffer(this, length, d);
    }

    /// <inheritdoc />
    protected override void UploadCore<T>(CpuBuffer b, ReadOnlySpan<T> src, long offset)
    {
        if (typeof(T) == typeof(float) && b.DType == DType.Float64)
        {
            var s = MemoryMarshal.Cast<T, float>(src);
            var d = b.Float64Array;
            for (int i = 0; i < s.Length; i++) d[offset + i] = s[i];
        }
        else if (typeof(T) == typeof(double) && b.DType == DType.Float32)
        {
            var s = MemoryMarshal.Cast<T, double>(src);
            var d = b.Float32Array;
            for (int i = 0; i < s.Length; i++) d[offset + i] = (float)s[i];
        }
        else src.CopyTo(b.Span<T>().Slice((int)offset));
    }

    /// <inheritdoc />
    protected override void DownloadCore<T>(CpuBuffer b, Span<T> dst, long offset)
    {
        if (typeof(T) == typeof(float) && b.DType == DType.Float64)
        {
            var d = MemoryMarshal.Cast<T, float>(dst);
            var s = b.Float64Array;
            for (int i = 0; i < d.Length; i++) d[i] = (float)s[offset + i];
        }
        else if (typeof(T) == typeof(double) && b.DType == DType.Float32)
        {
            var d = MemoryMarshal.Cast<T, double>(dst);
            var s = b.Float32Array;
            for (int i = 0; i < d.Length; i++) d[i] = s[offset + i];
        }
        else b.Span<T>().Slice((int)offset, dst.Length).CopyTo(dst);
    }

    /// <inheritdoc />
    protected override void FillCore(CpuBuffer b, double value)
    {
        if (b.DType == DType.Float32) b.Span<float>().Fill((float)value);
        else b.Span<double>().Fill(value);
    }

    /// <inheritdoc />
    protected override void FillRandomCore(CpuBuffer b, RandomDistribution distribution, ulong seed, ulong blockOffset)
    {
        if (b.DType == DType.Float32) PhiloxCpu.Fill(b.Float32Array, b.Length, distribution, seed, blockOffset);
        else PhiloxCpu.Fill(b.Float64Array, b.Length, distribution, seed, blockOffset);
    }

    /// <inheritdoc />
    protected override void UnaryCore(UnaryOp op, CpuBuffer x, CpuBuffer y, long count)
    {
        if (x.DType == DType.Float32) ElementwiseCpu.Unary(op, x.Float32Array, y.Float32Array, count);
        else ElementwiseCpu.Unary(op, x.Float64Array, y.Float64Array, count);
    }

    /// <inheritdoc />
    protected override void AffineCore(CpuBuffer x, CpuBuffer y, long count, double scale, double shift)
    {
        if (x.DType == DType.Float32) ElementwiseCpu.Affine(x.Float32Array, y.Float32Array, count, (float)scale, (float)shift);
        else ElementwiseCpu.Affine(x.Float64Array, y.Float64Array, count, scale, shift);
    }

    /// <inheritdoc />
    protected override void PowScalarCore(CpuBuffer x, CpuBuffer y, long count, double exponent)
    {
        if (x.DType == DType.Float32) ElementwiseCpu.Pow(x.Float32Array, y.Float32Array, count, (float)exponent);
        else ElementwiseCpu.Pow(x.Float64Array, y.Float64Array, count, exponent);
    }

    /// <inheritdoc />
    protected override void ClampCore(CpuBuffer x, CpuBuffer y, long count, double lo, double hi)
    {
        if (x.DType == DType.Float32) ElementwiseCpu.Clamp(x.Float32Array, y.Float32Array, count, (float)lo, (float)hi);
        else ElementwiseCpu.Clamp(x.Float64Array, y.Float64Array, count, lo, hi);
    }

    /// <inheritdoc />
    protected override void BinaryCore(BinaryOp op, CpuBuffer a, ReadOnlySpan<long> aStrides, CpuBuffer b, ReadOnlySpan<long> bStrides, CpuBuffer y, ReadOnlySpan<int> shape)
    {
        if (a.DType == DType.Float32) ElementwiseCpu.Binary(op, a.Float32Array, aStrides, b.Float32Array, bStrides, y.Float32Array, shape);
        else ElementwiseCpu.Binary(op, a.Float64Array, aStrides, b.Float64Array, bStrides, y.Float64Array, shape);
    }

    /// <inheritdoc />
    protected override void WhereCore(CpuBuffer cond, CpuBuffer a, CpuBuffer b, CpuBuffer y, long count)
    {
        if (a.DType == DType.Float32) ElementwiseCpu.Where(cond.Float32Array, a.Float32Array, b.Float32Array, y.Float32Array, count);
        else ElementwiseCpu.Where(cond.Float64Array, a.Float64Array, b.Float64Array, y.Float64Array, count);
    }

    /// <inheritdoc />
    protected override void ReduceCore(ReduceOp op, CpuBuffer x, CpuBuffer y, int outer, int reduce, int inner)
    {
        if (x.DType == DType.Float32) ReduceCpu.Reduce(op, x.Float32Array, y.Float32Array, outer, reduce, inner);
        else ReduceCpu.Reduce(op, x.Float64Array, y.Float64Array, outer, reduce, inner);
    }

    /// <inheritdoc />
    protected override void GemmCore(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        CpuBuffer a, long aOffset, long aBatchStride, CpuBuffer b, long bOffset, long bBatchStride,
        double beta, CpuBuffer c, long cOffset, long cBatchStride)
    {
        int lda = transA ? m : k, ldb = transB ? k : n;
        for (int i = 0; i < batch; i++)
        {
            long ao = aOffset + i * aBatchStride, bo = bOffset + i * bBatchStride, co = cOffset + i * cBatchStride;
            if (a.DType == DType.Float32)
                GemmCpu.Sgemm(transA, transB, m, n, k, (float)alpha, a.Float32Array.AsSpan((int)ao, m * k), lda,
                    b.Float32Array.AsSpan((int)bo, k * n), ldb, (float)beta, c.Float32Array.AsSpan((int)co, m * n), n);
            else
                GemmCpu.Dgemm(transA, transB, m, n, k, alpha, a.Float64Array.AsSpan((int)ao, m * k), lda,
                    b.Float64Array.AsSpan((int)bo, k * n), ldb, beta, c.Float64Array.AsSpan((int)co, m * n), n);
        }
    }

    /// <inheritdoc />
    protected override void CopyStridedCore(CpuBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides, CpuBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape)
    {
        if (src.DType == DType.Float32) ReduceCpu.CopyStrided(src.Float32Array, srcOffset, srcStrides, dst.Float32Array, dstOffset, dstStrides, shape);
        else ReduceCpu.CopyStrided(src.Float64Array, srcOffset, srcStrides, dst.Float64Array, dstOffset, dstStrides, shape);
    }

    /// <summary>Drops idle pooled arrays.</summary>
    public void Trim()
    {
        Float32Pool.Trim();
        Float64Pool.Trim();
    }

    /// <inheritdoc />
    public override void Dispose() => Trim();

    /// <summary>The first <paramref name="length"/> elements of a checked buffer, the exact span a kernel of fixed sizes expects.</summary>
    private static Span<T> Exact<T>(CpuBuffer b, long length) where T : unmanaged => b.Span<T>()[..(int)length];
}
