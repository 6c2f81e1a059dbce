using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// 3x3, stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray 2016, "Fast Algorithms
/// for Convolutional Neural Networks"): each 2x2 output tile is Y = Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A with d the
/// 4x4 input tile, so the 36 multiply-adds per tile, input and output channel of the direct convolution become
/// 16, done as 16 independent products M[ξ] = U[ξ] · V[ξ] over the channels (ξ the 4x4 transform-domain
/// position). With
/// <code>
/// Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1],  Aᵀ = [1 1 1 0; 0 1 -1 -1]
/// </code>
/// every transform coefficient is 0, ±1 or ±½, so the rounding error stays at the level of the direct
/// convolution's (the tests bound it by the absolute-value Winograd sum, |Aᵀ| [Σ |G||g||Gᵀ| ⊙ |Bᵀ||d||B|] |A|).
/// <list type="bullet">
/// <item>Forward: the input tiles are read from a <see cref="ConvGrid"/> of stride 2 (the 4x4 tile at output
/// tile (i, j) is G[ci, r mod 2, c mod 2, i + r div 2, j + c div 2]), so consecutive tiles j of a row are
/// consecutive floats and the input transform runs in vectors of tiles; the products are
/// <see cref="ConvMicroKernels.Product{S, TV, TC, TV4}"/> with taps = input channels.</item>
/// <item>Input gradient: the forward of dy with the kernel flipped and its channel axes swapped, padded by
/// 2 - pad.</item>
/// <item>Weight gradient: with M the transform-domain sum, ∂L/∂M = A dY Aᵀ, ∂L/∂U[co, ci] = Σ_tiles ∂L/∂M[co] ⊙
/// V[ci], and dw = Gᵀ (∂L/∂U) G: 16 reductions over all tiles of all images
/// (<see cref="ConvMicroKernels.Reduction{S, TV, TJ, TCV}"/>). Each thread owns whole entries of ∂L/∂U and sums
/// the images in order, so dw and db do not depend on the thread count.</item>
/// </list>
/// </summary>
internal static unsafe class ConvWinogradCpu
{
    /// <summary>Transform-domain positions ξ of F(2x2, 3x3): 4 x 4.</summary>
    private const int Xi = 16;

    /// <summary>Work items per thread wanted when images alone do not share out evenly.</summary>
    private const int ItemsPerThread = 4;

    /// <summary>
    /// Floats of a strip's transformed input and products together (the strip stays in L2; 2^15 to 2^17 measured
    /// alike here on K3). A tuning knob read on every call, set only by the conv kernel lab (<c>cfg=wstrip=N</c>).
    /// </summary>
    internal static int StripFloats = 1 << 15;

    /// <summary>True for the shapes F(2x2, 3x3) computes: 3x3 kernels, stride 1, pad at most 2 (so dx's is 2 - pad ≥ 0).</summary>
    public static bool Supports(in Conv2dShape s) => s.KH == 3 && s.KW == 3 && s.Stride == 1 && s.Pad <= 2;

    /// <summary>y = conv2d(x, w) + bias (bias null for none).</summary>
    public static void Forward(Conv2dShape s, float* x, float* w, float* bias, float* y)
    {
        var c = new Convolution(s.N, s.Cin, s.H, s.W, s.Cout, s.Pad, s.OutH, s.OutW);
        switch (ConvIsaChoice.Path)
        {
            case ConvIsa.Avx512: c.Run<ConvSimd512, Vector512<float>>(x, w, false, bias, y); break;
            case ConvIsa.Avx2: c.Run<ConvSimd256, Vector256<float>>(x, w, false, bias, y); break;
            default: c.Run<ConvSimd128, Vector128<float>>(x, w, false, bias, y); break;
        }
    }

    /// <summary>dx = ∂L/∂x given dy (overwritten): the convolution of dy with the flipped, channel-swapped kernel.</summary>
    public static void BackwardInput(Conv2dShape s, float* dy, float* w, float* dx)
    {
        var c = new Convolution(s.N, s.Cout, s.OutH, s.OutW, s.Cin, 2 - s.Pad, s.H, s.W);
        switch (ConvIsaChoice.Path)
        {
            case ConvIsa.Avx512: c.Run<ConvSimd512, Vector512<float>>(dy, w, true, null, dx); break;
            case ConvIsa.Avx2: c.Run<ConvSimd256, Vector256<float>>(dy, w, true, null, dx); break;
            default: c.Run<ConvSimd128, Vector128<float>>(dy, w, true, null, dx); break;
        }
    }

