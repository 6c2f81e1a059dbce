using ILGPU;
using ILGPU.Runtime;

namespace DiffusionCore.Kernels.Ilgpu;

/// <summary>
/// Building blocks shared by the ILGPU image kernels (Conv2dIlgpu, AttentionIlgpu, GroupNormIlgpu): the 64 x 64
/// register-blocked tile product over shared memory, warp and group sums, and checks on the accelerator.
/// <para>
/// A tile kernel runs <see cref="GroupSize"/> = 16 x 16 threads; thread (tx, ty) = (t % 16, t / 16) owns the 4 x 4
/// outputs at rows ty + 16 i and columns tx + 16 j (i, j &lt; 4) of a <see cref="Tile"/> x <see cref="Tile"/> block.
/// Striding the rows and columns by 16 (rather than giving a thread 4 adjacent ones) makes the shared-memory
/// reads of one warp either broadcasts (its two ty values) or 16 consecutive words (its 16 tx values), so the
/// inner loop has no bank conflicts, and the final stores of a warp are 16 consecutive columns.
/// </para>
/// </summary>
internal static class ImageTilesIlgpu
{
    /// <summary>Rows and columns of the output block of one group.</summary>
    public const int Tile = 64;

    /// <summary>Threads along each side of the 16 x 16 group.</summary>
    public const int ThreadsPerSide = 16;

    /// <summary>Threads per group.</summary>
    public const int GroupSize = ThreadsPerSide * ThreadsPerSide;

    /// <summary>Depth of one shared-memory stage of a tile product (the k-slice of A and B held at once).</summary>
    public const int SliceDepth = 16;

    /// <summary>
    /// Row stride of a shared slice [SliceDepth][Tile]: one word of padding, so that the column-wise stores of the
    /// loaders (consecutive threads walking the depth) fall into different banks.
    /// </summary>
    public const int SliceStride = Tile + 1;

    /// <summary>Floats of one shared slice.</summary>
    public const int SliceFloats = SliceDepth * SliceStride;

    /// <summary>
    /// acc += Aᵀ B over one stage: A and B are shared slices laid out [k][row] with stride
    /// <see cref="SliceStride"/>; the thread adds A[k, ty + 16 i] B[k, tx + 16 j] for every k &lt; SliceDepth.
    /// Unrolled by 4 by hand (ILGPU does not unroll loops), so that the address arithmetic folds into constant offsets.
    /// </summary>
    public static Block4x4 MultiplySlices(ArrayView<float> a, ArrayView<float> b, int tx, int ty, Block4x4 acc)
    {
        for (int k = 0; k < SliceDepth; k += 4)
        {
            int ao = k * SliceStride + ty, bo = k * SliceStride + tx;
            acc = OuterProductStep(a, ao, 16, b, bo, acc);
            acc = OuterProductStep(a, ao + SliceStride, 16, b, bo + SliceStride, acc);
            acc = OuterProductStep(a, ao + 2 * SliceStride, 16, b, bo + 2 * SliceStride, acc);
            acc = OuterProductStep(a, ao + 3 * SliceStride, 16, b, bo + 3 * SliceStride, acc);
        }
        return acc;
    }

    /// <summary>
    /// One depth step of a thread's 4 x 4 block: acc[i, j] += a[ao + i aStep] b[bo + 16 j] (8 shared loads, 16
    /// multiply-adds).
    /// </summary>
    public static Block4x4 OuterProductStep(ArrayView<float> a, int ao, int aStep, ArrayView<float> b, int bo, Block4x4 acc)
    {
        var bq = new Quad(b[bo], b[bo + 16], b[bo + 32], b[bo + 48]);
        acc.R0 = Quad.MulAdd(a[ao], bq, acc.R0);
        acc.R1 = Quad.MulAdd(a[ao + aStep], bq, acc.R1);
        acc.R2 = Quad.MulAdd(a[ao + 2 * aStep], bq, acc.R2);
        acc.R3 = Quad.MulAdd(a[ao + 3 * aStep], bq, acc.R3);
        return acc;
    }

    /// <summary>
    /// Sums of both values of <paramref name="value"/> over the whole group, returned to every thread: a butterfly of
    /// shuffles within each warp (<see cref="WarpSums"/>), then the warp totals added in warp order through
    /// <paramref name="shared"/> (at least 2 GroupSize / WarpSize floats). Two barriers; the same order on every run;
    /// <paramref name="shared"/> is free again when the call returns.
    /// </summary>
    public static Pair GroupSums(Pair value, ArrayView<float> shared)
    {
        int warps = Group.DimX / Warp.WarpSize;
        var warpTotal = WarpSums(value);
        if (Warp.LaneIdx == 0)
        {
            shared[Warp.WarpIdx] = warpTotal.First;
            shared[warps + Warp.WarpIdx] = warpTotal.Second;
        }
        Group.Barrier();
        float first = 0f, second = 0f;
        for (int w = 0; w < warps; w++)
        {
            first += shared[w];
            second += shared[warps + w];
        }
        Group.Barrier();
        return new Pair(first, second);
    }

