using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Tests.Ilgpu;

namespace DiffusionCore.GpuBench;

/// <summary>
/// The backend-parity suite of Tests/Ilgpu on CUDA device 0: every IlgpuBackend primitive against CpuBackend, with
/// the same tolerance table. Run by <c>DiffusionCore.GpuBench parity</c> (NUnit's own runner, no SDK needed on the
/// GPU machine).
/// </summary>
[TestFixture]
public sealed class CudaParityTests : BackendParityTests
{
    /// <inheritdoc />
    protected override IBackend CreateDevice() => Device.Cuda(0).Backend;

    /// <summary>
    /// Box-Muller normals on a GPU: its log, sqrt, sin and cos are approximations with absolute error bounds of
    /// about 2^-22 (log2) and 2^-21 (sin, cos) in PTX's .approx forms. The radius sqrt(-2 ln u) amplifies an absolute
    /// error e in ln u to about e / r where r is small (u near 1; r is at least 3.5e-4 for the 24-bit uniforms), so the
    /// tolerance is 4096 u (|y| + 1), about 2.4e-4 absolute: loose enough for that tail, still far below the
    /// spread of the distribution, so a wrong lane, block or transform fails.
    /// </summary>
    protected override double NormalTolerance => 4096;
}