    /// <summary>dw and db (db null to skip it), both overwritten.</summary>
    public static void BackwardWeight(Conv2dShape s, float* x, float* dy, float* dw, float* db)
    {
        switch (ConvIsaChoice.Path)
        {
            case ConvIsa.Avx512: WeightGradient<ConvSimd512, Vector512<float>>(s, x, dy, dw, db); break;
            case ConvIsa.Avx2: WeightGradient<ConvSimd256, Vector256<float>>(s, x, dy, dw, db); break;
            default: WeightGradient<ConvSimd128, Vector128<float>>(s, x, dy, dw, db); break;
        }
    }

    /// <summary>
    /// The tiling of one F(2x2, 3x3) convolution: Th x Tw output tiles, read from a stride-2 grid of the input
    /// whose phase planes are (Th + 1) x (Tw + 1); tile (i, j) is position q = i Wq + j (the positions j = Tw of
    /// each row are computed and dropped).
    /// </summary>
    private readonly struct Tiling
    {
        public readonly int Th, Tw, Wq, Positions;
        public readonly ConvGrid Grid;

        /// <summary>Positions rounded up to whole micro-tiles: the strips cover [0, Padded).</summary>
        public readonly int Padded;

        public Tiling(int channels, int h, int w, int pad, int outH, int outW, int unit)
        {
            Th = (outH + 1) / 2;
            Tw = (outW + 1) / 2;
            Wq = Tw + 1;
            Positions = Th * Wq;
            Padded = (Positions + unit - 1) / unit * unit;
            // The last micro-tile reads past the last plane by its rounding plus one row and one column of the tile.
            Grid = new ConvGrid(channels, h, w, 2, pad, pad, Th + 1, Wq, Padded - Positions + Wq + 1);
        }
    }

