using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// Direct convolution on the CPU, no im2col: the input of each image is laid out once as a <see cref="ConvGrid"/>,
/// in which every tap is a fixed offset, and the <see cref="ConvMicroKernels"/> run straight over it.
/// <list type="bullet">
/// <item>Forward: y[co, q] = Σ_{ci, kh, kw} w[co, ci, kh, kw] G[tap(ci, kh, kw) + q], output channels
/// broadcast, output positions q in vectors (<see cref="ConvMicroKernels.Product{S, TV, TC, TV4}"/>).</item>
/// <item>Input gradient: for stride 1, the forward convolution of dy with the kernel flipped and its channel
/// axes swapped, padded by K - 1 - pad. For stride S, each of the S² phases (ih mod S, iw mod S) of dx is a
/// stride-1 convolution of dy with the sub-kernel of the taps kh ≡ ih + pad, kw ≡ iw + pad (mod S), flipped:
/// dx[ci, S a + rh, S b + rw] = Σ_{co, m, n} dy[co, a + eh - m, b + ew - n] w[co, ci, kh0 + S m, kw0 + S n]
/// with kh0 = (rh + pad) mod S, eh = (rh + pad - kh0) / S (and the same along the width).</item>
/// <item>Weight gradient: dw[co, tap] = Σ_n Σ_p dy[n, co, p] G_n[tap + pix(p)] over the valid output pixels p,
/// output channels in vectors, pixels broadcast (<see cref="ConvMicroKernels.Reduction{S, TV, TJ, TCV}"/>);
/// db = Σ_n Σ_p dy in the same pass. Each thread owns whole entries of dw and sums the images in order, so dw
/// and db do not depend on the thread count.</item>
/// </list>
/// Shapes are checked by the caller (<see cref="Conv2dCpu"/>); outputs must not overlap inputs.
/// </summary>
internal static unsafe class ConvDirectCpu
{
    /// <summary>y = conv2d(x, w) + bias (bias null for none).</summary>
    public static void Forward(Conv2dShape s, float* x, float* w, float* bias, float* y)
    {
        switch (ConvIsaChoice.Path)
        {
            case ConvIsa.Avx512: Forward<ConvSimd512, Vector512<float>>(s, x, w, bias, y); break;
            case ConvIsa.Avx2: Forward<ConvSimd256, Vector256<float>>(s, x, w, bias, y); break;
            default: Forward<ConvSimd128, Vector128<float>>(s, x, w, bias, y); break;
        }
    }

    /// <summary>dx = ∂L/∂x given dy (overwritten).</summary>
    public static void BackwardInput(Conv2dShape s, float* dy, float* w, float* dx)
    {
        switch (ConvIsaChoice.Path)
        {
            case ConvIsa.Avx512: BackwardInput<ConvSimd512, Vector512<float>>(s, dy, w, dx); break;
            case ConvIsa.Avx2: BackwardInput<ConvSimd256, Vector256<float>>(s, dy, w, dx); break;
            default: BackwardInput<ConvSimd128, Vector128<float>>(s, dy, w, dx); break;
        }
    }

    /// <summary>dw and db (db null to skip it), both overwritten.</summary>
    public static void BackwardWeight(Conv2dShape s, float* x, float* dy, float* dw, float* db)
    {
        switch (ConvIsaChoice.Path)
        {
            case ConvIsa.Avx512: BackwardWeight<ConvSimd512, Vector512<float>>(s, x, dy, dw, db); break;
            case ConvIsa.Avx2: BackwardWeight<ConvSimd256, Vector256<float>>(s, x, dy, dw, db); break;
            default: BackwardWeight<ConvSimd128, Vector128<float>>(s, x, dy, dw, db); break;
        }
    }

    /// <summary>The grid of the forward pass and of the weight gradient: x padded by pad, split by stride phase.</summary>
    private static ConvGrid InputGrid(in Conv2dShape s, int guard)
    {
        int st = s.Stride;
        return new ConvGrid(s.Cin, s.H, s.W, st, s.Pad, s.Pad, s.OutH + (s.KH - 1) / st, s.OutW + (s.KW - 1) / st, guard);
    }

