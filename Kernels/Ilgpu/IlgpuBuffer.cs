using ILGPU;
using ILGPU.Runtime;

namespace DiffusionCore.Kernels.Ilgpu;

/// <summary>
/// An <see cref="IlgpuBackend"/> buffer: a block of device memory from the backend's
/// <see cref="Memory.IlgpuMemoryPool"/>, viewed as float or double. Disposing it returns the block to the pool.
/// </summary>
public sealed class IlgpuBuffer : DeviceBuffer
{
    private readonly IlgpuBackend _owner;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _block;

    internal IlgpuBuffer(IlgpuBackend owner, long length, DType dtype, MemoryBuffer1D<byte, Stride1D.Dense> block)
        : base(owner, length, dtype)
    {
        _owner = owner;
        _block = block;
    }

    /// <summary>
    /// The buffer's <see cref="DeviceBuffer.Length"/> elements as a device view of <typeparamref name="T"/>
    /// (float for Float32, double for Float64), for launching kernels on it.
    /// </summary>
    public ArrayView<T> View<T>() where T : unmanaged
    {
        ThrowIfDisposed();
        bool matches = typeof(T) == typeof(float) ? DType == DType.Float32 : typeof(T) == typeof(double) && DType == DType.Float64;
        if (!matches)
            throw new KernelException("IlgpuBuffer", $"buffer holds {DType} but was viewed as {typeof(T).Name}");
        return _block.View.AsContiguous().Cast<T>().SubView(0, Length);
    }

    /// <inheritdoc />
    protected override void Release() => _owner.Pool.Return(_block);
}