    /// <summary>A forward F(2x2, 3x3) convolution of N images: input [N, Cin, H, W] to output [N, Cout, OutH, OutW].</summary>
    private readonly struct Convolution(int n, int cin, int h, int w, int cout, int pad, int outH, int outW)
    {
        /// <summary>
        /// Runs it with the kernel w[Cout][Cin][3][3], or, when <paramref name="flipped"/>, the kernel
        /// w'[co][ci][kh][kw] = w[ci][co][2 - kh][2 - kw] read from w[Cin'][Cout'][3][3] (the input gradient).
        /// </summary>
        public void Run<S, TV>(float* input, float* weights, bool flipped, float* bias, float* output)
            where S : IConvSimd<TV> where TV : struct
        {
            int L = S.Count, rows = S.ProductRows, unit = S.ProductVectors * L;
            var tiling = new Tiling(cin, h, w, pad, outH, outW, unit);
            // Strip: whole micro-tiles of positions, as many as keep the strip's V and M blocks within StripFloats.
            int units = Math.Max(1, StripFloats / (Xi * (cin + cout) * unit));
            int stripLength = Math.Min(units * unit, tiling.Padded);

            // U[ξ] = G g Gᵀ, packed for the products: tiles of `rows` output channels, input channel by input channel.
            long uFloats = (long)Xi * cout * cin;
            float* u = ConvScratch.Get(ConvScratchSlot.Weights, uFloats);
            TransformWeights(weights, flipped, cin, cout, rows, u);
            int* offsets = (int*)ConvScratch.Get(ConvScratchSlot.Tables, cin);
            for (int ci = 0; ci < cin; ci++) offsets[ci] = ci * stripLength;

            var conv = this;
            long inImage = (long)cin * h * w, outImage = (long)cout * outH * outW;
            var inRange = new PointerRange<float>(input, n * inImage, "conv input");
            var outRange = new PointerRange<float>(output, n * outImage, "conv output");
            int strips = (tiling.Padded + stripLength - 1) / stripLength;
            long transformFloats = (long)Xi * (cin + cout) * stripLength + 4L * stripLength;
            int threads = CpuParallel.Threads;
            bool wholeImages = threads == 1 || (n >= threads && (n % threads == 0 || n >= ItemsPerThread * threads));
            if (wholeImages)
            {
                CpuParallel.For(n, 1, (n0, n1) =>
                {
                    float* grid = ConvScratch.Get(ConvScratchSlot.Grid, tiling.Grid.Floats);
                    float* work = ConvScratch.Get(ConvScratchSlot.Transform, transformFloats);
                    var gridRange = new PointerRange<float>(grid, tiling.Grid.Floats, "Winograd grid");
                    for (long i = n0; i < n1; i++)
                    {
                        inRange.Check("Conv2d Winograd grid fill", input + i * inImage, inImage);
                        tiling.Grid.Fill<S, TV>(input + i * inImage, grid, 0, tiling.Grid.Channels, gridRange);
                        for (int strip = 0; strip < strips; strip++)
                            conv.Strip<S, TV>(tiling, grid, gridRange, strip * stripLength, stripLength, u, offsets, work, bias, output + i * outImage, outRange);
                    }
                });
                return;
            }
            float* grids = ConvScratch.Get(ConvScratchSlot.SharedGrid, (long)n * tiling.Grid.Floats);
            var gridsRange = new PointerRange<float>(grids, (long)n * tiling.Grid.Floats, "Winograd grids");
            CpuParallel.For(n, 1, (n0, n1) =>
            {
                for (long i = n0; i < n1; i++)
                {
                    inRange.Check("Conv2d Winograd grid fill", input + i * inImage, inImage);
                    tiling.Grid.Fill<S, TV>(input + i * inImage, grids + i * tiling.Grid.Floats, 0, tiling.Grid.Channels, gridsRange);
                }
            });
            CpuParallel.For((long)n * strips, 1, (i0, i1) =>
            {
                float* work = ConvScratch.Get(ConvScratchSlot.Transform, transformFloats);
                for (long i = i0; i < i1; i++)
                {
                    long image = i / strips;
                    int strip = (int)(i % strips);
                    conv.Strip<S, TV>(tiling, grids + image * tiling.Grid.Floats, gridsRange, strip * stripLength, stripLength, u, offsets, work, bias,
                        output + image * outImage, outRange);
                }
            });
        }

        /// <summary>
        /// Positions [q0, q0 + stride) of one image (fewer for the last strip): input transform, 16 products,
        /// output transform and scatter. V and M are laid out [ξ][channel][stride].
        /// </summary>
        private void Strip<S, TV>(in Tiling tiling, float* grid, in PointerRange<float> gridRange, int q0, int stride, float* u, int* offsets,
            float* work, float* bias, float* outImage, in PointerRange<float> outRange)
            where S : IConvSimd<TV> where TV : struct
        {
            int L = S.Count, rows = S.ProductRows, maxVectors = S.ProductVectors;
            int length = Math.Min(stride, tiling.Padded - q0);
            float* v = work, m = work + (long)Xi * cin * stride, yRows = m + (long)Xi * cout * stride;
            var g = tiling.Grid;
            gridRange.Check("Conv2d Winograd input transform", grid + q0, (long)(cin - 1) * g.ChannelFloats + 3L * g.PhaseFloats + g.Wq + 1 + length);
            for (int ci = 0; ci < cin; ci++)
                InputTransform<S, TV>(grid + (long)ci * g.ChannelFloats + q0, g.PhaseFloats, g.Wq, v + (long)ci * stride, (long)cin * stride, length);
            for (int xi = 0; xi < Xi; xi++)
            {
                float* uXi = u + (long)xi * cout * cin, vXi = v + (long)xi * cin * stride, mXi = m + (long)xi * cout * stride;
                for (int co = 0; co < cout; co += rows)
                {
                    int r = Math.Min(rows, cout - co);
                    for (int p = 0; p < length; p += maxVectors * L)
                        ProductPlan.ProductAny<S, TV>(r, maxVectors, cin, offsets, uXi + (long)co * cin, vXi + p, mXi + (long)co * stride + p, stride, false);
                }
            }
            int q1 = Math.Min(q0 + length, tiling.Positions);
            for (int co = 0; co < cout; co++)
            {
                float b = bias == null ? 0f : bias[co];
                OutputTransform<S, TV>(m + (long)co * stride, (long)cout * stride, length, b, yRows, yRows + 2 * stride);
                float* plane = outImage + (long)co * outH * outW;
                // Tile row i holds positions [i Wq, i Wq + Tw): output rows 2i and 2i + 1, columns 2j and 2j + 1.
                for (int i = q0 / tiling.Wq; i * tiling.Wq < q1; i++)
                {
                    int from = Math.Max(q0 - i * tiling.Wq, 0), to = Math.Min(q1 - i * tiling.Wq, tiling.Tw);
                    if (to <= from) continue;
                    int c0 = 2 * from, c1 = Math.Min(2 * to, outW);
                    for (int r = 0; r < 2 && 2 * i + r < outH; r++)
                    {
                        float* src = yRows + r * 2 * stride + 2 * (i * tiling.Wq - q0);
                        float* dst = plane + (long)(2 * i + r) * outW;
                        outRange.Check("Conv2d Winograd output", dst + c0, c1 - c0);
                        Copy<S, TV>(src + c0, dst + c0, c1 - c0);
                    }
                }
            }
        }
    }

