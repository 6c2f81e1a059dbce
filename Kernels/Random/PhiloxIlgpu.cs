using System.Numerics;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;

namespace DiffusionCore.Kernels.Random;

/// <summary>Conversion of a float32 draw to the element type, inside a kernel (generic math's CreateTruncating does not compile under ILGPU).</summary>
public interface IFromSingle<T> where T : unmanaged
{
    /// <summary><paramref name="x"/> as a <typeparamref name="T"/>.</summary>
    T From(float x);
}

/// <summary>float to float.</summary>
public struct SingleFromSingle : IFromSingle<float>
{
    /// <inheritdoc />
    public readonly float From(float x) => x;
}

/// <summary>float to double (exact).</summary>
public struct DoubleFromSingle : IFromSingle<double>
{
    /// <inheritdoc />
    public readonly double From(float x) => x;
}

/// <summary>
/// Philox4x32-10 fills as an ILGPU kernel, one thread per stream block, calling the same
/// <see cref="Philox"/> functions as <see cref="PhiloxCpu"/>: element e is lane e % 4 of block
/// <c>blockOffset + e / 4</c>, normals by Box-Muller on lanes (0, 1) and (2, 3). Uniform and Rademacher
/// draws are integer arithmetic and one exact scaling, so every device gives the CPU's bits; normals go
/// through log, sqrt, sin and cos, which a GPU evaluates with its own (few-ulp) approximations.
/// </summary>
public static class PhiloxIlgpu
{
    /// <summary>
    /// Thread <paramref name="block"/> writes elements [4 block, 4 block + 4) of <paramref name="dst"/> (those below
    /// <paramref name="count"/>); <paramref name="distribution"/> is a <see cref="RandomDistribution"/> as an int.
    /// </summary>
    [IlgpuKernel]
    public static void Fill<T, TConvert>(Index1D block, ArrayView<T> dst, long count, ulong seed, ulong blockOffset, int distribution)
        where T : unmanaged, IFloatingPointIeee754<T> where TConvert : struct, IFromSingle<T>
    {
        var (x0, x1, x2, x3) = Philox.StreamBlock(seed, blockOffset + (ulong)(int)block);
        float l0, l1, l2, l3;
        if (distribution == (int)RandomDistribution.Uniform)
        {
            l0 = Philox.ToUniform(x0);
            l1 = Philox.ToUniform(x1);
            l2 = Philox.ToUniform(x2);
            l3 = Philox.ToUniform(x3);
        }
        else if (distribution == (int)RandomDistribution.Normal)
        {
            (l0, l1) = Philox.BoxMuller(x0, x1);
            (l2, l3) = Philox.BoxMuller(x2, x3);
        }
        else
        {
            l0 = (x0 & 1) == 0 ? 1f : -1f;
            l1 = (x1 & 1) == 0 ? 1f : -1f;
            l2 = (x2 & 1) == 0 ? 1f : -1f;
            l3 = (x3 & 1) == 0 ? 1f : -1f;
        }
        var convert = default(TConvert);
        long e = (long)(int)block * 4;
        dst[e] = convert.From(l0);
        if (e + 1 < count) dst[e + 1] = convert.From(l1);
        if (e + 2 < count) dst[e + 2] = convert.From(l2);
        if (e + 3 < count) dst[e + 3] = convert.From(l3);
    }
}