    internal static void Forward<S, TV>(Conv2dShape s, float* x, float* w, float* bias, float* y)
        where S : IConvSimd<TV> where TV : struct
    {
        int outH = s.OutH, outW = s.OutW, L = S.Count;
        int wq = outW + (s.KW - 1) / s.Stride;
        int vectors = (outH * wq + L - 1) / L;
        // The last vectors run past the last plane by the rounding plus the widest tap shift.
        var grid = InputGrid(s, vectors * L - outH * wq + wq + L);
        int taps = s.Cin * s.KH * s.KW;
        var plan = new ProductPlan(s.N, s.Cout, grid, phases: 1, S.ProductRows, S.ProductVectors, L, taps, s.WeightLength);
        int* off = plan.AllocateOffsets(taps);
        int k = 0;
        for (int ci = 0; ci < s.Cin; ci++)
            for (int kh = 0; kh < s.KH; kh++)
                for (int kw = 0; kw < s.KW; kw++)
                    off[k++] = grid.TapOffset(ci, kh, kw);
        // Row co of the product is output channel co; its tap (ci, kh, kw) weight is w[co, ci, kh, kw].
        float* packed = plan.AllocateWeights(taps);
        for (int co0 = 0; co0 < s.Cout; co0 += plan.Rows)
        {
            int rows = Math.Min(plan.Rows, s.Cout - co0);
            float* dst = packed + (long)co0 * taps;
            for (int t = 0; t < taps; t++)
                for (int r = 0; r < rows; r++)
                    dst[t * rows + r] = w[(long)(co0 + r) * taps + t];
        }
        plan.Phases[0] = new ProductPhase(taps, off, packed, outH, outW, vectors, 0, outW, 1);
        plan.Run<S, TV>(x, (long)s.Cin * s.H * s.W, y, (long)s.Cout * outH * outW, outH * outW, bias);
    }

    internal static void BackwardInput<S, TV>(Conv2dShape s, float* dy, float* w, float* dx)
        where S : IConvSimd<TV> where TV : struct
    {
        int st = s.Stride, outH = s.OutH, outW = s.OutW, L = S.Count;
        var rowsOf = new Axis[st];
        var colsOf = new Axis[st];
        for (int r = 0; r < st; r++)
        {
            rowsOf[r] = new Axis(r, s.Pad, st, s.KH, s.H);
            colsOf[r] = new Axis(r, s.Pad, st, s.KW, s.W);
        }
        // One dy grid serves every phase: padded by the largest top (left) padding any phase needs; a phase
        // that needs less reads further down (right) by the difference.
        int padTop = int.MinValue, padLeft = int.MinValue;
        for (int r = 0; r < st; r++)
        {
            padTop = Math.Max(padTop, rowsOf[r].Pad);
            padLeft = Math.Max(padLeft, colsOf[r].Pad);
        }
        int hq = 1, wq = 1;
        for (int r = 0; r < st; r++)
        {
            hq = Math.Max(hq, rowsOf[r].Extent + rowsOf[r].Taps - 1 + padTop - rowsOf[r].Pad);
            wq = Math.Max(wq, colsOf[r].Extent + colsOf[r].Taps - 1 + padLeft - colsOf[r].Pad);
        }
        int maxVectors = 0;
        for (int r = 0; r < st; r++) maxVectors = Math.Max(maxVectors, (rowsOf[r].Extent * wq + L - 1) / L);
        var grid = new ConvGrid(s.Cout, outH, outW, 1, padTop, padLeft, hq, wq, maxVectors * L + wq + L);

        int kernelTaps = s.KH * s.KW;
        var plan = new ProductPlan(s.N, s.Cin, grid, st * st, S.ProductRows, S.ProductVectors, L, s.Cout * kernelTaps, s.WeightLength);
        for (int rh = 0; rh < st; rh++)
        {
            for (int rw = 0; rw < st; rw++)
            {
                Axis ah = rowsOf[rh], aw = colsOf[rw];
                int taps = s.Cout * ah.Taps * aw.Taps;
                int* off = plan.AllocateOffsets(taps);
                int shiftH = padTop - ah.Pad, shiftW = padLeft - aw.Pad, k = 0;
                for (int co = 0; co < s.Cout; co++)
                    for (int m = 0; m < ah.Taps; m++)
                        for (int n = 0; n < aw.Taps; n++)
                            off[k++] = co * grid.ChannelFloats + (m + shiftH) * wq + n + shiftW;
                // Row ci of the product is input channel ci; its tap (co, m, n) weight is
                // w[co, ci, kh0 + S (Mh - 1 - m), kw0 + S (Mw - 1 - n)] (the sub-kernel flipped).
                float* packed = plan.AllocateWeights(taps);
                for (int ci0 = 0; ci0 < s.Cin; ci0 += plan.Rows)
                {
                    int rows = Math.Min(plan.Rows, s.Cin - ci0);
                    float* dst = packed + (long)ci0 * taps;
                    int t = 0;
                    for (int co = 0; co < s.Cout; co++)
                        for (int m = 0; m < ah.Taps; m++)
                            for (int n = 0; n < aw.Taps; n++, t++)
                            {
                                int kh = ah.First + st * (ah.Taps - 1 - m), kw = aw.First + st * (aw.Taps - 1 - n);
                                for (int r = 0; r < rows; r++)
                                    dst[t * rows + r] = w[((long)co * s.Cin + ci0 + r) * kernelTaps + kh * s.KW + kw];
                            }
                }
                int vectors = (ah.Extent * wq + L - 1) / L;
                // Stride 1 writes dx directly; a stride-S phase writes its own plane, merged into dx afterwards.
                plan.Phases[rh * st + rw] = st == 1
                    ? new ProductPhase(taps, off, packed, ah.Extent, aw.Extent, vectors, 0, s.W, 1)
                    : new ProductPhase(taps, off, packed, ah.Extent, aw.Extent, vectors, (rh * st + rw) * rowsOf[0].Extent * colsOf[0].Extent, colsOf[0].Extent, 1);
            }
        }
        if (st > 1) plan.MergePhases(st, s.H, s.W, rowsOf[0].Extent, colsOf[0].Extent);
        plan.Run<S, TV>(dy, (long)s.Cout * outH * outW, dx, (long)s.Cin * s.H * s.W, s.H * s.W, null);
    }

