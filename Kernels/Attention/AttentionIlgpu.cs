using DiffusionCore.Kernels.Ilgpu;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using static DiffusionCore.Kernels.Ilgpu.ImageTilesIlgpu;

namespace DiffusionCore.Kernels.Attention;

/// <summary>
/// Scaled-dot-product attention O = softmax(scale Q Kᵀ) V as ILGPU kernels, float32, in the tiled form of
/// FlashAttention-2 (Dao 2023): the N x N score matrix never exists, only one 64 x 64 tile of it per group, in
/// registers and shared memory. q, k, v, o (and their gradients) are [B, N, D] contiguous, lse is [B, N]; the
/// meaning of every argument is that of <see cref="AttentionCpu"/>.
/// <para>
/// A group of 256 threads owns 64 rows (query rows forward and for dQ, key rows for dK and dV) and walks the
/// other side in tiles of 64. A score tile S = A Bᵀ (A, B two [64, D] row blocks) is computed in 16-wide slices of
/// D through shared memory, 4 x 4 scores per thread (<see cref="ImageTilesIlgpu"/>). A product with a score tile,
/// Out[64, D] (+)= T[64, 64] M[64, D] (P V, Pᵀ dO, dSᵀ Q, dS K), goes through shared memory in 64-wide column
/// blocks of D and accumulates in place into the output rows, which the group owns; so any head width D works
/// with fixed shared memory (about 41 KiB).
/// </para>
/// <para>
/// Backward follows FlashAttention-2 Algorithm 2 but, instead of adding dQ with atomics from every key block,
/// runs a second kernel over query blocks that recomputes the tile and accumulates its dQ: the result is the same
/// on every run, at the price of recomputing S and dP once more. Delta_i = dO_i · O_i is computed first, one
/// thread per row.
/// </para>
/// </summary>
internal static class AttentionIlgpu
{
    /// <summary>Columns of D staged at once in a score-tile product (slice depth of the shared operands).</summary>
    public const int ScoreSlice = SliceDepth;

    /// <summary>Columns of D staged at once in a product with a score tile.</summary>
    public const int ValueBlock = Tile;

    /// <summary>Row stride of the shared score tile (one word of padding against bank conflicts on its stores).</summary>
    public const int ScoreStride = Tile + 1;

    /// <summary>Floats of shared memory per group: two score slices, the score tile, one value block.</summary>
    public const int SharedFloats = 2 * SliceFloats + Tile * ScoreStride + Tile * ValueBlock;

