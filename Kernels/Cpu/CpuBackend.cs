using System.Numerics;
using System.Runtime.InteropServices;
using DiffusionCore.Kernels.Elementwise;
using DiffusionCore.Kernels.Gemm;
using DiffusionCore.Kernels.Memory;
using DiffusionCore.Kernels.Optim;
using DiffusionCore.Kernels.Random;

namespace DiffusionCore.Kernels.Cpu;

/// <summary>
/// The managed CPU backend: pooled arrays, SIMD kernels (TensorPrimitives and Vector512 micro-kernels),
/// work split over every core. float32 everywhere, float64 for gradient checks.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    /// <summary>The process-wide CPU backend.</summary>
    public static CpuBackend Instance { get; } = new();

    /// <inheritdoc />
    public string Name => "cpu";

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
    public DeviceBuffer Allocate(long length, DType dtype, bool zero = true)
    {
        if (length < 0) throw new KernelException("Allocate", $"negative length {length}");
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
    public void Upload<T>(DeviceBuffer dst, ReadOnlySpan<T> src, long offset = 0) where T : unmanaged
    {
        var b = Own(dst, "Upload");
        CheckRange("Upload", b, offset, src.Length);
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
    public void Download<T>(DeviceBuffer src, Span<T> dst, long offset = 0) where T : unmanaged
    {
        var b = Own(src, "Download");
        CheckRange("Download", b, offset, dst.Length);
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
    public void Fill(DeviceBuffer dst, double value)
    {
        var b = Own(dst, "Fill");
        if (b.DType == DType.Float32) b.Span<float>().Fill((float)value);
        else b.Span<double>().Fill(value);
    }

    /// <inheritdoc />
    public void Unary(UnaryOp op, DeviceBuffer x, DeviceBuffer y, long count)
    {
        var (bx, by) = Pair("Unary", x, y, count);
        if (bx.DType == DType.Float32) ElementwiseCpu.Unary(op, bx.Float32Array, by.Float32Array, count);
        else ElementwiseCpu.Unary(op, bx.Float64Array, by.Float64Array, count);
    }

    /// <inheritdoc />
    public void Affine(DeviceBuffer x, DeviceBuffer y, long count, double scale, double shift)
    {
        var (bx, by) = Pair("Affine", x, y, count);
        if (bx.DType == DType.Float32) ElementwiseCpu.Affine(bx.Float32Array, by.Float32Array, count, (float)scale, (float)shift);
        else ElementwiseCpu.Affine(bx.Float64Array, by.Float64Array, count, scale, shift);
    }

    /// <inheritdoc />
    public void PowScalar(DeviceBuffer x, DeviceBuffer y, long count, double exponent)
    {
        var (bx, by) = Pair("PowScalar", x, y, count);
        if (bx.DType == DType.Float32) ElementwiseCpu.Pow(bx.Float32Array, by.Float32Array, count, (float)exponent);
        else ElementwiseCpu.Pow(bx.Float64Array, by.Float64Array, count, exponent);
    }

    /// <inheritdoc />
    public void Clamp(DeviceBuffer x, DeviceBuffer y, long count, double lo, double hi)
    {
        var (bx, by) = Pair("Clamp", x, y, count);
        if (bx.DType == DType.Float32) ElementwiseCpu.Clamp(bx.Float32Array, by.Float32Array, count, (float)lo, (float)hi);
        else ElementwiseCpu.Clamp(bx.Float64Array, by.Float64Array, count, lo, hi);
    }

    /// <inheritdoc />
    public void Binary(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aStrides, DeviceBuffer b, ReadOnlySpan<long> bStrides, DeviceBuffer y, ReadOnlySpan<int> shape)
    {
        var ba = Own(a, "Binary"); var bb = Own(b, "Binary"); var by = Own(y, "Binary");
        SameType("Binary", ba, bb, by);
        if (ba.DType == DType.Float32) ElementwiseCpu.Binary(op, ba.Float32Array, aStrides, bb.Float32Array, bStrides, by.Float32Array, shape);
        else ElementwiseCpu.Binary(op, ba.Float64Array, aStrides, bb.Float64Array, bStrides, by.Float64Array, shape);
    }

    /// <inheritdoc />
    public void Where(DeviceBuffer cond, DeviceBuffer a, DeviceBuffer b, DeviceBuffer y, long count)
    {
        var bc = Own(cond, "Where"); var ba = Own(a, "Where"); var bb = Own(b, "Where"); var by = Own(y, "Where");
        SameType("Where", bc, ba, bb, by);
        if (ba.DType == DType.Float32) ElementwiseCpu.Where(bc.Float32Array, ba.Float32Array, bb.Float32Array, by.Float32Array, count);
        else ElementwiseCpu.Where(bc.Float64Array, ba.Float64Array, bb.Float64Array, by.Float64Array, count);
    }

    /// <inheritdoc />
    public void Reduce(ReduceOp op, DeviceBuffer x, DeviceBuffer y, int outer, int reduce, int inner)
    {
        var bx = Own(x, "Reduce"); var by = Own(y, "Reduce");
        SameType("Reduce", bx, by);
        if (bx.DType == DType.Float32) ReduceCpu.Reduce(op, bx.Float32Array, by.Float32Array, outer, reduce, inner);
        else ReduceCpu.Reduce(op, bx.Float64Array, by.Float64Array, outer, reduce, inner);
    }

    /// <inheritdoc />
    public void Softmax(DeviceBuffer x, DeviceBuffer y, int rows, int cols, bool log)
    {
        var (bx, by) = Pair("Softmax", x, y, (long)rows * cols);
        if (bx.DType == DType.Float32) ReduceCpu.Softmax(bx.Float32Array, by.Float32Array, rows, cols, log);
        else ReduceCpu.Softmax(bx.Float64Array, by.Float64Array, rows, cols, log);
    }

    /// <inheritdoc />
    public void Gemm(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        DeviceBuffer a, long aOffset, long aBatchStride, DeviceBuffer b, long bOffset, long bBatchStride,
        double beta, DeviceBuffer c, long cOffset, long cBatchStride)
    {
        var ba = Own(a, "Gemm"); var bb = Own(b, "Gemm"); var bc = Own(c, "Gemm");
        SameType("Gemm", ba, bb, bc);
        int lda = transA ? m : k, ldb = transB ? k : n;
        for (int i = 0; i < batch; i++)
        {
            long ao = aOffset + i * aBatchStride, bo = bOffset + i * bBatchStride, co = cOffset + i * cBatchStride;
            if (ba.DType == DType.Float32)
                GemmCpu.Sgemm(transA, transB, m, n, k, (float)alpha, ba.Float32Array.AsSpan((int)ao, m * k), lda,
                    bb.Float32Array.AsSpan((int)bo, k * n), ldb, (float)beta, bc.Float32Array.AsSpan((int)co, m * n), n);
            else
                GemmCpu.Dgemm(transA, transB, m, n, k, alpha, ba.Float64Array.AsSpan((int)ao, m * k), lda,
                    bb.Float64Array.AsSpan((int)bo, k * n), ldb, beta, bc.Float64Array.AsSpan((int)co, m * n), n);
        }
    }

    /// <inheritdoc />
    public void CopyStrided(DeviceBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides, DeviceBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape)
    {
        var bs = Own(src, "CopyStrided"); var bd = Own(dst, "CopyStrided");
        SameType("CopyStrided", bs, bd);
        if (bs.DType == DType.Float32) ReduceCpu.CopyStrided(bs.Float32Array, srcOffset, srcStrides, bd.Float32Array, dstOffset, dstStrides, shape);
        else ReduceCpu.CopyStrided(bs.Float64Array, srcOffset, srcStrides, bd.Float64Array, dstOffset, dstStrides, shape);
    }

    /// <inheritdoc />
    public void FillRandom(DeviceBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset)
    {
        var b = Own(dst, "FillRandom");
        if (b.DType == DType.Float32) PhiloxCpu.Fill(b.Float32Array, b.Length, distribution, seed, blockOffset);
        else PhiloxCpu.Fill(b.Float64Array, b.Length, distribution, seed, blockOffset);
    }

    /// <inheritdoc />
    public void Axpby(DeviceBuffer x, DeviceBuffer y, long count, double alpha, double beta)
    {
        var (bx, by) = Pair("Axpby", x, y, count);
        if (bx.DType == DType.Float32) OptimCpu.Axpby(bx.Float32Array, by.Float32Array, count, (float)alpha, (float)beta);
        else OptimCpu.Axpby(bx.Float64Array, by.Float64Array, count, alpha, beta);
    }

    /// <inheritdoc />
    public void AdamUpdate(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long count, AdamStep step)
    {
        var (bp, bg) = Pair("AdamUpdate", param, grad, count);
        var (bm, bv) = Pair("AdamUpdate", m, v, count);
        SameType("AdamUpdate", bp, bm);
        if (bp.DType == DType.Float32) OptimCpu.Adam(bp.Float32Array, bg.Float32Array, bm.Float32Array, bv.Float32Array, count, step);
        else OptimCpu.Adam(bp.Float64Array, bg.Float64Array, bm.Float64Array, bv.Float64Array, count, step);
    }

    /// <summary>Drops idle pooled arrays.</summary>
    public void Trim()
    {
        Float32Pool.Trim();
        Float64Pool.Trim();
    }

    /// <inheritdoc />
    public void Dispose() => Trim();

    internal CpuBuffer Own(DeviceBuffer buffer, string kernel)
    {
        if (buffer is not CpuBuffer cb || !ReferenceEquals(buffer.Backend, this))
            throw new KernelException(kernel, $"buffer belongs to backend '{buffer.Backend.Name}', not '{Name}'");
        if (cb.IsDisposed) throw new KernelException(kernel, "buffer was disposed");
        return cb;
    }

    private (CpuBuffer, CpuBuffer) Pair(string kernel, DeviceBuffer x, DeviceBuffer y, long count)
    {
        var bx = Own(x, kernel); var by = Own(y, kernel);
        SameType(kernel, bx, by);
        if (count > bx.Length || count > by.Length)
            throw new KernelException(kernel, $"count {count} exceeds buffer lengths {bx.Length} and {by.Length}");
        return (bx, by);
    }

    private static void SameType(string kernel, params DeviceBuffer[] buffers) => BufferChecks.SameType(kernel, buffers);

    private static void CheckRange(string kernel, DeviceBuffer b, long offset, long count) => BufferChecks.CheckRange(kernel, b, offset, count);
}