    /// <summary>
    /// V = Bᵀ d B for the tiles at <paramref name="grid"/> (one channel of a stride-2 grid, first position of the
    /// strip): row phase r mod 2 is <paramref name="phase"/> · 2 (r mod 2) floats on, column phase c mod 2 is
    /// <paramref name="phase"/> (c mod 2) on, and r div 2 (c div 2) a row (a column) on. V[ξ] goes to
    /// v + ξ <paramref name="xiStride"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InputTransform<S, TV>(float* grid, int phase, int wq, float* v, long xiStride, int length)
        where S : IConvSimd<TV> where TV : struct
    {
        float* e0 = grid, o0 = grid + phase, e1 = grid + 2 * phase, o1 = grid + 3 * phase;
        for (int p = 0; p < length; p += S.Count)
        {
            // d[r][c]: row r from phase (r mod 2), row offset (r div 2) wq; column c likewise.
            TV d00 = S.Load(e0 + p), d01 = S.Load(o0 + p), d02 = S.Load(e0 + p + 1), d03 = S.Load(o0 + p + 1);
            TV d10 = S.Load(e1 + p), d11 = S.Load(o1 + p), d12 = S.Load(e1 + p + 1), d13 = S.Load(o1 + p + 1);
            TV d20 = S.Load(e0 + p + wq), d21 = S.Load(o0 + p + wq), d22 = S.Load(e0 + p + wq + 1), d23 = S.Load(o0 + p + wq + 1);
            TV d30 = S.Load(e1 + p + wq), d31 = S.Load(o1 + p + wq), d32 = S.Load(e1 + p + wq + 1), d33 = S.Load(o1 + p + wq + 1);
            // Rows: s0 = d0 - d2, s1 = d1 + d2, s2 = d2 - d1, s3 = d1 - d3.
            TV s00 = S.Subtract(d00, d20), s01 = S.Subtract(d01, d21), s02 = S.Subtract(d02, d22), s03 = S.Subtract(d03, d23);
            TV s10 = S.Add(d10, d20), s11 = S.Add(d11, d21), s12 = S.Add(d12, d22), s13 = S.Add(d13, d23);
            TV s20 = S.Subtract(d20, d10), s21 = S.Subtract(d21, d11), s22 = S.Subtract(d22, d12), s23 = S.Subtract(d23, d13);
            TV s30 = S.Subtract(d10, d30), s31 = S.Subtract(d11, d31), s32 = S.Subtract(d12, d32), s33 = S.Subtract(d13, d33);
            StoreColumns<S, TV>(s00, s01, s02, s03, v + p, xiStride);
            StoreColumns<S, TV>(s10, s11, s12, s13, v + 4 * xiStride + p, xiStride);
            StoreColumns<S, TV>(s20, s21, s22, s23, v + 8 * xiStride + p, xiStride);
            StoreColumns<S, TV>(s30, s31, s32, s33, v + 12 * xiStride + p, xiStride);
        }
    }

    /// <summary>The column half of Bᵀ d B for one row a: V[a][0..3] = (s0 - s2, s1 + s2, s2 - s1, s1 - s3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreColumns<S, TV>(TV s0, TV s1, TV s2, TV s3, float* v, long xiStride) where S : IConvSimd<TV> where TV : struct
    {
        S.Store(S.Subtract(s0, s2), v);
        S.Store(S.Add(s1, s2), v + xiStride);
        S.Store(S.Subtract(s2, s1), v + 2 * xiStride);
        S.Store(S.Subtract(s1, s3), v + 3 * xiStride);
    }