    /// <summary>
    /// Forward, group = (sequence, query tile): online softmax over key tiles (FlashAttention-2 Algorithm 1) with
    /// running row max m and row sum l; O accumulates in place, rescaled by exp(m_old - m_new) when the max grows
    /// and divided by l on the last tile; lse = m + log l.
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void ForwardKernel(AttentionDims d, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> o, ArrayView<float> lse)
    {
        var sliceA = SharedMemory.Allocate<float>(SliceFloats);
        var sliceB = SharedMemory.Allocate<float>(SliceFloats);
        var scores = SharedMemory.Allocate<float>(Tile * ScoreStride);
        var values = SharedMemory.Allocate<float>(Tile * ValueBlock);
        int t = Group.IdxX, tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        int tiles = DivUp(d.Tokens, Tile), seq = Grid.IdxX / tiles, qStart = Grid.IdxX % tiles * Tile;
        int qRows = Min(Tile, d.Tokens - qStart), qBase = seq * d.Tokens + qStart;
        var rowMax = Quad.Broadcast(float.NegativeInfinity);
        var rowSum = Quad.Broadcast(0f);
        for (int kt = 0; kt < tiles; kt++)
        {
            int kStart = kt * Tile, kRows = Min(Tile, d.Tokens - kStart), kBase = seq * d.Tokens + kStart;
            var s = ScoreTile(q, qBase, qRows, k, kBase, kRows, d.HeadDim, sliceA, sliceB, t);
            var s0 = MaskColumns(Scale(s.R0, d.Scale), kRows, tx);
            var s1 = MaskColumns(Scale(s.R1, d.Scale), kRows, tx);
            var s2 = MaskColumns(Scale(s.R2, d.Scale), kRows, tx);
            var s3 = MaskColumns(Scale(s.R3, d.Scale), kRows, tx);
            var tileMax = RowsMax(new Quad(MaxOf(s0), MaxOf(s1), MaxOf(s2), MaxOf(s3)));
            var newMax = new Quad(XMath.Max(rowMax.X, tileMax.X), XMath.Max(rowMax.Y, tileMax.Y),
                XMath.Max(rowMax.Z, tileMax.Z), XMath.Max(rowMax.W, tileMax.W));
            // exp(-inf - finite) = 0 on the first tile: the empty accumulator gets weight 0.
            var alpha = new Quad(XMath.Exp(rowMax.X - newMax.X), XMath.Exp(rowMax.Y - newMax.Y),
                XMath.Exp(rowMax.Z - newMax.Z), XMath.Exp(rowMax.W - newMax.W));
            var p = new Block4x4
            {
                R0 = ExpShifted(s0, newMax.X),
                R1 = ExpShifted(s1, newMax.Y),
                R2 = ExpShifted(s2, newMax.Z),
                R3 = ExpShifted(s3, newMax.W),
            };
            var tileSum = RowsSum(new Quad(SumOf(p.R0), SumOf(p.R1), SumOf(p.R2), SumOf(p.R3)));
            rowSum = new Quad(alpha.X * rowSum.X + tileSum.X, alpha.Y * rowSum.Y + tileSum.Y,
                alpha.Z * rowSum.Z + tileSum.Z, alpha.W * rowSum.W + tileSum.W);
            rowMax = newMax;
            StoreTile(scores, p, tx, ty);
            Group.Barrier();
            var post = kt == tiles - 1
                ? new Quad(1f / rowSum.X, 1f / rowSum.Y, 1f / rowSum.Z, 1f / rowSum.W)
                : Quad.Broadcast(1f);
            AccumulateProduct(scores, v, kBase, kRows, o, qBase, qRows, d.HeadDim, kt == 0, alpha, post, 1f, values, t);
        }
        if (tx == 0)
        {
            for (int i = 0; i < 4; i++)
            {
                int r = ty + 16 * i;
                if (r < qRows) lse[qBase + r] = rowMax.Get(i) + XMath.Log(rowSum.Get(i));
            }
        }
    }

    /// <summary>Delta[row] = Σ_c dO[row, c] o[row, c] (FlashAttention-2 Algorithm 2, line 4), one thread per row.</summary>
    [IlgpuKernel]
    internal static void DeltaKernel(Index1D row, int headDim, ArrayView<float> o, ArrayView<float> dO, ArrayView<float> delta)
    {
        float sum = 0f;
        int start = row * headDim;
        for (int c = 0; c < headDim; c++) sum += dO[start + c] * o[start + c];
        delta[row] = sum;
    }

