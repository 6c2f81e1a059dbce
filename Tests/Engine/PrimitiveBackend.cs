using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// A backend with only the primitive core: every <see cref="IBackend"/> member delegates to CpuBackend, and
/// <see cref="GetCapability{T}"/> finds nothing, so the Engine computes every fused op (convolution, GroupNorm,
/// attention, resampling, softmax, optimizer updates) from primitives. The buffers are CpuBackend's, so results are
/// directly comparable with the fused CPU kernels.
/// </summary>
internal sealed class PrimitiveBackend : IBackend
{
    private static readonly CpuBackend Cpu = CpuBackend.Instance;

    private PrimitiveBackend()
    {
    }

    /// <summary>The process-wide primitive-only device.</summary>
    public static Device Device { get; } = Device.FromBackend(new PrimitiveBackend());

    /// <summary>Makes <see cref="Device"/> the default device until the handle is disposed (tests run one at a time).</summary>
    public static IDisposable AsDefault()
    {
        var saved = Device.Default;
        Device.Default = Device;
        return new Restore(() => Device.Default = saved);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    public string Name => "primitives";

    public DeviceBuffer Allocate(long length, DType dtype, bool zero = true) => Cpu.Allocate(length, dtype, zero);

    public void Upload<T>(DeviceBuffer dst, ReadOnlySpan<T> src, long offset = 0) where T : unmanaged => Cpu.Upload(dst, src, offset);

    public void Download<T>(DeviceBuffer src, Span<T> dst, long offset = 0) where T : unmanaged => Cpu.Download(src, dst, offset);

    public void Fill(DeviceBuffer dst, double value) => Cpu.Fill(dst, value);

    public void FillRandom(DeviceBuffer dst, RandomDistribution distribution, ulong seed, ulong blockOffset) => Cpu.FillRandom(dst, distribution, seed, blockOffset);

    public void Unary(UnaryOp op, DeviceBuffer x, DeviceBuffer y, long count) => Cpu.Unary(op, x, y, count);

    public void Affine(DeviceBuffer x, DeviceBuffer y, long count, double scale, double shift) => Cpu.Affine(x, y, count, scale, shift);

    public void PowScalar(DeviceBuffer x, DeviceBuffer y, long count, double exponent) => Cpu.PowScalar(x, y, count, exponent);

    public void Clamp(DeviceBuffer x, DeviceBuffer y, long count, double lo, double hi) => Cpu.Clamp(x, y, count, lo, hi);

    public void Binary(BinaryOp op, DeviceBuffer a, ReadOnlySpan<long> aStrides, DeviceBuffer b, ReadOnlySpan<long> bStrides, DeviceBuffer y, ReadOnlySpan<int> shape)
        => Cpu.Binary(op, a, aStrides, b, bStrides, y, shape);

    public void Where(DeviceBuffer cond, DeviceBuffer a, DeviceBuffer b, DeviceBuffer y, long count) => Cpu.Where(cond, a, b, y, count);

    public void Reduce(ReduceOp op, DeviceBuffer x, DeviceBuffer y, int outer, int reduce, int inner) => Cpu.Reduce(op, x, y, outer, reduce, inner);

    public void Gemm(bool transA, bool transB, int batch, int m, int n, int k, double alpha, DeviceBuffer a, long aOffset, long aBatchStride,
        DeviceBuffer b, long bOffset, long bBatchStride, double beta, DeviceBuffer c, long cOffset, long cBatchStride)
        => Cpu.Gemm(transA, transB, batch, m, n, k, alpha, a, aOffset, aBatchStride, b, bOffset, bBatchStride, beta, c, cOffset, cBatchStride);

    public void CopyStrided(DeviceBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides, DeviceBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape)
        => Cpu.CopyStrided(src, srcOffset, srcStrides, dst, dstOffset, dstStrides, shape);

    public T? GetCapability<T>() where T : class => null;

    public void Dispose()
    {
    }
}