    /// <summary>
    /// One axis of phase r of the strided input gradient: the taps k ≡ r + pad (mod S) of a kernel of size K,
    /// <see cref="First"/> the smallest, <see cref="Taps"/> of them; the phase's extent in dx,
    /// A = ⌈(size - r) / S⌉; and, as a stride-1 correlation of dy with the flipped sub-kernel, its padding
    /// Taps - 1 - e with e = (r + pad - First) / S.
    /// </summary>
    private readonly struct Axis
    {
        public readonly int First, Taps, Extent, Pad;

        public Axis(int r, int pad, int stride, int kernel, int size)
        {
            First = (r + pad) % stride;
            Taps = First < kernel ? (kernel - 1 - First) / stride + 1 : 0;
            Extent = r < size ? (size - r + stride - 1) / stride : 0;
            Pad = Taps - 1 - (r + pad - First) / stride;
        }
    }

    internal static void BackwardWeight<S, TV>(Conv2dShape s, float* x, float* dy, float* dw, float* db)
        where S : IConvSimd<TV> where TV : struct
    {
        int outW = s.OutW, wq = outW + (s.KW - 1) / s.Stride, pixels = s.OutH * outW;
        var grid = InputGrid(s, 0);
        // One vector of output channels when one holds them all (Cout = 1 or 3), else the widest tile.
        int coTile = s.Cout <= S.Count ? S.Count : S.ReductionVectors * S.Count;
        var plan = new ReductionPlan(s, grid, S.ReductionTaps, coTile);
        int k = 0;
        for (int ci = 0; ci < s.Cin; ci++)
            for (int kh = 0; kh < s.KH; kh++)
                for (int kw = 0; kw < s.KW; kw++)
                    plan.TapOffsets[k++] = grid.TapOffset(ci, kh, kw);
        for (int b = 0; b < plan.Batch; b++)
            for (int p = 0; p < pixels; p++)
                plan.PixelOffsets[b * pixels + p] = b * grid.Floats + p / outW * wq + p % outW;
        plan.Run<S, TV>(x, dy, dw, db);
    }
}

/// <summary>
/// One phase of a direct convolution over a grid: <see cref="Taps"/> tap offsets and the weights packed as tiles
/// of output channels, tap-major; and where its output positions q = r Wq + c (r &lt; <see cref="Rows"/>, c &lt;
/// <see cref="Cols"/>) go: element <see cref="Base"/> + r <see cref="RowStep"/> + c <see cref="ColStep"/> of each
/// output plane.
/// </summary>
internal readonly unsafe struct ProductPhase(int taps, int* offsets, float* weights, int rows, int cols, int vectors, int @base, int rowStep, int colStep)
{
    public readonly int Taps = taps;
    public readonly int* Offsets = offsets;
    public readonly float* Weights = weights;
    public readonly int Rows = rows, Cols = cols, Vectors = vectors;
    public readonly int Base = @base, RowStep = rowStep, ColStep = colStep;
}

/// <summary>
/// A direct convolution of N images as products over one grid per image, split over threads without nesting.
/// When the images share out evenly, each thread takes whole images and fills their grids in its own cache;
/// otherwise all grids are filled first and the products are cut by (image, phase, tile of output channels,
/// strip of positions).
/// </summary>
internal sealed unsafe class ProductPlan
{
    /// <summary>Work items per thread wanted when images alone do not share out evenly.</summary>
    private const int ItemsPerThread = 4;

    /// <summary>Channels per grid-filling work item.</summary>
    private const int FillChannels = 8;

    /// <summary>
    /// Micro-tiles of positions per strip: the output block of a strip, all channels, stays in L2. A tuning knob
    /// read on every call, set only by the conv kernel lab (Bench <c>lab conv cfg=strip=N</c>).
    /// </summary>
    internal static int StripTiles = 4;

    /// <summary>
    /// Floats of the grid slice one block of taps reads for one strip (half of a 32 KiB L1; measured here on K3 and
    /// K4: 4096 about 10-15% faster than no blocking). A tuning knob like <see cref="StripTiles"/> (<c>cfg=slice=N</c>).
    /// </summary>
    internal static int SliceFloats = 4096;

    public readonly int N, OutChannels, Rows, MaxVectors, L;
    public readonly ConvGrid Grid;
    public readonly ProductPhase[] Phases;
    private readonly int* _tables;
    private readonly float* _weights;
    private readonly long _tableCapacity, _weightCapacity;
    private long _tablesUsed, _weightsUsed;

