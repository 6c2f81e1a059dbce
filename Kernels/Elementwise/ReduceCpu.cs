using System.Numerics;
using System.Numerics.Tensors;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Elementwise;

/// <summary>Axis reductions, softmax rows and strided copies of the CPU backend.</summary>
public static class ReduceCpu
{
    /// <summary>y[o, i] = reduce_r x[o, r, i].</summary>
    public static void Reduce<T>(ReduceOp op, T[] x, T[] y, int outer, int reduce, int inner) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (outer == 0 || inner == 0) return;
        if (reduce == 0)
        {
            y.AsSpan(0, outer * inner).Fill(op == ReduceOp.Sum ? T.Zero : T.NegativeInfinity);
            return;
        }
        if (inner == 1)
        {
            CpuParallel.For(outer, Math.Max(1, (1 << 15) / reduce), (s, e) =>
            {
                for (long o = s; o < e; o++)
                {
                    var row = x.AsSpan((int)(o * reduce), reduce);
                    y[o] = op == ReduceOp.Sum ? TensorPrimitives.Sum<T>(row) : TensorPrimitives.Max<T>(row);
                }
            });
            return;
        }
        // Accumulate whole rows of length `inner`; split over outer, or over inner chunks when outer is small.
        long chunks = outer >= CpuParallel.Threads ? outer : (long)outer * Math.Max(1, Math.Min(CpuParallel.Threads, inner / 1024));
        long perOuter = chunks / outer;
        CpuParallel.For(chunks, 1, (s, e) =>
        {
            for (long c = s; c < e; c++)
            {
                long o = c / perOuter, part = c % perOuter;
                int i0 = (int)(inner * part / perOuter), i1 = (int)(inner * (part + 1) / perOuter);
                var acc = y.AsSpan((int)(o * inner) + i0, i1 - i0);
                x.AsSpan((int)(o * reduce * (long)inner) + i0, i1 - i0).CopyTo(acc);
                for (int r = 1; r < reduce; r++)
                {
                    var row = x.AsSpan((int)((o * reduce + r) * inner) + i0, i1 - i0);
                    if (op == ReduceOp.Sum) TensorPrimitives.Add(acc, row, acc);
                    else TensorPrimitives.Max(acc, row, acc);
                }
            }
        });
    }

    /// <summary>Softmax or log-softmax of each row of x[rows, cols], with the row maximum subtracted first.</summary>
    public static void Softmax<T>(T[] x, T[] y, int rows, int cols, bool log) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(rows, Math.Max(1, 8192 / Math.Max(1, cols)), (s, e) =>
        {
            for (long r = s; r < e; r++)
            {
                var xs = x.AsSpan((int)(r * cols), cols);
                var ys = y.AsSpan((int)(r * cols), cols);
                T max = TensorPrimitives.Max<T>(xs);
                if (T.IsNegativeInfinity(max)) max = T.Zero;
                TensorPrimitives.Subtract(xs, max, ys);
                if (log)
                {
                    T lse = T.Zero;
                    foreach (var v in ys) lse += T.Exp(v);
                    TensorPrimitives.Subtract(ys, T.Log(lse), ys);
                }
                else
                {
                    TensorPrimitives.Exp(ys, ys);
                    TensorPrimitives.Divide(ys, TensorPrimitives.Sum<T>(ys), ys);
                }
            }
        });

    /// <summary>dst[dstOffset + i.dstStrides] = src[srcOffset + i.srcStrides] for every index i of <paramref name="shape"/>.</summary>
    public static void CopyStrided<T>(T[] src, long srcOffset, ReadOnlySpan<long> srcStrides, T[] dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape)
        where T : unmanaged
    {
        var layout = StridedLayout.Coalesce(shape, srcStrides, dstStrides);
        if (layout.Count == 0) return;
        long inner = layout.Shape[^1];
        long si = layout.StridesA[^1], di = layout.StridesB[^1];
        long rows = layout.Count / inner;
        CpuParallel.For(rows, Math.Max(1, (1 << 15) / inner), (s, e) =>
        {
            for (long r = s; r < e; r++)
            {
                layout.Offsets(r, out long so, out long doff);
                so += srcOffset;
                doff += dstOffset;
                if (si == 1 && di == 1) src.AsSpan((int)so, (int)inner).CopyTo(dst.AsSpan((int)doff, (int)inner));
                else if (si == 0 && di == 1) dst.AsSpan((int)doff, (int)inner).Fill(src[so]);
                else for (long i = 0; i < inner; i++) dst[doff + i * di] = src[so + i * si];
            }
        });
    }
}
