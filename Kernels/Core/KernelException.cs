namespace DiffusionCore.Kernels;

/// <summary>
/// Raised when a kernel is called with arguments it cannot work on (bad shapes, mismatched dtypes,
/// a buffer of another backend). The message names the kernel and the offending values.
/// </summary>
public sealed class KernelException : Exception
{
    /// <summary>Creates the exception for kernel <paramref name="kernel"/>.</summary>
    public KernelException(string kernel, string message) : base($"{kernel}: {message}") => Kernel = kernel;

    /// <summary>The kernel that refused its arguments.</summary>
    public string Kernel { get; }
}
