namespace DiffusionCore.Kernels;

/// <summary>Element type of a buffer. Float64 exists on the CPU backend for gradient checks.</summary>
public enum DType
{
    /// <summary>32-bit IEEE float, the working type of every model.</summary>
    Float32,
    /// <summary>64-bit IEEE float, used by gradient checks.</summary>
    Float64,
}

/// <summary>Helpers on <see cref="DType"/>.</summary>
public static class DTypeExtensions
{
    /// <summary>Size of one element in bytes.</summary>
    public static int SizeInBytes(this DType dtype) => dtype == DType.Float32 ? 4 : 8;
}
