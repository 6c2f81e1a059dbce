using System.Runtime.CompilerServices;

namespace DiffusionCore.Kernels.Cpu;

/// <summary>
/// The checked mode of the pointer kernels: with the environment variable <c>DIFFUSIONCORE_CHECKED=1</c> set when the
/// process starts, every pointer kernel validates each range it loads from or stores to against the buffer it was
/// given, and throws a <see cref="KernelException"/> naming the kernel, the buffer and the range instead of touching
/// memory outside it. Off by default: <see cref="Enabled"/> is a static readonly field, so the JIT removes the checks
/// from the optimised code entirely.
/// </summary>
public static class PointerChecks
{
    /// <summary>The environment variable that turns the checked mode on (value <c>1</c>).</summary>
    public const string EnvironmentVariable = "DIFFUSIONCORE_CHECKED";

    /// <summary>True when the checked mode is on for this process.</summary>
    public static readonly bool Enabled = Environment.GetEnvironmentVariable(EnvironmentVariable) == "1";
}

/// <summary>
/// The extent of one buffer a pointer kernel works in: its first element and its length. A kernel makes one from each
/// span it pins and calls <see cref="Check"/> (or <see cref="CheckRows"/>) before each block of loads or stores; the
/// calls cost nothing unless <see cref="PointerChecks.Enabled"/>.
/// </summary>
/// <typeparam name="T">Element type.</typeparam>
public readonly unsafe struct PointerRange<T> where T : unmanaged
{
    private readonly T* _start;
    private readonly long _length;
    private readonly string _name;

    /// <summary>A range of <paramref name="length"/> elements at <paramref name="start"/>, called <paramref name="name"/> in errors.</summary>
    public PointerRange(T* start, long length, string name)
    {
        _start = start;
        _length = length;
        _name = name;
    }

    /// <summary>Throws unless the <paramref name="count"/> elements at <paramref name="p"/> lie inside the range (checked mode only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Check(string kernel, T* p, long count)
    {
        if (!PointerChecks.Enabled || count <= 0) return;
        long offset = p - _start;
        if (offset < 0 || offset + count > _length) Fail(kernel, offset, count, 1, 0);
    }

    /// <summary>
    /// Throws unless <paramref name="rows"/> runs of <paramref name="cols"/> elements, <paramref name="stride"/> apart,
    /// starting at <paramref name="p"/>, lie inside the range (checked mode only).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void CheckRows(string kernel, T* p, long rows, long cols, long stride)
    {
        if (!PointerChecks.Enabled || rows <= 0 || cols <= 0) return;
        long offset = p - _start;
        long last = offset + (rows - 1) * stride;
        if (Math.Min(offset, last) < 0 || Math.Max(offset, last) + cols > _length) Fail(kernel, offset, cols, rows, stride);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Fail(string kernel, long offset, long count, long rows, long stride)
    {
        string what = rows == 1 ? $"[{offset}, {offset + count})" : $"{rows} rows of {count} elements, {stride} apart, from element {offset}";
        throw new KernelException(kernel, $"checked mode: {what} lies outside {_name} of {_length} elements");
    }
}