    /// <summary>A plan over <paramref name="grid"/>; its phases' tables and weights take at most the capacities given.</summary>
    public ProductPlan(int n, int outChannels, ConvGrid grid, int phases, int rows, int maxVectors, int l, long tableCapacity, long weightCapacity)
    {
        N = n;
        OutChannels = outChannels;
        Grid = grid;
        Phases = new ProductPhase[phases];
        Rows = rows;
        MaxVectors = maxVectors;
        L = l;
        _tableCapacity = tableCapacity + 16L * phases;
        _weightCapacity = weightCapacity + 16L * phases;
        _tables = (int*)ConvScratch.Get(ConvScratchSlot.Tables, _tableCapacity);
        _weights = ConvScratch.Get(ConvScratchSlot.Weights, _weightCapacity);
    }

    private int _mergeStride, _mergeH, _mergeW, _phaseH, _phaseW;

    /// <summary>
    /// Makes the phases write S x S (<paramref name="stride"/>) phase planes of <paramref name="phaseH"/> x <paramref name="phaseW"/> per output
    /// channel (phase (rh, rw) the plane rh S + rw, dense rows), which <see cref="Run{S, TV}"/> then merges into the
    /// <paramref name="h"/> x <paramref name="w"/> output planes: out[S a + rh, S b + rw] = phase(rh, rw)[a, b]. The
    /// products then store whole rows, and the merge interleaves them in vectors, instead of each phase storing
    /// every S-th float.
    /// </summary>
    public void MergePhases(int stride, int h, int w, int phaseH, int phaseW)
    {
        _mergeStride = stride;
        _mergeH = h;
        _mergeW = w;
        _phaseH = phaseH;
        _phaseW = phaseW;
    }

    private void Merge<S, TV>(float* phases, float* output, int c0, int c1, in PointerRange<float> outRange) where S : IConvSimd<TV> where TV : struct
    {
        int st = _mergeStride;
        long plane = (long)_phaseH * _phaseW;
        for (int c = c0; c < c1; c++)
        {
            float* src = phases + (long)c * st * st * plane;
            float* dst = output + (long)c * _mergeH * _mergeW;
            outRange.Check("Conv2d phase merge", dst, (long)_mergeH * _mergeW);
            for (int row = 0; row < _mergeH; row++)
            {
                int rh = row % st, a = row / st;
                float* d = dst + (long)row * _mergeW;
                float* p = src + rh * st * plane + (long)a * _phaseW;
                int col = 0;
                if (st == 2)
                {
                    float* q = p + plane;
                    for (; col <= _mergeW - 2 * S.Count; col += 2 * S.Count)
                        S.StoreInterleave(S.Load(p + col / 2), S.Load(q + col / 2), d + col);
                }
                for (; col < _mergeW; col++) d[col] = p[(col % st) * plane + col / st];
            }
        }
    }

    /// <summary>The next <paramref name="taps"/> ints of the tap tables (16-aligned).</summary>
    public int* AllocateOffsets(int taps)
    {
        int* p = _tables + _tablesUsed;
        _tablesUsed += (taps + 15) / 16 * 16;
        if (_tablesUsed > _tableCapacity) throw new InvalidOperationException("Conv2d direct plan: tap tables overflow");
        return p;
    }

    /// <summary>The next OutChannels x <paramref name="taps"/> floats of the packed weights (16-aligned).</summary>
    public float* AllocateWeights(int taps)
    {
        float* p = _weights + _weightsUsed;
        _weightsUsed += ((long)OutChannels * taps + 15) / 16 * 16;
        if (_weightsUsed > _weightCapacity) throw new InvalidOperationException("Conv2d direct plan: packed weights overflow");
        return p;
    }