    /// <summary>
    /// Sums of both values over the warp, in every lane: a butterfly over lane masks WarpSize/2 .. 1 (one shuffle moves
    /// both values), where each lane adds the same two partial sums as its partner, in the other order, which float
    /// addition ignores: all lanes end with the same bits.
    /// </summary>
    public static Pair WarpSums(Pair value)
    {
        for (int mask = Warp.WarpSize / 2; mask > 0; mask >>= 1)
        {
            var other = Warp.ShuffleXor(value, mask);
            value = new Pair(value.First + other.First, value.Second + other.Second);
        }
        return value;
    }

    /// <summary>ceil(a / b) for a &gt;= 0, b &gt; 0.</summary>
    public static int DivUp(int a, int b) => (a + b - 1) / b;

    /// <summary>
    /// Throws unless the accelerator runs <see cref="GroupSize"/>-thread groups with
    /// <paramref name="sharedBytes"/> bytes of shared memory, in warps of a multiple of 16 threads (the row
    /// reductions of attention shuffle within 16 lanes).
    /// </summary>
    public static void RequireTileSupport(Accelerator accelerator, string op, int sharedBytes)
    {
        if (accelerator.MaxNumThreadsPerGroup < GroupSize)
            throw new KernelException(op, $"needs {GroupSize} threads per group, {accelerator.Name} allows " +
                $"{accelerator.MaxNumThreadsPerGroup} (ILGPU's default CPU device allows 16: create it with CPUDeviceKind.Nvidia)");
        if (accelerator.MaxSharedMemoryPerGroup < sharedBytes)
            throw new KernelException(op, $"needs {sharedBytes} bytes of shared memory per group, {accelerator.Name} has {accelerator.MaxSharedMemoryPerGroup}");
        if (accelerator.WarpSize % ThreadsPerSide != 0)
            throw new KernelException(op, $"needs a warp size that is a multiple of {ThreadsPerSide}, {accelerator.Name} has {accelerator.WarpSize}");
    }

    /// <summary>Throws unless <paramref name="view"/> holds at least <paramref name="needed"/> elements.</summary>
    public static void RequireLength<T>(string op, string name, ArrayView<T> view, long needed, string shape) where T : unmanaged
    {
        if (view.Length < needed)
            throw new KernelException(op, $"{name} has {view.Length} elements, needs {needed} for {shape}");
    }
}

/// <summary>Four floats held in registers: one row (or column) of a thread's 4 x 4 block.</summary>
internal struct Quad(float x, float y, float z, float w)
{
    /// <summary>Element 0.</summary>
    public float X = x;

    /// <summary>Element 1.</summary>
    public float Y = y;

    /// <summary>Element 2.</summary>
    public float Z = z;

    /// <summary>Element 3.</summary>
    public float W = w;

    /// <summary>All four elements set to <paramref name="value"/>.</summary>
    public static Quad Broadcast(float value) => new(value, value, value, value);

    /// <summary>acc + a b, elementwise.</summary>
    public static Quad MulAdd(float a, Quad b, Quad acc) =>
        new(acc.X + a * b.X, acc.Y + a * b.Y, acc.Z + a * b.Z, acc.W + a * b.W);

    /// <summary>Element <paramref name="j"/> (0 to 3).</summary>
    public readonly float Get(int j) => j == 0 ? X : j == 1 ? Y : j == 2 ? Z : W;
}

/// <summary>A thread's 4 x 4 register block: row i is R<i>i</i>, element j of it column j.</summary>
internal struct Block4x4
{
    /// <summary>Row 0.</summary>
    public Quad R0;

    /// <summary>Row 1.</summary>
    public Quad R1;

    /// <summary>Row 2.</summary>
    public Quad R2;

    /// <summary>Row 3.</summary>
    public Quad R3;

    /// <summary>Row <paramref name="i"/> (0 to 3).</summary>
    public readonly Quad Row(int i) => i == 0 ? R0 : i == 1 ? R1 : i == 2 ? R2 : R3;

    /// <summary>Element (i, j).</summary>
    public readonly float Get(int i, int j) => Row(i).Get(j);
}

/// <summary>Two floats returned together.</summary>
internal readonly struct Pair(float first, float second)
{
    /// <summary>The first value.</summary>
    public float First { get; } = first;

    /// <summary>The second value.</summary>
    public float Second { get; } = second;
}

/// <summary>
/// A device buffer for the partial results of one launch (split-K partials, per-sample sums), grown on demand and
/// reused: no allocation per call in steady state. One owner (a kernel loader) and one stream at a time.
/// </summary>
internal sealed class ImageScratch(Accelerator accelerator) : IDisposable
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _buffer;

    /// <summary>A view of at least <paramref name="length"/> floats (contents undefined).</summary>
    public ArrayView<float> Get(AcceleratorStream stream, long length)
    {
        if (_buffer is null || _buffer.Length < length)
        {
            // Kernels still queued on the stream may read the old buffer: let them finish before freeing it.
            stream.Synchronize();
            _buffer?.Dispose();
            _buffer = accelerator.Allocate1D<float>(Math.Max(1, length));
        }
        return _buffer.View.AsContiguous().SubView(0, Math.Max(1, length));
    }

    /// <summary>Frees the buffer.</summary>
    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}
