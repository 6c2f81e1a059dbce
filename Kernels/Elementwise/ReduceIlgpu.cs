using System.Numerics;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;

namespace DiffusionCore.Kernels.Elementwise;

/// <summary>
/// Reductions, softmax rows and per-sample dot products as ILGPU kernels. The group kernels give each output
/// (or each part of one) a thread group: the threads stride over the reduced range, then combine their partial
/// results through shared memory in a tree (log2 of the group size steps, one barrier each). Summation order
/// therefore differs from the CPU backend's, which is why sums are compared with a tolerance.
/// </summary>
public static class ReduceIlgpu
{
    /// <summary>Largest thread group the group kernels are launched with (the size of their shared scratch); launches use a power of two up to it.</summary>
    public const int MaxGroupSize = 256;

    /// <summary>
    /// Group kernel: for g = Grid.IdxX, output o = g / splits reduces part (g % splits) of its range, the
    /// <paramref name="chunk"/> indices r in [part * chunk, (part + 1) * chunk), over x viewed as [outer, reduce, inner]:
    /// y[g] = op_r x[o / inner, r, o % inner]. With splits = 1 this is the whole reduction; with more, y holds
    /// [outputs, splits] partial results that a second launch reduces (two passes keep a large single reduction on many groups).
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    public static void ReduceRows<T, TOp>(ArrayView<T> x, ArrayView<T> y, int reduce, int inner, int splits, int chunk)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IReduceOp<T>
    {
        var shared = SharedMemory.Allocate<T>(MaxGroupSize);
        var op = default(TOp);
        int g = Grid.IdxX;
        int output = g / splits, part = g % splits;
        long start = (long)(output / inner) * reduce * inner + output % inner;
        int r0 = part * chunk;
        int r1 = reduce - r0 < chunk ? reduce : r0 + chunk;
        T acc = op.Identity;
        for (int r = r0 + Group.IdxX; r < r1; r += Group.DimX)
            acc = op.Combine(acc, x[start + (long)r * inner]);
        acc = GroupReduce<T, TOp>(acc, shared);
        if (Group.IdxX == 0) y[g] = acc;
    }

    /// <summary>
    /// One thread per output: y[i] = op_r x[i / inner, r, i % inner]. Neighbouring threads read neighbouring
    /// elements (coalesced), so this wins over <see cref="ReduceRows{T, TOp}"/> when there are many outputs along a contiguous inner axis.
    /// </summary>
    [IlgpuKernel]
    public static void ReduceColumns<T, TOp>(Index1D i, ArrayView<T> x, ArrayView<T> y, int reduce, int inner)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IReduceOp<T>
    {
        var op = default(TOp);
        int output = i;
        long start = (long)(output / inner) * reduce * inner + output % inner;
        T acc = op.Identity;
        for (int r = 0; r < reduce; r++) acc = op.Combine(acc, x[start + (long)r * inner]);
        y[i] = acc;
    }

    /// <summary>
    /// Group kernel, one group per row of x[rows, cols]: softmax (or log-softmax when <paramref name="log"/> != 0)
    /// with the row maximum subtracted first (a row whose maximum is -inf uses 0, as the CPU backend does).
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    public static void Softmax<T>(ArrayView<T> x, ArrayView<T> y, int cols, int log)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var shared = SharedMemory.Allocate<T>(MaxGroupSize);
        long row = (long)Grid.IdxX * cols;
        var maxOp = default(MaxOp<T>);
        T max = maxOp.Identity;
        for (int j = Group.IdxX; j < cols; j += Group.DimX) max = maxOp.Combine(max, x[row + j]);
        max = GroupReduce<T, MaxOp<T>>(max, shared);
        if (T.IsNegativeInfinity(max)) max = T.Zero;
        T sum = T.Zero;
        for (int j = Group.IdxX; j < cols; j += Group.DimX) sum += T.Exp(x[row + j] - max);
        sum = GroupReduce<T, SumOp<T>>(sum, shared);
        if (log != 0)
        {
            T logSum = T.Log(sum);
            for (int j = Group.IdxX; j < cols; j += Group.DimX) y[row + j] = x[row + j] - max - logSum;
        }
        else
        {
            for (int j = Group.IdxX; j < cols; j += Group.DimX) y[row + j] = T.Exp(x[row + j] - max) / sum;
        }
    }

    /// <summary>
    /// Tree reduction of one value per thread over the group (Group.DimX must be a power of two), through
    /// <paramref name="shared"/>; every thread gets the result. Ends with a barrier so the scratch can be reused.
    /// </summary>
    private static T GroupReduce<T, TOp>(T value, ArrayView<T> shared)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IReduceOp<T>
    {
        var op = default(TOp);
        int t = Group.IdxX;
        shared[t] = value;
        Group.Barrier();
        for (int s = Group.DimX / 2; s > 0; s /= 2)
        {
            if (t < s) shared[t] = op.Combine(shared[t], shared[t + s]);
            Group.Barrier();
        }
        T result = shared[0];
        Group.Barrier();
        return result;
    }
}