    /// <summary>
    /// Runs every phase on every image: images of <paramref name="inputImage"/> floats at <paramref name="input"/>,
    /// output images of <paramref name="outputImage"/> floats (planes of <paramref name="outputPlane"/>) at
    /// <paramref name="output"/>, plus <paramref name="bias"/>[channel] when not null. Output elements no phase
    /// writes are left as they are, so the phases together must cover the output.
    /// </summary>
    public void Run<S, TV>(float* input, long inputImage, float* output, long outputImage, long outputPlane, float* bias)
        where S : IConvSimd<TV> where TV : struct
    {
        int threads = CpuParallel.Threads;
        int stripVectors = StripTiles * MaxVectors;
        var inRange = new PointerRange<float>(input, N * inputImage, "conv input");
        var outRange = new PointerRange<float>(output, N * outputImage, "conv output");
        int tiles = (OutChannels + Rows - 1) / Rows;
        bool merge = _mergeW > 0;
        long phaseImage = merge ? (long)OutChannels * Phases.Length * _phaseH * _phaseW : 0;
        long targetPlane = merge ? (long)Phases.Length * _phaseH * _phaseW : outputPlane;
        bool wholeImages = threads == 1 || (N >= threads && (N % threads == 0 || N >= ItemsPerThread * threads));
        if (wholeImages)
        {
            CpuParallel.For(N, 1, (n0, n1) =>
            {
                float* grid = ConvScratch.Get(ConvScratchSlot.Grid, Grid.Floats);
                float* buffer = ConvScratch.Get(ConvScratchSlot.Output, (long)tiles * Rows * stripVectors * L);
                float* phases = merge ? ConvScratch.Get(ConvScratchSlot.Phases, phaseImage) : null;
                var gridRange = new PointerRange<float>(grid, Grid.Floats, "conv grid");
                var phaseRange = new PointerRange<float>(phases, phaseImage, "conv phase planes");
                for (long n = n0; n < n1; n++)
                {
                    inRange.Check("Conv2d grid fill", input + n * inputImage, inputImage);
                    Grid.Fill<S, TV>(input + n * inputImage, grid, 0, Grid.Channels, gridRange);
                    float* target = merge ? phases : output + n * outputImage;
                    foreach (var ph in Phases)
                        for (int v0 = 0; v0 < ph.Vectors; v0 += stripVectors)
                            Strip<S, TV>(ph, grid, gridRange, buffer, 0, OutChannels, v0, Math.Min(ph.Vectors, v0 + stripVectors),
                                target, merge ? phaseRange : outRange, targetPlane, bias);
                    if (merge) Merge<S, TV>(phases, output + n * outputImage, 0, OutChannels, outRange);
                }
            });
            return;
        }

        float* grids = ConvScratch.Get(ConvScratchSlot.SharedGrid, (long)N * Grid.Floats);
        var gridsRange = new PointerRange<float>(grids, (long)N * Grid.Floats, "conv grids");
        int chunks = (Grid.Channels + FillChannels - 1) / FillChannels;
        CpuParallel.For((long)N * chunks, 1, (i0, i1) =>
        {
            for (long i = i0; i < i1; i++)
            {
                long n = i / chunks;
                int c0 = (int)(i % chunks) * FillChannels, c1 = Math.Min(Grid.Channels, c0 + FillChannels);
                inRange.Check("Conv2d grid fill", input + n * inputImage, inputImage);
                Grid.Fill<S, TV>(input + n * inputImage, grids + n * Grid.Floats, c0, c1, gridsRange);
            }
        });
        // Items (image, phase, strip, group of output tiles): the groups only as many as it takes to give each
        // thread ItemsPerThread items.
        int maxStrips = 0;
        foreach (var ph in Phases) maxStrips = Math.Max(maxStrips, (ph.Vectors + stripVectors - 1) / stripVectors);
        long perGroup = (long)N * Phases.Length * maxStrips;
        int groups = (int)Math.Clamp((ItemsPerThread * threads + perGroup - 1) / perGroup, 1, tiles);
        float* shared = merge ? ConvScratch.Get(ConvScratchSlot.SharedPhases, N * phaseImage) : null;
        var sharedRange = new PointerRange<float>(shared, N * phaseImage, "conv phase planes");
        CpuParallel.For(perGroup * groups, 1, (i0, i1) =>
        {
            float* buffer = ConvScratch.Get(ConvScratchSlot.Output, (long)tiles * Rows * stripVectors * L);
            for (long i = i0; i < i1; i++)
            {
                int group = (int)(i % groups);
                long rest = i / groups;
                int strip = (int)(rest % maxStrips);
                rest /= maxStrips;
                var ph = Phases[(int)(rest % Phases.Length)];
                long n = rest / Phases.Length;
                int v0 = strip * stripVectors;
                if (v0 >= ph.Vectors) continue;
                int c0 = (int)((long)tiles * group / groups) * Rows, c1 = Math.Min(OutChannels, (int)((long)tiles * (group + 1) / groups) * Rows);
                if (c1 > c0)
                    Strip<S, TV>(ph, grids + n * Grid.Floats, gridsRange, buffer, c0, c1, v0, Math.Min(ph.Vectors, v0 + stripVectors),
                        merge ? shared + n * phaseImage : output + n * outputImage, merge ? sharedRange : outRange, targetPlane, bias);
            }
        });
        if (!merge) return;
        int mergeChunks = (OutChannels + FillChannels - 1) / FillChannels;
        CpuParallel.For((long)N * mergeChunks, 1, (i0, i1) =>
        {
            for (long i = i0; i < i1; i++)
            {
                long n = i / mergeChunks;
                int c0 = (int)(i % mergeChunks) * FillChannels;
                Merge<S, TV>(shared + n * phaseImage, output + n * outputImage, c0, Math.Min(OutChannels, c0 + FillChannels), outRange);
            }
        });
    }

