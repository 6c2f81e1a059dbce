namespace DiffusionCore.Kernels;

/// <summary>
/// A flat run of elements owned by one backend. Disposing it hands the memory back to the
/// backend's pool; using it afterwards throws.
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    /// <summary>Creates a buffer record.</summary>
    protected DeviceBuffer(IBackend backend, long length, DType dtype)
    {
        Backend = backend;
        Length = length;
        DType = dtype;
    }

    /// <summary>The backend that owns the memory.</summary>
    public IBackend Backend { get; }

    /// <summary>Number of elements.</summary>
    public long Length { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>True once the buffer has been handed back.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Hands the memory back to the backend.</summary>
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }

    /// <summary>Returns the memory to the owning backend's pool.</summary>
    protected abstract void Release();

    /// <summary>Throws when the buffer was already handed back.</summary>
    protected void ThrowIfDisposed()
    {
        if (IsDisposed) throw new ObjectDisposedException(nameof(DeviceBuffer), "the buffer was disposed (its tensor was freed by a scope or by Dispose)");
    }
}