    /// <summary>
    /// dK and dV for group = (sequence, key tile): over query tiles, with the score tile transposed (rows = keys),
    /// Pᵀ = exp(scale K Qᵀ - lse), dVⱼ += Pᵀ dO, dPᵀ = V dOᵀ, dSᵀ = Pᵀ (dPᵀ - Delta), dKⱼ += scale dSᵀ Q.
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void KeyValueGradientKernel(AttentionDims d, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<float> dO, ArrayView<float> dk, ArrayView<float> dv)
    {
        var sliceA = SharedMemory.Allocate<float>(SliceFloats);
        var sliceB = SharedMemory.Allocate<float>(SliceFloats);
        var scores = SharedMemory.Allocate<float>(Tile * ScoreStride);
        var values = SharedMemory.Allocate<float>(Tile * ValueBlock);
        int t = Group.IdxX, tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        int tiles = DivUp(d.Tokens, Tile), seq = Grid.IdxX / tiles, kStart = Grid.IdxX % tiles * Tile;
        int kRows = Min(Tile, d.Tokens - kStart), kBase = seq * d.Tokens + kStart;
        var one = Quad.Broadcast(1f);
        for (int qt = 0; qt < tiles; qt++)
        {
            int qStart = qt * Tile, qRows = Min(Tile, d.Tokens - qStart), qBase = seq * d.Tokens + qStart;
            // The thread's four query columns tx + 16 j: their lse and Delta (0 past the end, where P is 0 anyway).
            var colLse = LoadColumns(lse, qBase, qRows, tx);
            var colDelta = LoadColumns(delta, qBase, qRows, tx);
            var st = ScoreTile(k, kBase, kRows, q, qBase, qRows, d.HeadDim, sliceA, sliceB, t);
            var dpt = ScoreTile(v, kBase, kRows, dO, qBase, qRows, d.HeadDim, sliceA, sliceB, t);
            var p = new Block4x4
            {
                R0 = Probabilities(Scale(st.R0, d.Scale), colLse, qRows, tx),
                R1 = Probabilities(Scale(st.R1, d.Scale), colLse, qRows, tx),
                R2 = Probabilities(Scale(st.R2, d.Scale), colLse, qRows, tx),
                R3 = Probabilities(Scale(st.R3, d.Scale), colLse, qRows, tx),
            };
            var ds = new Block4x4
            {
                R0 = ScoreGradient(p.R0, dpt.R0, colDelta),
                R1 = ScoreGradient(p.R1, dpt.R1, colDelta),
                R2 = ScoreGradient(p.R2, dpt.R2, colDelta),
                R3 = ScoreGradient(p.R3, dpt.R3, colDelta),
            };
            StoreTile(scores, p, tx, ty);
            Group.Barrier();
            AccumulateProduct(scores, dO, qBase, qRows, dv, kBase, kRows, d.HeadDim, qt == 0, one, one, 1f, values, t);
            StoreTile(scores, ds, tx, ty);
            Group.Barrier();
            AccumulateProduct(scores, q, qBase, qRows, dk, kBase, kRows, d.HeadDim, qt == 0, one, one, d.Scale, values, t);
        }
    }

    /// <summary>
    /// dQ for group = (sequence, query tile): over key tiles, P = exp(scale Q Kᵀ - lse), dP = dO Vᵀ,
    /// dS = P (dP - Delta), dQᵢ += scale dS K.
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void QueryGradientKernel(AttentionDims d, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v,
        ArrayView<float> lse, ArrayView<float> delta, ArrayView<float> dO, ArrayView<float> dq)
    {
        var sliceA = SharedMemory.Allocate<float>(SliceFloats);
        var sliceB = SharedMemory.Allocate<float>(SliceFloats);
        var scores = SharedMemory.Allocate<float>(Tile * ScoreStride);
        var values = SharedMemory.Allocate<float>(Tile * ValueBlock);
        int t = Group.IdxX, tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        int tiles = DivUp(d.Tokens, Tile), seq = Grid.IdxX / tiles, qStart = Grid.IdxX % tiles * Tile;
        int qRows = Min(Tile, d.Tokens - qStart), qBase = seq * d.Tokens + qStart;
        // The thread's four query rows ty + 16 i: their lse and Delta.
        var rowLse = LoadColumns(lse, qBase, qRows, ty);
        var rowDelta = LoadColumns(delta, qBase, qRows, ty);
        var one = Quad.Broadcast(1f);
        for (int kt = 0; kt < tiles; kt++)
        {
            int kStart = kt * Tile, kRows = Min(Tile, d.Tokens - kStart), kBase = seq * d.Tokens + kStart;
            var s = ScoreTile(q, qBase, qRows, k, kBase, kRows, d.HeadDim, sliceA, sliceB, t);
            var dp = ScoreTile(dO, qBase, qRows, v, kBase, kRows, d.HeadDim, sliceA, sliceB, t);
            var ds = new Block4x4
            {
                R0 = ScoreGradient(Probabilities(Scale(s.R0, d.Scale), Quad.Broadcast(rowLse.X), kRows, tx), dp.R0, Quad.Broadcast(rowDelta.X)),
                R1 = ScoreGradient(Probabilities(Scale(s.R1, d.Scale), Quad.Broadcast(rowLse.Y), kRows, tx), dp.R1, Quad.Broadcast(rowDelta.Y)),
                R2 = ScoreGradient(Probabilities(Scale(s.R2, d.Scale), Quad.Broadcast(rowLse.Z), kRows, tx), dp.R2, Quad.Broadcast(rowDelta.Z)),
                R3 = ScoreGradient(Probabilities(Scale(s.R3, d.Scale), Quad.Broadcast(rowLse.W), kRows, tx), dp.R3, Quad.Broadcast(rowDelta.W)),
            };
            StoreTile(scores, ds, tx, ty);
            Group.Barrier();
            AccumulateProduct(scores, k, kBase, kRows, dq, qBase, qRows, d.HeadDim, kt == 0, one, one, d.Scale, values, t);
        }
    }

