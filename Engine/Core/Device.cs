using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Engine;

/// <summary>Where a tensor's storage lives: a backend instance and a display name.</summary>
public sealed class Device
{
    private Device(string name, IBackend backend)
    {
        Name = name;
        Backend = backend;
    }

    /// <summary>The managed CPU backend.</summary>
    public static Device Cpu { get; } = new("cpu", CpuBackend.Instance);

    /// <summary>The device new tensors are created on when none is named.</summary>
    public static Device Default { get; set; } = Cpu;

    /// <summary>Wraps a backend (e.g. an ILGPU accelerator) as a device.</summary>
    public static Device FromBackend(IBackend backend) => new(backend.Name, backend);

    /// <summary>Display name, e.g. "cpu".</summary>
    public string Name { get; }

    /// <summary>The kernels that run on this device.</summary>
    public IBackend Backend { get; }

    /// <inheritdoc />
    public override string ToString() => Name;
}