    /// <summary>
    /// Output channels [c0, c1) (whole tiles) and position vectors [v0, v1) of one phase on one grid: the products
    /// into <paramref name="buffer"/> block of taps by block of taps, so that the slice of the grid a block reads
    /// stays in L1 while every tile of output channels passes over it; then scattered to the output planes with the
    /// bias added.
    /// </summary>
    private void Strip<S, TV>(in ProductPhase ph, float* grid, in PointerRange<float> gridRange, float* buffer, int c0, int c1, int v0, int v1,
        float* outImage, in PointerRange<float> outRange, long outputPlane, float* bias)
        where S : IConvSimd<TV> where TV : struct
    {
        int length = (v1 - v0) * L;
        int tapsPerChannel = ph.Taps / Grid.Channels;
        // Rows of a phase plane the strip's positions and the kernel's reach span, and the channels whose span
        // fits SliceFloats.
        int spanRows = Math.Min(Grid.Hq, (length + Grid.Wq - 1) / Grid.Wq + 1 + Grid.Hq - ph.Rows);
        long channelSlice = (long)Grid.Stride * Grid.Stride * spanRows * Grid.Wq;
        int block = Math.Max(1, (int)Math.Min(Grid.Channels, SliceFloats / Math.Max(1, channelSlice))) * Math.Max(1, tapsPerChannel);
        if (PointerChecks.Enabled && ph.Taps > 0)
        {
            int lo = int.MaxValue, hi = int.MinValue;
            for (int k = 0; k < ph.Taps; k++)
            {
                lo = Math.Min(lo, ph.Offsets[k]);
                hi = Math.Max(hi, ph.Offsets[k]);
            }
            gridRange.Check("Conv2d direct product", grid + (long)v0 * L + lo, (long)hi - lo + length);
        }
        int k0 = 0;
        do
        {
            int k1 = Math.Min(ph.Taps, k0 + block);
            for (int co = c0; co < c1; co += Rows)
            {
                int rows = Math.Min(Rows, OutChannels - co);
                float* weights = ph.Weights + (long)co * ph.Taps + (long)k0 * rows;
                float* o = buffer + (long)(co - c0) * length;
                for (int v = v0; v < v1; v += MaxVectors)
                    ProductAny<S, TV>(rows, Math.Min(MaxVectors, v1 - v), k1 - k0, ph.Offsets + k0, weights, grid + (long)v * L, o + (v - v0) * L, length, k0 > 0);
            }
            k0 = k1;
        }
        while (k0 < ph.Taps);

        // Scatter: position q = r Wq + c of the buffer goes to Base + r RowStep + c ColStep for c < Cols.
        int wq = Grid.Wq, q0 = v0 * L, q1 = Math.Min(q0 + length, ph.Rows * wq);
        for (int ch = c0; ch < c1; ch++)
        {
            float* plane = outImage + ch * outputPlane + ph.Base;
            float* src = buffer + (long)(ch - c0) * length - q0;
            float b = bias == null ? 0f : bias[ch];
            for (int row = q0 / wq; row * wq < q1; row++)
            {
                int from = Math.Max(q0 - row * wq, 0), to = Math.Min(q1 - row * wq, ph.Cols);
                if (to <= from) continue;
                float* dst = plane + (long)row * ph.RowStep;
                float* s = src + row * wq;
                outRange.CheckRows("Conv2d direct scatter", dst + (long)from * ph.ColStep, 1, (long)(to - from - 1) * ph.ColStep + 1, 0);
                if (ph.ColStep == 1) AddBiasRow<S, TV>(s + from, dst + from, to - from, b);
                else for (int c = from; c < to; c++) dst[(long)c * ph.ColStep] = s[c] + b;
            }
        }
    }

    private static void AddBiasRow<S, TV>(float* src, float* dst, int n, float bias) where S : IConvSimd<TV> where TV : struct
    {
        var vb = S.Create(bias);
        int i = 0;
        for (; i <= n - S.Count; i += S.Count) S.Store(S.Add(S.Load(src + i), vb), dst + i);
        for (; i < n; i++) dst[i] = src[i] + bias;
    }

    /// <summary><see cref="ConvMicroKernels.Product{S, TV, TC, TV4}"/> for a runtime tile of rows x vectors.</summary>
    internal static void ProductAny<S, TV>(int rows, int vectors, int taps, int* off, float* a, float* b, float* o, int stride, bool accumulate)
        where S : IConvSimd<TV> where TV : struct
    {
        switch (rows)
        {
            case 1: ProductRows<S, TV, Int1>(vectors, taps, off, a, b, o, stride, accumulate); break;
            case 2: ProductRows<S, TV, Int2>(vectors, taps, off, a, b, o, stride, accumulate); break;
            case 3: ProductRows<S, TV, Int3>(vectors, taps, off, a, b, o, stride, accumulate); break;
            case 4: ProductRows<S, TV, Int4>(vectors, taps, off, a, b, o, stride, accumulate); break;
            case 5: ProductRows<S, TV, Int5>(vectors, taps, off, a, b, o, stride, accumulate); break;
            default: ProductRows<S, TV, Int6>(vectors, taps, off, a, b, o, stride, accumulate); break;
        }
    }

    private static void ProductRows<S, TV, TC>(int vectors, int taps, int* off, float* a, float* b, float* o, int stride, bool accumulate)
        where S : IConvSimd<TV> where TV : struct where TC : IConstInt
    {
        switch (vectors)
        {
            case 1: ConvMicroKernels.Product<S, TV, TC, Int1>(taps, off, a, b, o, stride, accumulate); break;
            case 2: ConvMicroKernels.Product<S, TV, TC, Int2>(taps, off, a, b, o, stride, accumulate); break;
            case 3: ConvMicroKernels.Product<S, TV, TC, Int3>(taps, off, a, b, o, stride, accumulate); break;
            default: ConvMicroKernels.Product<S, TV, TC, Int4>(taps, off, a, b, o, stride, accumulate); break;
        }
    }
}

