using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Ilgpu;

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

    private static readonly Dictionary<int, Device> s_cuda = [];
    private static readonly Lazy<Device> s_ilgpuCpu = new(() => FromBackend(IlgpuBackend.CreateCpuEmulator()));

    /// <summary>
    /// CUDA device <paramref name="ordinal"/> through the ILGPU backend. Created on first use and kept for the
    /// process (its compiled kernels and pooled memory with it), so every call with one ordinal gives one device.
    /// Throws <see cref="KernelException"/> when there is no such device (see <see cref="CudaDeviceCount"/>).
    /// </summary>
    public static Device Cuda(int ordinal = 0)
    {
        lock (s_cuda)
        {
            if (!s_cuda.TryGetValue(ordinal, out var device)) s_cuda.Add(ordinal, device = FromBackend(IlgpuBackend.CreateCuda(ordinal)));
            return device;
        }
    }

    /// <summary>Number of CUDA devices present (0 without an NVIDIA driver or GPU).</summary>
    public static int CudaDeviceCount => IlgpuBackend.CudaDeviceCount;

    /// <summary>The fastest device present: CUDA device 0 when there is one, else <see cref="Cpu"/>.</summary>
    public static Device Best() => CudaDeviceCount > 0 ? Cuda(0) : Cpu;

    /// <summary>
    /// The ILGPU backend on ILGPU's CPU accelerator (an emulator of GPU threads, with kernel assertions on): runs
    /// every ILGPU kernel without a GPU, for parity tests at small sizes. Far slower than <see cref="Cpu"/>; one
    /// instance per process, so its kernels compile once.
    /// </summary>
    public static Device IlgpuCpu() => s_ilgpuCpu.Value;

    /// <summary>Wraps a backend (e.g. an ILGPU accelerator) as a device.</summary>
    public static Device FromBackend(IBackend backend) => new(backend.Name, backend);

    /// <summary>Display name, e.g. "cpu".</summary>
    public string Name { get; }

    /// <summary>The kernels that run on this device.</summary>
    public IBackend Backend { get; }

    /// <inheritdoc />
    public override string ToString() => Name;
}