    /// <summary>
    /// The thread's 4 x 4 block of A Bᵀ, A = rows aBase .. aBase + aRows - 1 and B = rows bBase .. of [*, D]
    /// matrices (rows past the counts read as 0): element (i, j) = A[ty + 16 i] · B[tx + 16 j].
    /// </summary>
    private static Block4x4 ScoreTile(ArrayView<float> a, int aBase, int aRows, ArrayView<float> b, int bBase, int bRows,
        int headDim, ArrayView<float> sliceA, ArrayView<float> sliceB, int t)
    {
        int tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        // Depth-major loads: thread t reads column c0 + t % 16 of rows t / 16 + 16 r, 16 consecutive floats per row.
        int col = t % ThreadsPerSide, row = t / ThreadsPerSide;
        var acc = default(Block4x4);
        for (int c0 = 0; c0 < headDim; c0 += ScoreSlice)
        {
            int c = c0 + col;
            for (int r = 0; r < Tile / ThreadsPerSide; r++)
            {
                int m = row + 16 * r;
                sliceA[col * SliceStride + m] = m < aRows && c < headDim ? a[(aBase + m) * headDim + c] : 0f;
                sliceB[col * SliceStride + m] = m < bRows && c < headDim ? b[(bBase + m) * headDim + c] : 0f;
            }
            Group.Barrier();
            acc = MultiplySlices(sliceA, sliceB, tx, ty, acc);
            Group.Barrier();
        }
        return acc;
    }

