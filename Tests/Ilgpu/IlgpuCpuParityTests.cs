using NUnit.Framework;
using DiffusionCore.Kernels;

namespace DiffusionCore.Tests.Ilgpu;

/// <summary>
/// The parity suite on ILGPU's CPU accelerator (configured as an NVIDIA-like device, with kernel assertions on):
/// runs on every CI machine, no GPU needed. The accelerators are shared process-wide (<see cref="IlgpuTestDevices"/>),
/// so each kernel compiles once per test run.
/// </summary>
[TestFixture]
public sealed class IlgpuCpuParityTests : BackendParityTests
{
    /// <inheritdoc />
    protected override IBackend CreateDevice() => IlgpuTestDevices.Small;

    /// <inheritdoc />
    protected override IBackend CreateTiledDevice() => IlgpuTestDevices.Full;

    /// <summary>Reports how many kernels the suite compiled and how long ILGPU took (the cost every test run pays once).</summary>
    [OneTimeTearDown]
    public void ReportCompileTime()
    {
        foreach (var backend in new[] { IlgpuTestDevices.Small, IlgpuTestDevices.Full })
        {
            var kernels = backend.Kernels;
            TestContext.Progress.WriteLine($"ILGPU CPU accelerator ({backend.Accelerator.MaxNumThreadsPerGroup}-thread groups): {kernels.Count} kernels compiled in {kernels.TotalCompileTime.TotalSeconds:F1} s; slowest: " +
                string.Join(", ", kernels.Records.OrderByDescending(r => r.Elapsed).Take(3).Select(r => $"{r.Kernel} {r.Elapsed.TotalMilliseconds:F0} ms")));
        }
    }

    // The CPU accelerator runs the kernel's MathF.Log/Sqrt/Sin/Cos calls as .NET code, the very functions PhiloxCpu calls.
    /// <inheritdoc />
    protected override double NormalTolerance => 0;
}