/// <summary>
/// The weight gradient of N images as reductions over their grids: dwᵀ[tap, co] += Σ_p dyᵀ[p, co] G[tap + pix(p)].
/// Images go in batches (enough pixels per reduction to amortise its accumulator loads and stores); the work is
/// split over threads by (group of input channels, tile of output channels), each owning its entries of dw and
/// summing every image in order, so the result does not depend on the thread count.
/// </summary>
internal sealed unsafe class ReductionPlan
{
    /// <summary>
    /// Pixels (images x output pixels) wanted per reduction. A tuning knob read on every call, set only by the conv
    /// kernel lab (<c>cfg=batch=N</c>).
    /// </summary>
    internal static int BatchPixels = 256;

    /// <summary>Most floats of a thread's batch of grids (4 MiB).</summary>
    private const int BatchGridFloats = 1 << 20;

    public readonly Conv2dShape Shape;
    public readonly ConvGrid Grid;
    public readonly int Taps, CoTile, Batch, Pixels;
    public readonly int* TapOffsets, PixelOffsets;

    public ReductionPlan(Conv2dShape s, ConvGrid grid, int taps, int coTile)
    {
        Shape = s;
        Grid = grid;
        Taps = taps;
        CoTile = coTile;
        Pixels = s.OutH * s.OutW;
        int batch = Math.Clamp((BatchPixels + Pixels - 1) / Pixels, 1, s.N);
        Batch = Math.Max(1, Math.Min(batch, BatchGridFloats / grid.Floats));
        long kernelTaps = (long)s.Cin * s.KH * s.KW;
        if ((long)Batch * grid.Floats > int.MaxValue) Batch = 1;
        TapOffsets = (int*)ConvScratch.Get(ConvScratchSlot.Tables, kernelTaps + 16 + (long)Batch * Pixels);
        PixelOffsets = TapOffsets + (kernelTaps + 15) / 16 * 16;
    }

    public void Run<S, TV>(float* x, float* dy, float* dw, float* db) where S : IConvSimd<TV> where TV : struct
    {
        var s = Shape;
        int threads = CpuParallel.Threads;
        int kernelTaps = s.KH * s.KW;
        int coTiles = (s.Cout + CoTile - 1) / CoTile;
        // Input-channel groups only when the output tiles alone cannot keep every thread busy.
        int groups = coTiles >= threads ? 1 : Math.Min(s.Cin, (threads + coTiles - 1) / coTiles);
        long imageIn = (long)s.Cin * s.H * s.W, imageOut = (long)s.Cout * Pixels;
        var xRange = new PointerRange<float>(x, s.N * imageIn, "x");
        var dyRange = new PointerRange<float>(dy, s.N * imageOut, "dy");
        var dwRange = new PointerRange<float>(dw, s.WeightLength, "dw");
        CpuParallel.For((long)groups * coTiles, 1, (i0, i1) =>
        {
            // Items are group-major: this thread's range is a run of tiles in each of one or more groups.
            int firstGroup = (int)(i0 / coTiles), lastGroup = (int)((i1 - 1) / coTiles);
            int maxGroupTaps = ((s.Cin + groups - 1) / groups) * kernelTaps;
            long items = i1 - i0;
            float* grids = ConvScratch.Get(ConvScratchSlot.Grid, (long)Batch * Grid.Floats);
            float* dyT = ConvScratch.Get(ConvScratchSlot.Output, (long)Batch * Pixels * CoTile);
            float* acc = ConvScratch.Get(ConvScratchSlot.Accumulators, items * maxGroupTaps * CoTile);
            var gridRange = new PointerRange<float>(grids, (long)Batch * Grid.Floats, "conv grids");
            var accRange = new PointerRange<float>(acc, items * maxGroupTaps * CoTile, "dw accumulators");
            new Span<float>(acc, (int)(items * maxGroupTaps * CoTile)).Clear();
            Span<double> biasSum = db == null ? default : new double[coTiles * CoTile];
            for (int n0 = 0; n0 < s.N; n0 += Batch)
            {
                int nb = Math.Min(Batch, s.N - n0);
                for (int g = firstGroup; g <= lastGroup; g++)
                {
                    int ci0 = (int)((long)s.Cin * g / groups), ci1 = (int)((long)s.Cin * (g + 1) / groups);
                    int t0 = g == firstGroup ? (int)(i0 % coTiles) : 0;
                    int t1 = g == lastGroup ? (int)((i1 - 1) % coTiles) + 1 : coTiles;
                    for (int b = 0; b < nb; b++)
                    {
                        xRange.Check("Conv2d grid fill", x + (n0 + b) * imageIn, imageIn);
                        Grid.Fill<S, TV>(x + (n0 + b) * imageIn, grids + (long)b * Grid.Floats, ci0, ci1, gridRange);
                    }
                    for (int t = t0; t < t1; t++)
                    {
                        bool sums = db != null && g == 0;
                        Transpose(dy, n0, nb, t * CoTile, dyT, dyRange, sums ? biasSum.Slice(t * CoTile, CoTile) : default);
                        long item = (long)g * coTiles + t - i0;
                        float* tileAcc = acc + item * maxGroupTaps * CoTile;
                        int k0 = ci0 * kernelTaps, k1 = ci1 * kernelTaps;
                        for (int k = k0; k < k1; k += Taps)
                        {
                            int j = Math.Min(Taps, k1 - k);
                            float* a = tileAcc + (long)(k - k0) * CoTile;
                            accRange.Check("Conv2d weight-gradient reduction", a, (long)j * CoTile);
                            ReductionAny<S, TV>(j, CoTile / S.Count, nb * Pixels, PixelOffsets, dyT, CoTile, grids, TapOffsets + k, a);
                        }
                    }
                }
            }
            // dw[co, k] from the tile-major accumulators dwᵀ[k, co]; db from the double sums.
            for (long i = i0; i < i1; i++)
            {
                int g = (int)(i / coTiles), t = (int)(i % coTiles);
                int ci0 = (int)((long)s.Cin * g / groups), ci1 = (int)((long)s.Cin * (g + 1) / groups);
                float* tileAcc = acc + (i - i0) * maxGroupTaps * CoTile;
                int k0 = ci0 * kernelTaps, k1 = ci1 * kernelTaps;
                for (int c = 0; c < CoTile && t * CoTile + c < s.Cout; c++)
                {
                    int co = t * CoTile + c;
                    float* row = dw + (long)co * s.Cin * kernelTaps;
                    dwRange.Check("Conv2d dw store", row + k0, k1 - k0);
                    for (int k = k0; k < k1; k++) row[k] = tileAcc[(long)(k - k0) * CoTile + c];
                    if (db != null && g == 0) db[co] = (float)biasSum[t * CoTile + c];
                }
            }
        });
    }

