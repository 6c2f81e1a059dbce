using DiffusionCore.Kernels.Ilgpu;
using ILGPU;
using ILGPU.Runtime;
using static DiffusionCore.Kernels.Ilgpu.ImageTilesIlgpu;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// Conv2d forward and backward as ILGPU kernels, float32, over contiguous NCHW buffers laid out as
/// <see cref="Conv2dShape"/> describes. Each pass is an implicit GEMM (the im2col matrix is never written to
/// global memory: its elements are gathered from the image while a tile is loaded into shared memory), with
/// K = Cin KH KW and P = OutH OutW:
/// <list type="bullet">
/// <item>forward: y[n, co, p] = bias[co] + Σ_k w[co, k] col[k, (n, p)], a Cout x (N P) output over depth K;</item>
/// <item>input gradient: dx[n, c, (ih, iw)] = Σ_{(co, kh, kw)} w[co, c, kh, kw] dy[n, co, oh, ow] over the
/// (oh, ow) with oh S - pad + kh = ih and ow S - pad + kw = iw (a gather, so every dx element is written once and
/// no atomics are needed), a Cin x (N H W) output over depth Cout KH KW;</item>
/// <item>weight gradient: dw[co, k] = Σ_{(n, p)} dy[n, co, p] col[k, (n, p)], a Cout x K output over depth N P,
/// split over the depth into partial sums (split-K) when the output alone has too few tiles to fill the device;
/// the partials are then added in split order, so the result is the same on every run;
/// db[co] = Σ_{n, p} dy[n, co, p] summed from the dy slices the same kernel loads.</item>
/// </list>
/// Every GEMM uses 64 x 64 output tiles per group of 256 threads, 4 x 4 outputs per thread, and 16-deep slices of
/// both operands in shared memory (see <see cref="ImageTilesIlgpu"/>). Outputs must not overlap inputs.
/// </summary>
internal static class Conv2dIlgpu
{
    private const string Op = "Conv2d";

    /// <summary>
    /// Weight gradient: the fewest depth elements one split of split-K covers (8 shared-memory stages), so that a
    /// split's partial tile is not dominated by writing and re-adding it.
    /// </summary>
    public const int MinSplitDepth = 8 * SliceDepth;

    /// <summary>Weight gradient: split-K aims at this many groups per multiprocessor.</summary>
    public const int GroupsPerMultiprocessor = 4;

    // Loader layouts. "Depth-major" loaders (A of every pass, B of the weight gradient) give each thread the depth
    // index t % 16 and the rows t / 16 + 16 r, so a warp reads 16 consecutive depth elements (contiguous in w, dy
    // and x); "column-major" loaders (B of forward and input gradient) give each thread the depth index t / 16 and the
    // columns t % 16 + 16 r, so a warp reads 16 consecutive output pixels. Both fill 16 x 64 floats, 4 per thread.
    private const int LoadsPerThread = SliceDepth * Tile / GroupSize;

    /// <summary>y = conv2d(x, w) + bias; <paramref name="hasBias"/> = 0 ignores <paramref name="bias"/>.</summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void ForwardKernel(Conv2dShape s, ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, int hasBias, ArrayView<float> y)
    {
        var a = SharedMemory.Allocate<float>(SliceFloats);
        var b = SharedMemory.Allocate<float>(SliceFloats);
        int t = Group.IdxX, tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        int col0 = Grid.IdxX * Tile, row0 = Grid.IdxY * Tile;
        int outW = s.OutW, plane = s.OutH * outW, columns = s.N * plane;
        int taps = s.KH * s.KW, depth = s.Cin * taps, hw = s.H * s.W;
        int depthCol = t / ThreadsPerSide, depthRow = t % ThreadsPerSide;
        // The four output pixels this thread gathers for B: the top-left input corner of each receptive field.
        var origins = new Origins4(
            PixelOrigin.Of(col0 + tx, s, plane, outW, columns), PixelOrigin.Of(col0 + tx + 16, s, plane, outW, columns),
            PixelOrigin.Of(col0 + tx + 32, s, plane, outW, columns), PixelOrigin.Of(col0 + tx + 48, s, plane, outW, columns));
        var acc = default(Block4x4);
        for (int k0 = 0; k0 < depth; k0 += SliceDepth)
        {
            int ka = k0 + depthRow;
            for (int r = 0; r < LoadsPerThread; r++)
            {
                int m = t / ThreadsPerSide + 16 * r, co = row0 + m;
                a[depthRow * SliceStride + m] = co < s.Cout && ka < depth ? w[co * depth + ka] : 0f;
            }
            int kb = k0 + depthCol;
            int c = kb / taps, tap = kb - c * taps, kh = tap / s.KW, kw = tap - kh * s.KW;
            for (int r = 0; r < LoadsPerThread; r++)
            {
                var o = origins.Get(r);
                int ih = o.Ih + kh, iw = o.Iw + kw;
                bool inside = o.Valid && kb < depth && (uint)ih < (uint)s.H && (uint)iw < (uint)s.W;
                b[depthCol * SliceStride + tx + 16 * r] = inside ? x[o.Image + c * hw + ih * s.W + iw] : 0f;
            }
            Group.Barrier();
            acc = MultiplySlices(a, b, tx, ty, acc);
            Group.Barrier();
        }
        for (int j = 0; j < 4; j++)
        {
            int col = col0 + tx + 16 * j;
            if (col >= columns) continue;
            int n = col / plane, p = col - n * plane;
            for (int i = 0; i < 4; i++)
            {
                int co = row0 + ty + 16 * i;
                if (co < s.Cout) y[(n * s.Cout + co) * plane + p] = acc.Get(i, j) + (hasBias != 0 ? bias[co] : 0f);
            }
        }
    }

