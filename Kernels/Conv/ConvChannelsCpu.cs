using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// Direct forward convolution with the output channels in vectors: yᵀ[p, co] = Σ_tap G[tap + pix(p)] w[co, tap]
/// over the valid output pixels p only, input pixels broadcast and weights loaded as vectors of output channels
/// (<see cref="ConvMicroKernels.Reduction{S, TV, TJ, TCV}"/> with the roles of its taps and pixels swapped: its
/// J "taps" are output pixels, its reduction runs over the kernel taps). Unlike <see cref="ConvDirectCpu"/>'s
/// positions in vectors, no position of the grid is computed and dropped (for a stride-2 3x3 convolution of a
/// 16x16 image that is 1 column in 9), at the price of transposing each block of yᵀ back to NCHW. Shapes are
/// checked by the caller; outputs must not overlap inputs.
/// </summary>
internal static unsafe class ConvChannelsCpu
{
    /// <summary>Work items per thread wanted when images alone do not share out evenly.</summary>
    private const int ItemsPerThread = 4;

    /// <summary>Output pixels per strip (whole micro-tiles): the strip's yᵀ block stays in L1/L2.</summary>
    private const int StripPixels = 96;

    /// <summary>Floats of the grid slice one block of taps reads (half of a 32 KiB L1).</summary>
    private const int SliceFloats = 4096;

    /// <summary>Margin by which <see cref="Prefer"/> wants this path's work below the positions-in-vectors path's.</summary>
    private const double PreferMargin = 1.08;

    /// <summary>
    /// True when this path does less padded work than <see cref="ConvDirectCpu"/>'s forward by
    /// <see cref="PreferMargin"/>: that one computes Wq = OutW + (KW - 1) div S positions per output row of OutW
    /// (measured here on K4, 9 for 8: this path about 8% faster), this one rounds Cout up to whole vector tiles.
    /// </summary>
    public static bool Prefer(in Conv2dShape s)
    {
        int l = ConvIsaChoice.Path switch { ConvIsa.Avx512 => 16, ConvIsa.Avx2 => 8, _ => 4 };
        int coTile = s.Cout <= l ? l : 2 * l;
        double direct = (double)(s.OutW + (s.KW - 1) / s.Stride) / s.OutW;
        double channels = (double)((s.Cout + coTile - 1) / coTile * coTile) / s.Cout;
        return direct > PreferMargin * channels;
    }

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

