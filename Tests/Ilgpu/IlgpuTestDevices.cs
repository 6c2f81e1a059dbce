using DiffusionCore.Kernels.Ilgpu;

namespace DiffusionCore.Tests.Ilgpu;

/// <summary>
/// The ILGPU CPU-accelerator backends of the test run, created once so that each kernel compiles once per run.
/// <see cref="DiffusionCore.Engine.Device.IlgpuCpu"/> (groups of up to 256 threads) runs the tiled kernels (GEMM, image ops); every launch on it
/// pays for 256 emulated threads, so the other kernels are tested on <see cref="Small"/> (32-thread groups, the
/// reduction kernels' group size on a CPU accelerator), where a launch costs a few milliseconds.
/// </summary>
internal static class IlgpuTestDevices
{
    private static readonly Lazy<IlgpuBackend> s_small = new(() => IlgpuBackend.CreateCpuEmulator(maxThreadsPerGroup: 32));

    /// <summary>ILGPU's CPU accelerator with one warp per group: every kernel but GEMM.</summary>
    public static IlgpuBackend Small => s_small.Value;

    /// <summary>ILGPU's CPU accelerator with 256-thread groups (the process-wide <see cref="DiffusionCore.Engine.Device.IlgpuCpu"/>).</summary>
    public static IlgpuBackend Full => (IlgpuBackend)DiffusionCore.Engine.Device.IlgpuCpu().Backend;
}
