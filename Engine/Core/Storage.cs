using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

/// <summary>
/// A reference-counted backend buffer shared by a tensor and its views (reshape, detach, alias).
/// The buffer goes back to the backend's pool when the last tensor using it is disposed.
/// </summary>
internal sealed class Storage
{
    private int _references = 1;

    public Storage(DeviceBuffer buffer) => Buffer = buffer;

    public DeviceBuffer Buffer { get; }

    public Storage AddReference()
    {
        Interlocked.Increment(ref _references);
        return this;
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0) Buffer.Dispose();
    }
}