    private static void Forward<S, TV>(Conv2dShape s, float* x, float* w, float* bias, float* y) where S : IConvSimd<TV> where TV : struct
    {
        int L = S.Count, st = s.Stride, outH = s.OutH, outW = s.OutW, pixels = outH * outW;
        var grid = new ConvGrid(s.Cin, s.H, s.W, st, s.Pad, s.Pad, outH + (s.KH - 1) / st, outW + (s.KW - 1) / st, 0);
        int kernelTaps = s.KH * s.KW, taps = s.Cin * kernelTaps;
        int coTile = s.Cout <= L ? L : S.ReductionVectors * L, coTiles = (s.Cout + coTile - 1) / coTile;
        int J = S.ReductionTaps;

        // Tables: tap offsets, then pixel offsets; weights packed [co tile][tap][coTile], zero past Cout.
        int* tapOffsets = (int*)ConvScratch.Get(ConvScratchSlot.Tables, taps + 16 + pixels);
        int* pixelOffsets = tapOffsets + (taps + 15) / 16 * 16;
        int k = 0;
        for (int ci = 0; ci < s.Cin; ci++)
            for (int kh = 0; kh < s.KH; kh++)
                for (int kw = 0; kw < s.KW; kw++)
                    tapOffsets[k++] = grid.TapOffset(ci, kh, kw);
        for (int p = 0; p < pixels; p++) pixelOffsets[p] = p / outW * grid.Wq + p % outW;
        float* packed = ConvScratch.Get(ConvScratchSlot.Weights, (long)coTiles * taps * coTile);
        for (int t = 0; t < coTiles; t++)
            for (int tap = 0; tap < taps; tap++)
                for (int c = 0; c < coTile; c++)
                {
                    int co = t * coTile + c;
                    packed[((long)t * taps + tap) * coTile + c] = co < s.Cout ? w[(long)co * taps + tap] : 0f;
                }

        // Taps per block: whole input channels whose rows under one strip fit SliceFloats.
        int stripRows = Math.Min(grid.Hq, (StripPixels + outW - 1) / outW + 1 + (s.KH - 1) / st);
        long channelSlice = (long)st * st * stripRows * grid.Wq;
        int block = (int)Math.Clamp(SliceFloats / channelSlice, 1, s.Cin) * kernelTaps;
        int strips = (pixels + StripPixels - 1) / StripPixels;
        long inImage = (long)s.Cin * s.H * s.W, outImage = (long)s.Cout * pixels;
        var inRange = new PointerRange<float>(x, s.N * inImage, "x");
        var outRange = new PointerRange<float>(y, s.N * outImage, "y");
        long bufferFloats = (long)coTiles * coTile * StripPixels;

        // One strip: pixels [p0, p1) and output tiles [t0, t1) of one image.
        void Strip(float* g, in PointerRange<float> gridRange, float* buffer, long n, int p0, int p1, int t0, int t1)
        {
            int count = p1 - p0;
            new Span<float>(buffer, (int)((t1 - t0) * coTile * count)).Clear();
            if (PointerChecks.Enabled)
            {
                int lo = int.MaxValue, hi = int.MinValue;
                for (int p = p0; p < p1; p++) { lo = Math.Min(lo, pixelOffsets[p]); hi = Math.Max(hi, pixelOffsets[p]); }
                for (int tap = 0; tap < taps; tap++) hi = Math.Max(hi, pixelOffsets[p1 - 1] + tapOffsets[tap]);
                gridRange.Check("Conv2d direct (channels) product", g + lo, hi - lo + 1);
            }
            for (int k0 = 0; k0 < taps; k0 += block)
            {
                int k1 = Math.Min(taps, k0 + block);
                for (int t = t0; t < t1; t++)
                {
                    float* weights = packed + ((long)t * taps + k0) * coTile;
                    float* acc = buffer + (long)(t - t0) * coTile * count;
                    for (int p = p0; p < p1; p += J)
                        ReductionPlan.ReductionAny<S, TV>(Math.Min(J, p1 - p), coTile / L, k1 - k0, tapOffsets + k0, weights, coTile, g, pixelOffsets + p,
                            acc + (long)(p - p0) * coTile);
                }
            }
            // yᵀ block [pixel][coTile] back to y[co][pixel], plus the bias.
            for (int t = t0; t < t1; t++)
            {
                int co0 = t * coTile, rows = Math.Min(coTile, s.Cout - co0);
                float* dst = y + n * outImage + (long)co0 * pixels + p0;
                outRange.CheckRows("Conv2d direct (channels) store", dst, rows, count, pixels);
                ConvTranspose.Transpose(buffer + (long)(t - t0) * coTile * count, coTile, count, rows, dst, pixels);
                if (bias != null)
                    for (int r = 0; r < rows; r++) AddScalar<S, TV>(dst + (long)r * pixels, count, bias[co0 + r]);
            }
        }

        int threads = CpuParallel.Threads;
        bool wholeImages = threads == 1 || (s.N >= threads && (s.N % threads == 0 || s.N >= ItemsPerThread * threads));
        if (wholeImages)
        {
            CpuParallel.For(s.N, 1, (n0, n1) =>
            {
                float* g = ConvScratch.Get(ConvScratchSlot.Grid, grid.Floats);
                float* buffer = ConvScratch.Get(ConvScratchSlot.Output, bufferFloats);
                var gridRange = new PointerRange<float>(g, grid.Floats, "conv grid");
                for (long n = n0; n < n1; n++)
                {
                    inRange.Check("Conv2d grid fill", x + n * inImage, inImage);
                    grid.Fill<S, TV>(x + n * inImage, g, 0, s.Cin, gridRange);
                    for (int p0 = 0; p0 < pixels; p0 += StripPixels)
                        Strip(g, gridRange, buffer, n, p0, Math.Min(pixels, p0 + StripPixels), 0, coTiles);
                }
            });
            return;
        }
        float* grids = ConvScratch.Get(ConvScratchSlot.SharedGrid, (long)s.N * grid.Floats);
        var gridsRange = new PointerRange<float>(grids, (long)s.N * grid.Floats, "conv grids");
        CpuParallel.For(s.N, 1, (n0, n1) =>
        {
            for (long n = n0; n < n1; n++)
            {
                inRange.Check("Conv2d grid fill", x + n * inImage, inImage);
                grid.Fill<S, TV>(x + n * inImage, grids + n * grid.Floats, 0, s.Cin, gridsRange);
            }
        });
        long perGroup = (long)s.N * strips;
        int groups = (int)Math.Clamp((ItemsPerThread * threads + perGroup - 1) / perGroup, 1, coTiles);
        CpuParallel.For(perGroup * groups, 1, (i0, i1) =>
        {
            float* buffer = ConvScratch.Get(ConvScratchSlot.Output, bufferFloats);
            for (long i = i0; i < i1; i++)
            {
                int group = (int)(i % groups), strip = (int)(i / groups % strips);
                long n = i / groups / strips;
                int t0 = (int)((long)coTiles * group / groups), t1 = (int)((long)coTiles * (group + 1) / groups);
                int p0 = strip * StripPixels;
                if (t1 > t0) Strip(grids + n * grid.Floats, gridsRange, buffer, n, p0, Math.Min(pixels, p0 + StripPixels), t0, t1);
            }
        });
    }

    private static void AddScalar<S, TV>(float* p, int n, float value) where S : IConvSimd<TV> where TV : struct
    {
        var v = S.Create(value);
        int i = 0;
        for (; i <= n - S.Count; i += S.Count) S.Store(S.Add(S.Load(p + i), v), p + i);
        for (; i < n; i++) p[i] += value;
    }
}