    /// <summary>
    /// dyᵀ[b Pixels + p, c] = dy[n0 + b, co0 + c, p] for the batch (zero for c past Cout), and, when
    /// <paramref name="sums"/> is not empty, sums[c] += Σ_p dy[n0 + b, co0 + c, p] image by image.
    /// </summary>
    private void Transpose(float* dy, int n0, int nb, int co0, float* dyT, in PointerRange<float> dyRange, Span<double> sums)
    {
        var s = Shape;
        int rows = Math.Min(CoTile, s.Cout - co0);
        for (int b = 0; b < nb; b++)
        {
            float* dst = dyT + (long)b * Pixels * CoTile;
            float* src = dy + ((long)(n0 + b) * s.Cout + co0) * Pixels;
            dyRange.Check("Conv2d dy transpose", src, (long)rows * Pixels);
            ConvTranspose.Transpose(src, Pixels, rows, Pixels, dst, CoTile);
            if (!sums.IsEmpty)
                for (int c = 0; c < rows; c++) sums[c] += TensorPrimitives.Sum(new ReadOnlySpan<float>(src + (long)c * Pixels, Pixels));
            for (int c = rows; c < CoTile; c++)
                for (int p = 0; p < Pixels; p++)
                    dst[(long)p * CoTile + c] = 0f;
        }
    }

    internal static void ReductionAny<S, TV>(int taps, int vectors, int pixels, int* pix, float* d, int dStride, float* b, int* tap, float* acc)
        where S : IConvSimd<TV> where TV : struct
    {
        switch (taps)
        {
            case 1: ReductionTaps<S, TV, Int1>(vectors, pixels, pix, d, dStride, b, tap, acc); break;
            case 2: ReductionTaps<S, TV, Int2>(vectors, pixels, pix, d, dStride, b, tap, acc); break;
            case 3: ReductionTaps<S, TV, Int3>(vectors, pixels, pix, d, dStride, b, tap, acc); break;
            case 4: ReductionTaps<S, TV, Int4>(vectors, pixels, pix, d, dStride, b, tap, acc); break;
            case 5: ReductionTaps<S, TV, Int5>(vectors, pixels, pix, d, dStride, b, tap, acc); break;
            default: ReductionTaps<S, TV, Int6>(vectors, pixels, pix, d, dStride, b, tap, acc); break;
        }
    }

    private static void ReductionTaps<S, TV, TJ>(int vectors, int pixels, int* pix, float* d, int dStride, float* b, int* tap, float* acc)
        where S : IConvSimd<TV> where TV : struct where TJ : IConstInt
    {
        if (vectors == 1) ConvMicroKernels.Reduction<S, TV, TJ, Int1>(pixels, pix, d, dStride, b, tap, acc);
        else ConvMicroKernels.Reduction<S, TV, TJ, Int2>(pixels, pix, d, dStride, b, tap, acc);
    }
}