    /// <summary>
    /// out[outBase + r, c] = (alpha_r out[outBase + r, c] + factor Σ_j T[r, j] M[mBase + j, c]) post_r for the
    /// outRows rows of the group (alpha ignored when <paramref name="overwrite"/>), T the shared score tile and M a
    /// [*, D] matrix whose first mRows rows from mBase are read (the rest as 0). Thread (tx, ty) owns rows ty + 16 i,
    /// so alpha and post are its four rows' factors.
    /// </summary>
    private static void AccumulateProduct(ArrayView<float> tile, ArrayView<float> m, int mBase, int mRows,
        ArrayView<float> output, int outBase, int outRows, int headDim, bool overwrite, Quad alpha, Quad post, float factor,
        ArrayView<float> values, int t)
    {
        int tx = t % ThreadsPerSide, ty = t / ThreadsPerSide;
        // Row-major loads of the value block: thread t reads column t % 64 of rows t / 64 + 4 r.
        int loadCol = t % ValueBlock, loadRow = t / ValueBlock;
        for (int c0 = 0; c0 < headDim; c0 += ValueBlock)
        {
            int c = c0 + loadCol;
            for (int r = loadRow; r < Tile; r += GroupSize / ValueBlock)
                values[r * ValueBlock + loadCol] = r < mRows && c < headDim ? m[(mBase + r) * headDim + c] : 0f;
            Group.Barrier();
            // acc[i, jj] = Σ_j T[ty + 16 i, j] values[j, tx + 16 jj], unrolled by 4 as MultiplySlices.
            var acc = default(Block4x4);
            for (int j = 0; j < Tile; j += 4)
            {
                int to = ty * ScoreStride + j, vo = j * ValueBlock + tx;
                acc = OuterProductStep(tile, to, 16 * ScoreStride, values, vo, acc);
                acc = OuterProductStep(tile, to + 1, 16 * ScoreStride, values, vo + ValueBlock, acc);
                acc = OuterProductStep(tile, to + 2, 16 * ScoreStride, values, vo + 2 * ValueBlock, acc);
                acc = OuterProductStep(tile, to + 3, 16 * ScoreStride, values, vo + 3 * ValueBlock, acc);
            }
            for (int i = 0; i < 4; i++)
            {
                int r = ty + 16 * i;
                if (r >= outRows) continue;
                float a = alpha.Get(i), scaleOut = post.Get(i);
                for (int j = 0; j < 4; j++)
                {
                    int cc = c0 + tx + 16 * j;
                    if (cc >= headDim) continue;
                    int idx = (outBase + r) * headDim + cc;
                    float added = factor * acc.Get(i, j);
                    output[idx] = (overwrite ? added : a * output[idx] + added) * scaleOut;
                }
            }
            // The next block (or the caller's next tile) overwrites values and the score tile.
            Group.Barrier();
        }
    }

    /// <summary>Writes the thread's block into the shared score tile at rows ty + 16 i, columns tx + 16 j.</summary>
    private static void StoreTile(ArrayView<float> tile, Block4x4 block, int tx, int ty)
    {
        for (int i = 0; i < 4; i++)
        {
            var row = block.Row(i);
            int o = (ty + 16 * i) * ScoreStride + tx;
            tile[o] = row.X;
            tile[o + 16] = row.Y;
            tile[o + 32] = row.Z;
            tile[o + 48] = row.W;
        }
    }

    /// <summary>values[base + idx + 16 j] for the four positions idx + 16 j &lt; count, else 0.</summary>
    private static Quad LoadColumns(ArrayView<float> values, int start, int count, int idx) => new(
        idx < count ? values[start + idx] : 0f,
        idx + 16 < count ? values[start + idx + 16] : 0f,
        idx + 32 < count ? values[start + idx + 32] : 0f,
        idx + 48 < count ? values[start + idx + 48] : 0f);

    private static Quad Scale(Quad s, float scale) => new(s.X * scale, s.Y * scale, s.Z * scale, s.W * scale);

    /// <summary>Scores of the columns tx + 16 j at or past <paramref name="columns"/> set to -inf (no key there).</summary>
    private static Quad MaskColumns(Quad s, int columns, int tx) => new(
        tx < columns ? s.X : float.NegativeInfinity,
        tx + 16 < columns ? s.Y : float.NegativeInfinity,
        tx + 32 < columns ? s.Z : float.NegativeInfinity,
        tx + 48 < columns ? s.W : float.NegativeInfinity);

    /// <summary>exp(s - shift) elementwise.</summary>
    private static Quad ExpShifted(Quad s, float shift) =>
        new(XMath.Exp(s.X - shift), XMath.Exp(s.Y - shift), XMath.Exp(s.Z - shift), XMath.Exp(s.W - shift));

    /// <summary>P = exp(s - lse) for the columns tx + 16 j below <paramref name="columns"/>, 0 elsewhere.</summary>
    private static Quad Probabilities(Quad s, Quad lse, int columns, int tx) => new(
        tx < columns ? XMath.Exp(s.X - lse.X) : 0f,
        tx + 16 < columns ? XMath.Exp(s.Y - lse.Y) : 0f,
        tx + 32 < columns ? XMath.Exp(s.Z - lse.Z) : 0f,
        tx + 48 < columns ? XMath.Exp(s.W - lse.W) : 0f);