    /// <summary>dx = ∂L/∂x given dy (overwritten), gathered per input pixel.</summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void BackwardInputKernel(Conv2dShape s, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        var a = SharedMemory.Allocate<float>(SliceFloats);
        var b = SharedMemory.Allocate<float>(SliceFloats);
        int t = Group.IdxX, tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        int col0 = Grid.IdxX * Tile, row0 = Grid.IdxY * Tile;
        int outH = s.OutH, outW = s.OutW, hw = s.H * s.W, columns = s.N * hw;
        int taps = s.KH * s.KW, depth = s.Cout * taps;
        int depthCol = t / ThreadsPerSide, depthRow = t % ThreadsPerSide;
        // The four input pixels this thread gathers dy for, shifted by the padding: (ih + pad, iw + pad).
        var pixels = new Origins4(
            InputPixel(col0 + tx, s, hw, columns), InputPixel(col0 + tx + 16, s, hw, columns),
            InputPixel(col0 + tx + 32, s, hw, columns), InputPixel(col0 + tx + 48, s, hw, columns));
        var acc = default(Block4x4);
        for (int k0 = 0; k0 < depth; k0 += SliceDepth)
        {
            // A[c, (co, kh, kw)] = w[co, c, kh, kw].
            int ka = k0 + depthRow;
            int coA = ka / taps, tapA = ka - coA * taps;
            for (int r = 0; r < LoadsPerThread; r++)
            {
                int m = t / ThreadsPerSide + 16 * r, c = row0 + m;
                a[depthRow * SliceStride + m] = c < s.Cin && ka < depth ? w[(coA * s.Cin + c) * taps + tapA] : 0f;
            }
            // B[(co, kh, kw), (n, ih, iw)] = dy[n, co, oh, ow] where oh S = ih + pad - kh and ow S = iw + pad - kw.
            int kb = k0 + depthCol;
            int co = kb / taps, tap = kb - co * taps, kh = tap / s.KW, kw = tap - kh * s.KW;
            for (int r = 0; r < LoadsPerThread; r++)
            {
                var px = pixels.Get(r);
                int ohs = px.Ih - kh, ows = px.Iw - kw;
                int oh = ohs / s.Stride, ow = ows / s.Stride;
                bool hit = px.Valid && kb < depth && ohs >= 0 && ows >= 0 && oh * s.Stride == ohs && ow * s.Stride == ows
                    && oh < outH && ow < outW;
                b[depthCol * SliceStride + tx + 16 * r] = hit ? dy[((px.Image * s.Cout + co) * outH + oh) * outW + ow] : 0f;
            }
            Group.Barrier();
            acc = MultiplySlices(a, b, tx, ty, acc);
            Group.Barrier();
        }
        for (int j = 0; j < 4; j++)
        {
            int col = col0 + tx + 16 * j;
            if (col >= columns) continue;
            int n = col / hw, p = col - n * hw;
            for (int i = 0; i < 4; i++)
            {
                int c = row0 + ty + 16 * i;
                if (c < s.Cin) dx[(n * s.Cin + c) * hw + p] = acc.Get(i, j);
            }
        }
    }

    /// <summary>
    /// Partial weight (and bias) gradient over the depth range of split z = Grid.IdxZ (<paramref name="splitDepth"/>
    /// output pixels each): dwOut[z stride + co K + k] = Σ dy[n, co, p] col[k, (n, p)] over the (n, p) of the split,
    /// and, when <paramref name="hasBias"/> != 0, dbOut[z stride + co] = Σ dy[n, co, p] over the same pixels, summed
    /// by the groups of the first column tile from the dy slices they load anyway. With one split, dwOut and dbOut are
    /// dw and db themselves.
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void BackwardWeightKernel(Conv2dShape s, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dwOut,
        ArrayView<float> dbOut, int hasBias, int splitDepth, int splitStride)
    {
        var a = SharedMemory.Allocate<float>(SliceFloats);
        var b = SharedMemory.Allocate<float>(SliceFloats);
        int t = Group.IdxX, tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        int col0 = Grid.IdxX * Tile, row0 = Grid.IdxY * Tile;
        int outW = s.OutW, plane = s.OutH * outW, hw = s.H * s.W;
        int taps = s.KH * s.KW, columns = s.Cin * taps, depth = s.N * plane;
        int begin = Grid.IdxZ * splitDepth, end = Min(depth, begin + splitDepth);
        int depthRow = t % ThreadsPerSide;
        // Threads 0 .. 63 of the first column tile also add up row t of every dy slice: db for channel row0 + t.
        bool sumsBias = hasBias != 0 && Grid.IdxX == 0 && t < Tile;
        float biasSum = 0f;
        // The four weight taps (c, kh, kw) this thread gathers x for.
        var taps4 = new Origins4(
            WeightTap(col0 + t / ThreadsPerSide, s, hw, columns), WeightTap(col0 + t / ThreadsPerSide + 16, s, hw, columns),
            WeightTap(col0 + t / ThreadsPerSide + 32, s, hw, columns), WeightTap(col0 + t / ThreadsPerSide + 48, s, hw, columns));
        var acc = default(Block4x4);
        for (int k0 = begin; k0 < end; k0 += SliceDepth)
        {
            // Both operands are indexed by the output pixel (n, oh, ow) of depth index k.
            int k = k0 + depthRow;
            bool live = k < end;
            int n = live ? k / plane : 0, p = k - n * plane, oh = p / outW, ow = p - oh * outW;
            int ihBase = oh * s.Stride - s.Pad, iwBase = ow * s.Stride - s.Pad;
            for (int r = 0; r < LoadsPerThread; r++)
            {
                int m = t / ThreadsPerSide + 16 * r, co = row0 + m;
                a[depthRow * SliceStride + m] = live && co < s.Cout ? dy[(n * s.Cout + co) * plane + p] : 0f;
                var tap = taps4.Get(r);
                int ih = ihBase + tap.Ih, iw = iwBase + tap.Iw;
                bool inside = live && tap.Valid && (uint)ih < (uint)s.H && (uint)iw < (uint)s.W;
                b[depthRow * SliceStride + m] = inside ? x[n * s.Cin * hw + tap.Image + ih * s.W + iw] : 0f;
            }
            Group.Barrier();
            acc = MultiplySlices(a, b, tx, ty, acc);
            if (sumsBias)
            {
                for (int kk = 0; kk < SliceDepth; kk++) biasSum += a[kk * SliceStride + t];
            }
            Group.Barrier();
        }
        int splitOffset = Grid.IdxZ * splitStride;
        for (int i = 0; i < 4; i++)
        {
            int co = row0 + ty + 16 * i;
            if (co >= s.Cout) continue;
            for (int j = 0; j < 4; j++)
            {
                int col = col0 + tx + 16 * j;
                if (col < columns) dwOut[splitOffset + co * columns + col] = acc.Get(i, j);
            }
        }
        if (sumsBias && row0 + t < s.Cout) dbOut[splitOffset + row0 + t] = biasSum;
    }

    /// <summary>
    /// Split-K reduction, deterministic: with partial laid out [split][dw (W floats), db (Cout floats)] every
    /// <paramref name="splitStride"/> floats, dw[i] = Σ_z partial[z, i] for i &lt; W and db[i - W] = Σ_z partial[z, i]
    /// above, z = 0 .. splits-1 in order.
    /// </summary>
    [IlgpuKernel]
    internal static void SumSplitsKernel(Index1D i, ArrayView<float> partial, int splits, int splitStride, int weightLength,
        ArrayView<float> dw, ArrayView<float> db)
    {
        float sum = 0f;
        for (int z = 0; z < splits; z++) sum += partial[z * splitStride + i];
        if (i < weightLength) dw[i] = sum;
        else db[i - weightLength] = sum;
    }

    private static int Min(int a, int b) => a < b ? a : b;

    /// <summary>Input pixel col = (n, ih, iw) of the input-gradient GEMM, as (n, ih + pad, iw + pad).</summary>
    private static PixelOrigin InputPixel(int col, Conv2dShape s, int hw, int columns)
    {
        bool valid = col < columns;
        int n = valid ? col / hw : 0, p = valid ? col - n * hw : 0, ih = p / s.W;
        return new PixelOrigin(valid, n, ih + s.Pad, p - ih * s.W + s.Pad);
    }

    /// <summary>Weight column col = (c, kh, kw) of the weight-gradient GEMM: channel offset c H W and the tap (kh, kw).</summary>
    private static PixelOrigin WeightTap(int col, Conv2dShape s, int hw, int columns)
    {
        bool valid = col < columns;
        int taps = s.KH * s.KW;
        int c = valid ? col / taps : 0, tap = valid ? col - c * taps : 0, kh = tap / s.KW;
        return new PixelOrigin(valid, c * hw, kh, tap - kh * s.KW);
    }

    /// <summary>
    /// Kernels of one accelerator, loaded (compiled) once, with launchers that check their arguments as
    /// <see cref="Conv2dCpu"/> does. Holds the split-K scratch buffer: use one instance per stream.
    /// </summary>
    internal sealed class Kernels : IDisposable
    {
        private readonly Accelerator _accelerator;
        private readonly ImageScratch _scratch;
        private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<float>> _forward;
        private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>> _backwardInput;
        private readonly Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, int, int, int> _backwardWeight;
        private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, int, int, int, ArrayView<float>, ArrayView<float>> _sumSplits;

        /// <summary>Compiles the kernels for <paramref name="accelerator"/>.</summary>
        public Kernels(Accelerator accelerator) : this(new IlgpuKernelCache(accelerator))
        {
        }

        /// <summary>Compiles the kernels through <paramref name="cache"/> (an <see cref="IlgpuBackend"/>'s, which records the compile times).</summary>
        public Kernels(IlgpuKernelCache cache)
        {
            var accelerator = cache.Accelerator;
            RequireTileSupport(accelerator, Op, 2 * SliceFloats * sizeof(float));
            _accelerator = accelerator;
            _scratch = new ImageScratch(accelerator);
            _forward = cache.Get<Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>>(ForwardKernel);
            _backwardInput = cache.Get<Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>>>(BackwardInputKernel);
            _backwardWeight = cache.Get<Action<AcceleratorStream, KernelConfig, Conv2dShape, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, int, int, int>>(BackwardWeightKernel);
            _sumSplits = cache.Get<Action<AcceleratorStream, Index1D, ArrayView<float>, int, int, int, ArrayView<float>, ArrayView<float>>>(SumSplitsKernel);
        }

        /// <summary>y = conv2d(x, w) + bias; an empty <paramref name="bias"/> means no bias.</summary>
        public void Forward(AcceleratorStream stream, Conv2dShape s, ArrayView<float> x, ArrayView<float> w, ArrayView<float> bias, ArrayView<float> y)
        {
            Validate(s);
            RequireLength(Op, "x", x, s.InputLength, s.ToString());
            RequireLength(Op, "w", w, s.WeightLength, s.ToString());
            if (bias.Length > 0) RequireLength(Op, "bias", bias, s.Cout, s.ToString());
            RequireLength(Op, "y", y, s.OutputLength, s.ToString());
            var grid = new Index3D(DivUp(s.N * s.OutH * s.OutW, Tile), DivUp(s.Cout, Tile), 1);
            _forward(stream, new KernelConfig(grid, new Index3D(GroupSize, 1, 1)), s, x, w, bias, bias.Length > 0 ? 1 : 0, y);
        }

        /// <summary>dx = ∂L/∂x given dy = ∂L/∂y (dx overwritten).</summary>
        public void BackwardInput(AcceleratorStream stream, Conv2dShape s, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
        {
            Validate(s);
            RequireLength(Op, "dy", dy, s.OutputLength, s.ToString());
            RequireLength(Op, "w", w, s.WeightLength, s.ToString());
            RequireLength(Op, "dx", dx, s.InputLength, s.ToString());
            var grid = new Index3D(DivUp(s.N * s.H * s.W, Tile), DivUp(s.Cin, Tile), 1);
            _backwardInput(stream, new KernelConfig(grid, new Index3D(GroupSize, 1, 1)), s, dy, w, dx);
        }

        /// <summary>
        /// dw = ∂L/∂w and db = ∂L/∂bias given x and dy (both overwritten; an empty <paramref name="db"/> skips the
        /// bias gradient). <paramref name="splits"/> &gt; 0 forces the number of depth splits (tests); 0 picks it
        /// from the device's multiprocessor count.
        /// </summary>
        public void BackwardWeight(AcceleratorStream stream, Conv2dShape s, ArrayView<float> x, ArrayView<float> dy,
            ArrayView<float> dw, ArrayView<float> db, int splits = 0)
        {
            Validate(s);
            RequireLength(Op, "x", x, s.InputLength, s.ToString());
            RequireLength(Op, "dy", dy, s.OutputLength, s.ToString());
            RequireLength(Op, "dw", dw, s.WeightLength, s.ToString());
            if (db.Length > 0) RequireLength(Op, "db", db, s.Cout, s.ToString());
            if (splits < 0) throw new KernelException(Op, $"splits must be >= 0, got {splits}");
            int columns = s.Cin * s.KH * s.KW, depth = s.N * s.OutH * s.OutW;
            int tiles = DivUp(columns, Tile) * DivUp(s.Cout, Tile);
            if (splits == 0)
            {
                int wanted = DivUp(GroupsPerMultiprocessor * _accelerator.NumMultiprocessors, tiles);
                splits = Math.Clamp(wanted, 1, DivUp(depth, MinSplitDepth));
            }
            splits = Math.Min(splits, _accelerator.MaxGridSize.Z);
            // Whole slices per split, then drop splits left empty by the rounding.
            int splitDepth = DivUp(DivUp(depth, Math.Min(splits, depth)), SliceDepth) * SliceDepth;
            splits = DivUp(depth, splitDepth);
            int weights = (int)s.WeightLength, splitStride = weights + s.Cout;
            if ((long)splits * splitStride > int.MaxValue)
                throw new KernelException(Op, $"{splits} split-K partials of {splitStride} values exceed {int.MaxValue} elements, {s}");
            int hasBias = db.Length > 0 ? 1 : 0;
            var grid = new Index3D(DivUp(columns, Tile), DivUp(s.Cout, Tile), splits);
            var config = new KernelConfig(grid, new Index3D(GroupSize, 1, 1));
            if (splits == 1)
            {
                _backwardWeight(stream, config, s, x, dy, dw, db, hasBias, splitDepth, 0);
                return;
            }
            var partial = _scratch.Get(stream, (long)splits * splitStride);
            _backwardWeight(stream, config, s, x, dy, partial, partial.SubView(weights), hasBias, splitDepth, splitStride);
            _sumSplits(stream, weights + hasBias * s.Cout, partial, splits, splitStride, weights, dw, db);
        }

        /// <summary>Frees the split-K scratch buffer.</summary>
        public void Dispose() => _scratch.Dispose();

        // The kernels index with 32-bit integers: Conv2dShape.Validate bounds every tensor, and the im2col
        // matrix, by Array.MaxLength, which is below int.MaxValue.
        private static void Validate(Conv2dShape s) => s.Validate();
    }
}

