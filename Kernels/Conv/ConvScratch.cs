using System.Runtime.CompilerServices;

namespace DiffusionCore.Kernels.Conv;

/// <summary>The per-thread scratch buffers of the convolution kernels, one per slot.</summary>
internal enum ConvScratchSlot
{
    /// <summary>Weights repacked for the micro-kernels (filled by the calling thread, read by all).</summary>
    Weights,

    /// <summary>Tables of tap offsets and pixel offsets (filled by the calling thread, read by all).</summary>
    Tables,

    /// <summary>Input grids shared by all threads of a call (the calling thread's).</summary>
    SharedGrid,

    /// <summary>A worker's own input grid.</summary>
    Grid,

    /// <summary>A worker's output tile buffer or transposed output gradient.</summary>
    Output,

    /// <summary>A worker's accumulators.</summary>
    Accumulators,

    /// <summary>Transformed operands (Winograd).</summary>
    Transform,

    /// <summary>Phase planes of the outputs of all images, shared by all threads of a call (the calling thread's).</summary>
    SharedPhases,

    /// <summary>A worker's phase planes of one output image.</summary>
    Phases,
}

/// <summary>
/// Per-thread scratch: one pinned float array per <see cref="ConvScratchSlot"/> that only grows, so steady-state
/// calls allocate nothing and a pointer into it stays valid while other threads read it.
/// </summary>
internal static unsafe class ConvScratch
{
    private static readonly int Slots = Enum.GetValues<ConvScratchSlot>().Length;

    [ThreadStatic] private static float[]?[]? t_buffers;

    /// <summary>
    /// This thread's buffer <paramref name="slot"/>, at least <paramref name="floats"/> floats (64-byte aligned);
    /// its contents are whatever the last user left.
    /// </summary>
    public static float* Get(ConvScratchSlot slot, long floats)
    {
        var buffers = t_buffers ??= new float[]?[Slots];
        var buffer = buffers[(int)slot];
        long needed = floats + 16; // room to align the start to 64 bytes
        if (buffer == null || buffer.Length < needed)
        {
            if (needed > Array.MaxLength) throw new KernelException("Conv2d", $"scratch of {floats} floats exceeds the largest managed array ({Array.MaxLength})");
            buffer = GC.AllocateUninitializedArray<float>((int)needed, pinned: true);
            buffers[(int)slot] = buffer;
        }
        var p = (float*)Unsafe.AsPointer(ref buffer[0]);
        return (float*)(((nuint)p + 63) & ~(nuint)63);
    }
}
