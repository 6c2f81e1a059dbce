using System.Numerics;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;

namespace DiffusionCore.Kernels.Elementwise;

/// <summary>
/// Elementwise ILGPU kernels: one generic kernel per arity, instantiated per op struct
/// (<see cref="IUnaryOp{T}"/>, <see cref="IBinaryOp{T}"/>, <see cref="ITernaryOp{T}"/>), one thread per element.
/// Outputs may alias inputs (each thread reads its element before writing it).
/// </summary>
public static class ElementwiseIlgpu
{
    /// <summary>y[i] = op(x[i]).</summary>
    [IlgpuKernel]
    public static void Map<T, TOp>(Index1D i, ArrayView<T> x, ArrayView<T> y, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IUnaryOp<T>
        => y[i] = op.Apply(x[i]);

    /// <summary>y[i] = op(a[i], b[i]) over contiguous operands of one length.</summary>
    [IlgpuKernel]
    public static void Zip<T, TOp>(Index1D i, ArrayView<T> a, ArrayView<T> b, ArrayView<T> y, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IBinaryOp<T>
        => y[i] = op.Apply(a[i], b[i]);

    /// <summary>y[i] = op(a[offsetA(i)], b[offsetB(i)]) with the offsets of <paramref name="layout"/> (broadcasting by 0 strides); y contiguous.</summary>
    [IlgpuKernel]
    public static void ZipStrided<T, TOp>(Index1D i, ArrayView<T> a, ArrayView<T> b, ArrayView<T> y, NdLayout layout, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IBinaryOp<T>
    {
        layout.Offsets(i, out long oa, out long ob);
        y[i] = op.Apply(a[oa], b[ob]);
    }

    /// <summary>y[i] = op(a[i], b[i], c[i]) over contiguous operands of one length.</summary>
    [IlgpuKernel]
    public static void Zip3<T, TOp>(Index1D i, ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, ArrayView<T> y, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, ITernaryOp<T>
        => y[i] = op.Apply(a[i], b[i], c[i]);

    /// <summary>dst[dstOffset + offsetB(i)] = src[srcOffset + offsetA(i)]: permute, slice, pad, concat and broadcast copies.</summary>
    [IlgpuKernel]
    public static void CopyStrided<T>(Index1D i, ArrayView<T> src, ArrayView<T> dst, NdLayout layout, long srcOffset, long dstOffset)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        layout.Offsets(i, out long os, out long od);
        dst[dstOffset + od] = src[srcOffset + os];
    }
}