    /// <summary>dS = P (dP - Delta), elementwise (the softmax Jacobian applied to dP).</summary>
    private static Quad ScoreGradient(Quad p, Quad dp, Quad delta) =>
        new(p.X * (dp.X - delta.X), p.Y * (dp.Y - delta.Y), p.Z * (dp.Z - delta.Z), p.W * (dp.W - delta.W));

    private static float MaxOf(Quad s) => XMath.Max(XMath.Max(s.X, s.Y), XMath.Max(s.Z, s.W));

    private static float SumOf(Quad s) => s.X + s.Y + (s.Z + s.W);

    /// <summary>
    /// Row maxima of the score tile from each thread's maxima of its four rows: a row lies in the 16 lanes with one
    /// ty (lanes 16 h .. 16 h + 15 of a warp, since t = 16 ty + tx), so a butterfly over lane masks 8, 4, 2, 1 leaves
    /// the row's max in all 16. The four rows travel in one shuffle.
    /// </summary>
    private static Quad RowsMax(Quad m)
    {
        for (int mask = ThreadsPerSide / 2; mask > 0; mask >>= 1)
        {
            var o = Warp.ShuffleXor(m, mask);
            m = new Quad(XMath.Max(m.X, o.X), XMath.Max(m.Y, o.Y), XMath.Max(m.Z, o.Z), XMath.Max(m.W, o.W));
        }
        return m;
    }

    /// <summary>Row sums, as <see cref="RowsMax"/>; every lane adds the same pairs, so all 16 agree bitwise.</summary>
    private static Quad RowsSum(Quad sum)
    {
        for (int mask = ThreadsPerSide / 2; mask > 0; mask >>= 1)
        {
            var o = Warp.ShuffleXor(sum, mask);
            sum = new Quad(sum.X + o.X, sum.Y + o.Y, sum.Z + o.Z, sum.W + o.W);
        }
        return sum;
    }

    private static int Min(int a, int b) => a < b ? a : b;

    /// <summary>
    /// Kernels of one accelerator, loaded once, with launchers that check their arguments as
    /// <see cref="AttentionCpu"/> does. Holds the scratch for Delta (one stream at a time).
    /// </summary>
    internal sealed class Kernels : IDisposable
    {
        private readonly ImageScratch _scratch;
        private readonly Action<AcceleratorStream, KernelConfig, AttentionDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>> _forward;
        private readonly Action<AcceleratorStream, Index1D, int, ArrayView<float>, ArrayView<float>, ArrayView<float>> _delta;
        private readonly Action<AcceleratorStream, KernelConfig, AttentionDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _keyValueGradient;
        private readonly Action<AcceleratorStream, KernelConfig, AttentionDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> _queryGradient;

        /// <summary>Compiles the kernels for <paramref name="accelerator"/>.</summary>
        public Kernels(Accelerator accelerator) : this(new IlgpuKernelCache(accelerator))
        {
        }

        /// <summary>Compiles the kernels through <paramref name="cache"/> (an <see cref="IlgpuBackend"/>'s, which records the compile times).</summary>
        public Kernels(IlgpuKernelCache cache)
        {
            var accelerator = cache.Accelerator;
            RequireTileSupport(accelerator, "Attention", SharedFloats * sizeof(float));
            _scratch = new ImageScratch(accelerator);
            _forward = cache.Get<Action<AcceleratorStream, KernelConfig, AttentionDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>>>(ForwardKernel);
            _delta = cache.Get<Action<AcceleratorStream, Index1D, int, ArrayView<float>, ArrayView<float>, ArrayView<float>>>(DeltaKernel);
            _keyValueGradient = cache.Get<Action<AcceleratorStream, KernelConfig, AttentionDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>>(KeyValueGradientKernel);
            _queryGradient = cache.Get<Action<AcceleratorStream, KernelConfig, AttentionDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>>(QueryGradientKernel);
        }