    /// <summary>
    /// Y = Aᵀ M A + bias for the tiles of one output channel: M[ξ] at m + ξ <paramref name="xiStride"/>; output row
    /// r of the tiles goes to <paramref name="row0"/> (<paramref name="row1"/>) with the two columns of each tile
    /// interleaved, tile t at floats 2t and 2t + 1.
    /// </summary>
    private static void OutputTransform<S, TV>(float* m, long xiStride, int length, float bias, float* row0, float* row1)
        where S : IConvSimd<TV> where TV : struct
    {
        TV vb = S.Create(bias);
        for (int p = 0; p < length; p += S.Count)
        {
            // Aᵀ rows: t0 = M0 + M1 + M2, t1 = M1 - M2 - M3 (over the row index a, per column b).
            TV t00 = Row0<S, TV>(m + p, 0, xiStride), t01 = Row0<S, TV>(m + p, 1, xiStride), t02 = Row0<S, TV>(m + p, 2, xiStride), t03 = Row0<S, TV>(m + p, 3, xiStride);
            TV t10 = Row1<S, TV>(m + p, 0, xiStride), t11 = Row1<S, TV>(m + p, 1, xiStride), t12 = Row1<S, TV>(m + p, 2, xiStride), t13 = Row1<S, TV>(m + p, 3, xiStride);
            TV y00 = S.Add(S.Add(S.Add(t00, t01), t02), vb), y01 = S.Add(S.Subtract(S.Subtract(t01, t02), t03), vb);
            TV y10 = S.Add(S.Add(S.Add(t10, t11), t12), vb), y11 = S.Add(S.Subtract(S.Subtract(t11, t12), t13), vb);
            S.StoreInterleave(y00, y01, row0 + 2 * p);
            S.StoreInterleave(y10, y11, row1 + 2 * p);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Row0<S, TV>(float* m, int b, long xiStride) where S : IConvSimd<TV> where TV : struct
        => S.Add(S.Add(S.Load(m + b * xiStride), S.Load(m + (4 + b) * xiStride)), S.Load(m + (8 + b) * xiStride));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV Row1<S, TV>(float* m, int b, long xiStride) where S : IConvSimd<TV> where TV : struct
        => S.Subtract(S.Subtract(S.Load(m + (4 + b) * xiStride), S.Load(m + (8 + b) * xiStride)), S.Load(m + (12 + b) * xiStride));

    private static void Copy<S, TV>(float* src, float* dst, int n) where S : IConvSimd<TV> where TV : struct
    {
        int i = 0;
        for (; i <= n - S.Count; i += S.Count) S.Store(S.Load(src + i), dst + i);
        for (; i < n; i++) dst[i] = src[i];
    }

    /// <summary>
    /// U[ξ] = G g Gᵀ for every (output, input) channel pair, in double and rounded once, packed as
    /// u[ξ][tile of `rows` output channels][ci][row]. g is w[co][ci] or, flipped, w[ci][co] turned by 180°.
    /// </summary>
    private static void TransformWeights(float* w, bool flipped, int cin, int cout, int rows, float* u)
    {
        var uRange = new PointerRange<float>(u, (long)Xi * cout * cin, "Winograd U");
        Span<double> g = stackalloc double[9];
        Span<double> gg = stackalloc double[12];
        Span<double> t = stackalloc double[4];
        for (int co = 0; co < cout; co++)
        {
            int tile0 = co / rows * rows, tileRows = Math.Min(rows, cout - tile0), r = co - tile0;
            for (int ci = 0; ci < cin; ci++)
            {
                uRange.CheckRows("Conv2d Winograd weight transform", u + (long)tile0 * cin + ci * tileRows + r, Xi, 1, (long)cout * cin);
                for (int k = 0; k < 9; k++)
                    g[k] = flipped ? w[((long)ci * cout + co) * 9 + 8 - k] : w[((long)co * cin + ci) * 9 + k];
                // G g: 4 x 3, rows (g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2) of the kernel's rows.
                for (int c = 0; c < 3; c++)
                {
                    double a = g[c], b = g[3 + c], d = g[6 + c];
                    gg[c] = a;
                    gg[3 + c] = 0.5 * (a + b + d);
                    gg[6 + c] = 0.5 * (a - b + d);
                    gg[9 + c] = d;
                }
                for (int row = 0; row < 4; row++)
                {
                    double a = gg[row * 3], b = gg[row * 3 + 1], d = gg[row * 3 + 2];
                    (t[0], t[1], t[2], t[3]) = (a, 0.5 * (a + b + d), 0.5 * (a - b + d), d);
                    for (int col = 0; col < 4; col++)
                        u[((long)(row * 4 + col) * cout + tile0) * cin + ci * tileRows + r] = (float)t[col];
                }
            }
        }
    }

    /// <summary>
    /// Weight gradient, in two passes: (1) ∂L/∂U[ξ][co][ci] = Σ_{n, tiles} ∂L/∂M ⊙ V, split by (group of input
    /// channels, tile of output channels), each thread filling the grid of its input channels and transposing the
    /// dy of its output channels (dyᵀ[pixel][co], db summed on the way) image by image, then per strip of tiles and
    /// per row a of ξ = 4a + b transforming both and running the reductions; (2) dw = Gᵀ (∂L/∂U) G.
    /// </summary>
    private static void WeightGradient<S, TV>(Conv2dShape s, float* x, float* dy, float* dw, float* db)
        where S : IConvSimd<TV> where TV : struct
    {
        int L = S.Count, outH = s.OutH, outW = s.OutW, pixels = outH * outW, cin = s.Cin, cout = s.Cout;
        var tiling = new Tiling(cin, s.H, s.W, s.Pad, outH, outW, L);
        int coTile = cout <= L ? L : S.ReductionVectors * L;
        int coTiles = (cout + coTile - 1) / coTile;
        int threads = CpuParallel.Threads;
        int groups = coTiles >= threads ? 1 : Math.Min(cin, (threads + coTiles - 1) / coTiles);
        int maxGroup = (cin + groups - 1) / groups;
        int stripLength = Math.Clamp(StripFloats / (4 * (maxGroup + coTiles * coTile)) / L * L, L, tiling.Padded);

        float* dU = ConvScratch.Get(ConvScratchSlot.Accumulators, (long)Xi * coTiles * coTile * cin);
        int* tables = (int*)ConvScratch.Get(ConvScratchSlot.Tables, cin + stripLength + 16);
        int* tapOffsets = tables, pix = tables + (cin + 15) / 16 * 16;
        for (int ci = 0; ci < cin; ci++) tapOffsets[ci] = ci * stripLength;
        for (int p = 0; p < stripLength; p++) pix[p] = p;
        long imageIn = (long)cin * s.H * s.W, imageOut = (long)cout * pixels;
        var xRange = new PointerRange<float>(x, s.N * imageIn, "x");
        var dyRange = new PointerRange<float>(dy, s.N * imageOut, "dy");
        var dURange = new PointerRange<float>(dU, (long)Xi * coTiles * coTile * cin, "dU");
        int J = S.ReductionTaps;

        // (1) Items group-major: a thread's range is a run of output tiles in each of one or more groups.
        CpuParallel.For((long)groups * coTiles, 1, (i0, i1) =>
        {
            var g = tiling.Grid;
            float* grid = ConvScratch.Get(ConvScratchSlot.Grid, g.Floats);
            long dyTFloats = (long)pixels * coTiles * coTile;
            float* dyT = ConvScratch.Get(ConvScratchSlot.Output, dyTFloats);
            float* work = ConvScratch.Get(ConvScratchSlot.Transform, 4L * (maxGroup + coTiles * coTile) * stripLength);
            var gridRange = new PointerRange<float>(grid, g.Floats, "Winograd grid");
            var dyTRange = new PointerRange<float>(dyT, dyTFloats, "dyT");
            Span<double> biasSums = db == null ? default : new double[coTiles * coTile];
            for (int group = (int)(i0 / coTiles); group <= (int)((i1 - 1) / coTiles); group++)
            {
                int t0 = group == i0 / coTiles ? (int)(i0 % coTiles) : 0;
                int t1 = group == (i1 - 1) / coTiles ? (int)((i1 - 1) % coTiles) + 1 : coTiles;
                int ci0 = (int)((long)cin * group / groups), ci1 = (int)((long)cin * (group + 1) / groups), channels = ci1 - ci0;
                int co0 = t0 * coTile, co1 = Math.Min(cout, t1 * coTile), width = (t1 - t0) * coTile;
                bool sums = db != null && group == 0;
                float* v = work, dm = work + 4L * channels * stripLength;
                for (int xi = 0; xi < Xi; xi++)
                    for (int t = t0; t < t1; t++)
                        new Span<float>(dU + (((long)xi * coTiles + t) * cin + ci0) * coTile, channels * coTile).Clear();
                // The padded channels of the last tile stay zero in dyᵀ.
                if (co1 - co0 < width)
                    for (int p = 0; p < pixels; p++) new Span<float>(dyT + (long)p * width + (co1 - co0), width - (co1 - co0)).Clear();
                for (int n = 0; n < s.N; n++)
                {
                    xRange.Check("Conv2d Winograd grid fill", x + n * imageIn, imageIn);
                    g.Fill<S, TV>(x + n * imageIn, grid, ci0, ci1, gridRange);
                    float* dyn = dy + ((long)n * cout + co0) * pixels;
                    dyRange.Check("Conv2d Winograd dy transpose", dyn, (long)(co1 - co0) * pixels);
                    dyTRange.CheckRows("Conv2d Winograd dy transpose", dyT, pixels, co1 - co0, width);
                    ConvTranspose.Transpose(dyn, pixels, co1 - co0, pixels, dyT, width);
                    if (sums)
                        for (int c = co0; c < co1; c++)
                            biasSums[c] += TensorPrimitives.Sum(new ReadOnlySpan<float>(dyn + (long)(c - co0) * pixels, pixels));
                    for (int q0 = 0; q0 < tiling.Padded; q0 += stripLength)
                    {
                        int length = Math.Min(stripLength, tiling.Padded - q0);
                        float* g0 = grid + (long)ci0 * g.ChannelFloats + q0;
                        gridRange.Check("Conv2d Winograd input transform", g0, (long)(channels - 1) * g.ChannelFloats + 3L * g.PhaseFloats + g.Wq + 1 + length);
                        for (int a = 0; a < 4; a++)
                        {
                            for (int ci = 0; ci < channels; ci++)
                                InputTransformRow<S, TV>(g0 + (long)ci * g.ChannelFloats, g.PhaseFloats, g.Wq, a, v + (long)ci * stripLength, (long)channels * stripLength, length);
                            OutputGradientTransform<S, TV>(tiling, dyT, width, outH, outW, a, q0, length, width, dm, (long)stripLength * width);
                            for (int b = 0; b < 4; b++)
                            {
                                int xi = 4 * a + b;
                                for (int t = t0; t < t1; t++)
                                {
                                    float* d = dm + (long)b * stripLength * width + (t - t0) * coTile;
                                    for (int c = 0; c < channels; c += J)
                                    {
                                        int j = Math.Min(J, channels - c);
                                        float* acc = dU + (((long)xi * coTiles + t) * cin + ci0 + c) * coTile;
                                        dURange.Check("Conv2d Winograd weight-gradient reduction", acc, (long)j * coTile);
                                        ReductionPlan.ReductionAny<S, TV>(j, coTile / L, length, pix, d, width, v + (long)b * channels * stripLength, tapOffsets + c, acc);
                                    }
                                }
                            }
                        }
                    }
                }
                if (sums)
                    for (int c = co0; c < co1; c++) db[c] = (float)biasSums[c];
            }
        });

        // (2) dw[co, ci] = Gᵀ dU[co, ci] G, with dU[ξ] at dU[ξ][tile][ci][co in tile].
        var dwRange = new PointerRange<float>(dw, s.WeightLength, "dw");
        CpuParallel.For(cout, 1, (c0, c1) =>
        {
            Span<double> u = stackalloc double[Xi];
            Span<double> h = stackalloc double[12];
            for (long co = c0; co < c1; co++)
            {
                long t = co / coTile, c = co % coTile;
                for (int ci = 0; ci < cin; ci++)
                {
                    for (int xi = 0; xi < Xi; xi++) u[xi] = dU[(((long)xi * coTiles + t) * cin + ci) * coTile + c];
                    // Gᵀ rows: (1, ½, ½, 0), (0, ½, -½, 0), (0, ½, ½, 1); first over a (rows of dU), then over b.
                    for (int b = 0; b < 4; b++)
                    {
                        double u0 = u[b], u1 = u[4 + b], u2 = u[8 + b], u3 = u[12 + b];
                        h[b] = u0 + 0.5 * (u1 + u2);
                        h[4 + b] = 0.5 * (u1 - u2);
                        h[8 + b] = 0.5 * (u1 + u2) + u3;
                    }
                    float* dst = dw + (co * cin + ci) * 9;
                    dwRange.Check("Conv2d Winograd dw store", dst, 9);
                    for (int kh = 0; kh < 3; kh++)
                    {
                        double h0 = h[4 * kh], h1 = h[4 * kh + 1], h2 = h[4 * kh + 2], h3 = h[4 * kh + 3];
                        dst[kh * 3] = (float)(h0 + 0.5 * (h1 + h2));
                        dst[kh * 3 + 1] = (float)(0.5 * (h1 - h2));
                        dst[kh * 3 + 2] = (float)(0.5 * (h1 + h2) + h3);
                    }
                }
            }
        });
    }

    /// <summary>Row a of V = Bᵀ d B (the four ξ = 4a + b), to v + b <paramref name="xiStride"/>; see <see cref="InputTransform{S, TV}"/>.</summary>
    private static void InputTransformRow<S, TV>(float* grid, int phase, int wq, int a, float* v, long xiStride, int length)
        where S : IConvSimd<TV> where TV : struct
    {
        // Row a of Bᵀ combines two input rows: (0, 2) as d0 - d2, (1, 2) as d1 + d2, (2, 1) as d2 - d1, (1, 3) as d1 - d3.
        int first = a switch { 0 => 0, 1 => 1, 2 => 2, _ => 1 }, second = a switch { 0 => 2, 1 => 2, 2 => 1, _ => 3 };
        bool add = a == 1;
        float* e = grid + (first & 1) * 2 * phase + (first >> 1) * wq, f = grid + (second & 1) * 2 * phase + (second >> 1) * wq;
        for (int p = 0; p < length; p += S.Count)
        {
            TV d0 = S.Load(e + p), d1 = S.Load(e + phase + p), d2 = S.Load(e + p + 1), d3 = S.Load(e + phase + p + 1);
            TV f0 = S.Load(f + p), f1 = S.Load(f + phase + p), f2 = S.Load(f + p + 1), f3 = S.Load(f + phase + p + 1);
            TV s0 = add ? S.Add(d0, f0) : S.Subtract(d0, f0), s1 = add ? S.Add(d1, f1) : S.Subtract(d1, f1);
            TV s2 = add ? S.Add(d2, f2) : S.Subtract(d2, f2), s3 = add ? S.Add(d3, f3) : S.Subtract(d3, f3);
            StoreColumns<S, TV>(s0, s1, s2, s3, v + p, xiStride);
        }
    }

    /// <summary>
    /// Row a of ∂L/∂M = A dY Aᵀ for the tiles at positions [q0, q0 + length) and <paramref name="width"/> output
    /// channels: dY[r][c] = dyᵀ[(2i + r) OutW + 2j + c] (zero outside the output and for the dropped positions
    /// j = Tw); ξ = 4a + b goes to dm + b <paramref name="xiStride"/> + (q - q0) width.
    /// </summary>
    private static void OutputGradientTransform<S, TV>(in Tiling tiling, float* dyT, int rowStride, int outH, int outW, int a, int q0, int length,
        int width, float* dm, long xiStride)
        where S : IConvSimd<TV> where TV : struct
    {
        // Row a of A: (1, 0), (1, 1), (1, -1), (0, -1) over the two output rows r.
        float wr0 = a == 3 ? 0f : 1f, wr1 = a switch { 0 => 0f, 1 => 1f, _ => -1f };
        var k0 = S.Create(wr0);
        var k1 = S.Create(wr1);
        for (int q = q0; q < q0 + length; q++)
        {
            int i = q / tiling.Wq, j = q % tiling.Wq;
            float* out0 = dm + (long)(q - q0) * width;
            bool inside = i < tiling.Th && j < tiling.Tw;
            float* p00 = dyT + ((long)(2 * i) * outW + 2 * j) * rowStride;
            bool hasRow1 = 2 * i + 1 < outH, hasCol1 = 2 * j + 1 < outW;
            for (int c = 0; c < width; c += S.Count)
            {
                TV t0 = S.Zero, t1 = S.Zero;
                if (inside)
                {
                    TV y00 = S.Load(p00 + c), y01 = hasCol1 ? S.Load(p00 + rowStride + c) : S.Zero;
                    TV y10 = hasRow1 ? S.Load(p00 + (long)outW * rowStride + c) : S.Zero;
                    TV y11 = hasRow1 && hasCol1 ? S.Load(p00 + ((long)outW + 1) * rowStride + c) : S.Zero;
                    // t_c = A[a][0] dY[0][c] + A[a][1] dY[1][c].
                    t0 = S.MultiplyAdd(y10, k1, S.Multiply(y00, k0));
                    t1 = S.MultiplyAdd(y11, k1, S.Multiply(y01, k0));
                }
                // Columns: (t0, t0 + t1, t0 - t1, -t1).
                S.Store(t0, out0 + c);
                S.Store(S.Add(t0, t1), out0 + xiStride + c);
                S.Store(S.Subtract(t0, t1), out0 + 2 * xiStride + c);
                S.Store(S.Subtract(S.Zero, t1), out0 + 3 * xiStride + c);
            }
        }
    }
}
