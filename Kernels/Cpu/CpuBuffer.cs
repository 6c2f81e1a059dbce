namespace DiffusionCore.Kernels.Cpu;

/// <summary>A CpuBackend buffer: a pooled managed array of float or double.</summary>
public sealed class CpuBuffer : DeviceBuffer
{
    private readonly CpuBackend _owner;
    private readonly float[]? _f32;
    private readonly double[]? _f64;

    internal CpuBuffer(CpuBackend owner, long length, float[] data) : base(owner, length, DType.Float32)
    {
        _owner = owner;
        _f32 = data;
    }

    internal CpuBuffer(CpuBackend owner, long length, double[] data) : base(owner, length, DType.Float64)
    {
        _owner = owner;
        _f64 = data;
    }

    /// <summary>The elements as a span of <typeparamref name="T"/> (float or double, matching the dtype).</summary>
    public Span<T> Span<T>() where T : unmanaged
    {
        ThrowIfDisposed();
        if (typeof(T) == typeof(float) && _f32 is not null) return System.Runtime.InteropServices.MemoryMarshal.Cast<float, T>(_f32.AsSpan(0, (int)Length));
        if (typeof(T) == typeof(double) && _f64 is not null) return System.Runtime.InteropServices.MemoryMarshal.Cast<double, T>(_f64.AsSpan(0, (int)Length));
        throw new KernelException("CpuBuffer", $"buffer holds {DType} but was read as {typeof(T).Name}");
    }

    /// <summary>The float32 array behind the buffer (may be longer than <see cref="DeviceBuffer.Length"/>).</summary>
    public float[] Float32Array { get { ThrowIfDisposed(); return _f32 ?? throw new KernelException("CpuBuffer", $"buffer holds {DType}, not Float32"); } }

    /// <summary>The float64 array behind the buffer (may be longer than <see cref="DeviceBuffer.Length"/>).</summary>
    public double[] Float64Array { get { ThrowIfDisposed(); return _f64 ?? throw new KernelException("CpuBuffer", $"buffer holds {DType}, not Float64"); } }

    /// <inheritdoc />
    protected override void Release()
    {
        if (_f32 is not null) _owner.Float32Pool.Return(_f32);
        if (_f64 is not null) _owner.Float64Pool.Return(_f64);
    }
}