        /// <summary>o = softmax(scale q kᵀ) v per sequence and lse[b, i], as <see cref="AttentionCpu.Forward"/>.</summary>
        public void Forward(AcceleratorStream stream, int batch, int tokens, int headDim, double scale,
            ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse)
        {
            const string op = "AttentionForward";
            var d = Check(op, batch, tokens, headDim, scale);
            long bnd = (long)batch * tokens * headDim;
            string shape = d.ToString();
            RequireLength(op, "q", q, bnd, shape);
            RequireLength(op, "k", k, bnd, shape);
            RequireLength(op, "v", v, bnd, shape);
            RequireLength(op, "o", o, bnd, shape);
            RequireLength(op, "lse", lse, (long)batch * tokens, shape);
            if (batch == 0 || tokens == 0) return;
            _forward(stream, Config(d), d, q, k, v, o, lse);
        }

        /// <summary>dq, dk, dv (overwritten) from o, lse and dO, as <see cref="AttentionCpu.Backward"/>.</summary>
        public void Backward(AcceleratorStream stream, int batch, int tokens, int headDim, double scale,
            ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse,
            ArrayView<float> dO, ArrayView<float> dq, ArrayView<float> dk, ArrayView<float> dv)
        {
            const string op = "AttentionBackward";
            var d = Check(op, batch, tokens, headDim, scale);
            long bnd = (long)batch * tokens * headDim;
            string shape = d.ToString();
            RequireLength(op, "q", q, bnd, shape);
            RequireLength(op, "k", k, bnd, shape);
            RequireLength(op, "v", v, bnd, shape);
            RequireLength(op, "o", o, bnd, shape);
            RequireLength(op, "lse", lse, (long)batch * tokens, shape);
            RequireLength(op, "dO", dO, bnd, shape);
            RequireLength(op, "dq", dq, bnd, shape);
            RequireLength(op, "dk", dk, bnd, shape);
            RequireLength(op, "dv", dv, bnd, shape);
            if (batch == 0 || tokens == 0) return;
            var delta = _scratch.Get(stream, (long)batch * tokens);
            _delta(stream, batch * tokens, headDim, o, dO, delta);
            _keyValueGradient(stream, Config(d), d, q, k, v, lse, delta, dO, dk, dv);
            _queryGradient(stream, Config(d), d, q, k, v, lse, delta, dO, dq);
        }

        /// <summary>Frees the scratch buffer.</summary>
        public void Dispose() => _scratch.Dispose();

        private static KernelConfig Config(AttentionDims d) =>
            new(new Index3D(d.Batch * DivUp(d.Tokens, Tile), 1, 1), new Index3D(GroupSize, 1, 1));

        private static AttentionDims Check(string op, int batch, int tokens, int headDim, double scale)
        {
            if (batch < 0 || tokens < 0 || headDim < 1)
                throw new KernelException(op, $"sizes B={batch}, N={tokens}, D={headDim}: need B >= 0, N >= 0, D >= 1");
            if (!float.IsFinite((float)scale))
                throw new KernelException(op, $"scale {scale} is not finite in float32 (B={batch}, N={tokens}, D={headDim})");
            if ((long)batch * tokens * headDim > int.MaxValue)
                throw new KernelException(op, $"B*N*D = {(long)batch * tokens * headDim} exceeds {int.MaxValue} (32-bit indexing)");
            return new AttentionDims(batch, tokens, headDim, (float)scale);
        }
    }
}

/// <summary>Sizes and softmax scale of an attention launch, passed to the kernels as one argument.</summary>
/// <param name="Batch">B, the number of sequences.</param>
/// <param name="Tokens">N, tokens per sequence.</param>
/// <param name="HeadDim">D, the width of q, k and v.</param>
/// <param name="Scale">The factor on q · k inside the softmax.</param>
internal readonly record struct AttentionDims(int Batch, int Tokens, int HeadDim, float Scale)
{
    /// <inheritdoc/>
    public override string ToString() => $"[B={Batch}, N={Tokens}, D={HeadDim}], scale {Scale}";
}
