namespace DiffusionCore.Kernels.Ilgpu;

/// <summary>How an ILGPU kernel is launched.</summary>
public enum KernelGrouping
{
    /// <summary>
    /// Implicitly grouped: the kernel's first parameter is its thread index (Index1D) and ILGPU picks the
    /// group size. No shared memory, no barriers.
    /// </summary>
    Implicit,

    /// <summary>
    /// Explicitly grouped: launched with a KernelConfig (grid and group sizes chosen by the caller); the kernel
    /// reads Grid/Group indices and may use shared memory and <c>Group.Barrier()</c>.
    /// </summary>
    Explicit,
}

/// <summary>
/// Marks a static method as an ILGPU kernel entry point. <see cref="IlgpuKernelRegistry"/> collects every
/// marked method (with each instantiation of its type parameters that its constraints allow), the backend
/// launches only registered kernels, and the PTX test compiles every registered kernel for sm_80 and sm_90:
/// a kernel cannot be added without being compiled for CUDA on CI.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class IlgpuKernelAttribute(KernelGrouping grouping = KernelGrouping.Implicit) : Attribute
{
    /// <summary>How the kernel is launched.</summary>
    public KernelGrouping Grouping { get; } = grouping;
}