/// <summary>
/// Per-column gather information of a conv GEMM, precomputed once per thread: whether the column exists, an
/// image or channel offset, and two spatial coordinates (their meaning depends on the pass).
/// </summary>
internal readonly struct PixelOrigin(bool valid, int image, int ih, int iw)
{
    /// <summary>Whether the column lies inside the GEMM.</summary>
    public bool Valid { get; } = valid;

    /// <summary>Image index or element offset, per pass.</summary>
    public int Image { get; } = image;

    /// <summary>Row coordinate, per pass.</summary>
    public int Ih { get; } = ih;

    /// <summary>Column coordinate, per pass.</summary>
    public int Iw { get; } = iw;

    /// <summary>
    /// Forward column col = (n, oh, ow): the offset n Cin H W of image n and the input corner
    /// (oh S - pad, ow S - pad) of the receptive field.
    /// </summary>
    public static PixelOrigin Of(int col, Conv2dShape s, int plane, int outW, int columns)
    {
        bool valid = col < columns;
        int n = valid ? col / plane : 0, p = valid ? col - n * plane : 0, oh = p / outW, ow = p - oh * outW;
        return new PixelOrigin(valid, n * s.Cin * s.H * s.W, oh * s.Stride - s.Pad, ow * s.Stride - s.Pad);
    }
}

/// <summary>Four <see cref="PixelOrigin"/> held in registers, one per column a thread loads.</summary>
internal readonly struct Origins4(PixelOrigin o0, PixelOrigin o1, PixelOrigin o2, PixelOrigin o3)
{
    private readonly PixelOrigin _o0 = o0, _o1 = o1, _o2 = o2, _o3 = o3;

    /// <summary>Origin <paramref name="r"/> (0 to 3).</summary>
    public PixelOrigin Get(int r) => r == 0 ? _o0 : r == 1 ? _o1 : r == 2 ? _o2 : _o3;
}
