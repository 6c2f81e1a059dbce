using System.Numerics.Tensors;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Gemm;
using DiffusionCore.Kernels.Memory;

namespace DiffusionCore.Kernels.Attention;

/// <summary>
/// Scaled-dot-product attention on the CPU, O = softmax(scale * Q K^T) V, forward and backward, in the
/// tiled ("flash") form of FlashAttention-2 (Dao 2023): the N x N score matrix never exists, only one
/// tile of it per thread. q, k, v, o (and their gradients) are [B, N, D] contiguous float32 (B sequences,
/// e.g. batch * heads; N tokens; D head width); the row log-sum-exp lse is [B, N].
/// </summary>
public static unsafe class AttentionCpu
{
    /// <summary>Forward: query rows per work unit (the rows of Q_i, O_i in Algorithm 1).</summary>
    public const int ForwardQueryBlock = 64;

    /// <summary>Forward: keys per score tile S_ij (columns of K_j^T).</summary>
    public const int ForwardKeyTile = 128;

    /// <summary>Backward: keys per work unit (the rows of K_j, V_j, dK_j, dV_j in Algorithm 2).</summary>
    public const int BackwardKeyBlock = 64;

    /// <summary>Backward: query rows per score tile.</summary>
    public const int BackwardQueryTile = 64;

    /// <summary>Below about this many flops a parallel task costs more than it saves.</summary>
    private const long FlopsPerTask = 1 << 18;

    // Per-thread tile buffers: a score tile, a second tile (dP/dS, or the output accumulator), and the
    // running row statistics. They grow to the largest D seen and are then reused on every call.
    [ThreadStatic] private static float[]? t_tileA;
    [ThreadStatic] private static float[]? t_tileB;
    [ThreadStatic] private static float[]? t_rows;

    // Per-call buffers (Delta, dQ partials) whose size depends on B and N.
    private static readonly CpuArrayPool<float> Scratch = new();

    /// <summary>The usual softmax temperature 1 / sqrt(D) (Vaswani et al. 2017, eq. 1).</summary>
    public static float DefaultScale(int headDim) => 1f / MathF.Sqrt(headDim);

    /// <summary>
    /// o = softmax(scale * q k^T) v per sequence, and lse[b, i] = log sum_j exp(scale * q_i . k_j), kept for
    /// <see cref="Backward"/>. FlashAttention-2 Algorithm 1: online softmax over key tiles with a running
    /// row max m and row sum l; the output accumulator is rescaled by exp(m_old - m_new) when the max grows.
    /// Work is split over (sequence, query block); each unit is computed the same way whatever the thread count.
    /// </summary>
    public static void Forward(int batch, int tokens, int headDim, float scale,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> o, Span<float> lse)
    {
        const string kernel = "AttentionForward";
        ValidateSizes(kernel, batch, tokens, headDim, scale);
        long bnd = (long)batch * tokens * headDim, bn = (long)batch * tokens;
        CheckLength(kernel, "q", q.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "k", k.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "v", v.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "o", o.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "lse", lse.Length, bn, batch, tokens, null);
        if (bn == 0) return;
        fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse)
            ForwardCore(batch, tokens, headDim, scale, pq, pk, pv, po, pl);
    }

    /// <summary>
    /// Gradients of <see cref="Forward"/>: given o, lse and dO = dL/do, writes (overwrites) dq, dk, dv.
    /// FlashAttention-2 Algorithm 2: Delta_i = rowsum(dO_i * O_i); per tile P = exp(S - lse),
    /// dV += P^T dO, dP = dO V^T, dS = P * (dP - Delta), dQ += scale dS K, dK += scale dS^T Q.
    /// Work is split over (sequence, key block), each owning its rows of dK and dV. dQ rows receive a
    /// contribution from every key block: when there are at least as many sequences as threads a unit is a
    /// whole sequence and accumulates its dQ in place; otherwise each key block writes its own dQ partial and
    /// the partials are summed in key-block order. Either way the result does not depend on scheduling.
    /// </summary>
    public static void Backward(int batch, int tokens, int headDim, float scale,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> o,
        ReadOnlySpan<float> lse, ReadOnlySpan<float> dO, Span<float> dq, Span<float> dk, Span<float> dv)
    {
        const string kernel = "AttentionBackward";
        ValidateSizes(kernel, batch, tokens, headDim, scale);
        long bnd = (long)batch * tokens * headDim, bn = (long)batch * tokens;
        CheckLength(kernel, "q", q.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "k", k.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "v", v.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "o", o.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "lse", lse.Length, bn, batch, tokens, null);
        CheckLength(kernel, "dO", dO.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "dq", dq.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "dk", dk.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "dv", dv.Length, bnd, batch, tokens, headDim);
        if (bn == 0) return;
        fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse, pdo = dO, pdq = dq, pdk = dk, pdv = dv)
            BackwardCore(batch, tokens, headDim, scale, pq, pk, pv, po, pl, pdo, pdq, pdk, pdv);
    }

    private static void ForwardCore(int batch, int n, int d, float scale,
        float* q, float* k, float* v, float* o, float* lse)
    {
        int queryBlocks = CeilDiv(n, ForwardQueryBlock);
        // One unit: 2 GEMMs of min(n, block) x n x d.
        long unitFlops = 4L * Math.Min(n, ForwardQueryBlock) * n * d;
        CpuParallel.For((long)batch * queryBlocks, Math.Max(1, FlopsPerTask / unitFlops), (start, end) =>
        {
            var s = Tile(ref t_tileA, ForwardQueryBlock * ForwardKeyTile);
            var acc = Tile(ref t_tileB, ForwardQueryBlock * d);
            var rows = Tile(ref t_rows, 2 * ForwardQueryBlock);
            for (long u = start; u < end; u++)
            {
                int b = (int)(u / queryBlocks), r0 = (int)(u % queryBlocks) * ForwardQueryBlock;
                int br = Math.Min(ForwardQueryBlock, n - r0);
                long rowBase = (long)b * n + r0;
                ForwardBlock(n, d, br, scale, new ReadOnlySpan<float>(q + rowBase * d, br * d),
                    new ReadOnlySpan<float>(k + (long)b * n * d, n * d), new ReadOnlySpan<float>(v + (long)b * n * d, n * d),
                    new Span<float>(o + rowBase * d, br * d), new Span<float>(lse + rowBase, br), s, acc, rows);
            }
        });
    }

    /// <summary>One query block Q_i (br rows) against all n keys of its sequence; Algorithm 1, lines 5-15.</summary>
    private static void ForwardBlock(int n, int d, int br, float scale, ReadOnlySpan<float> qi,
        ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> oi, Span<float> lsei,
        Span<float> sTile, Span<float> accTile, Span<float> rows)
    {
        var m = rows[..br];
        var l = rows.Slice(ForwardQueryBlock, br);
        var acc = accTile[..(br * d)];
        m.Fill(float.NegativeInfinity);
        l.Clear();
        acc.Clear();
        for (int c0 = 0; c0 < n; c0 += ForwardKeyTile)
        {
            int bc = Math.Min(ForwardKeyTile, n - c0);
            var kj = k.Slice(c0 * d, bc * d);
            var vj = v.Slice(c0 * d, bc * d);
            var s = sTile[..(br * bc)];
            // S_ij = scale * Q_i K_j^T (line 8).
            GemmCpu.Sgemm(false, true, br, bc, d, scale, qi, d, kj, d, 0f, s, bc);
            for (int r = 0; r < br; r++)
            {
                var row = s.Slice(r * bc, bc);
                // m_new = max(m_old, rowmax S); P = exp(S - m_new); l = exp(m_old - m_new) l + rowsum P (line 9).
                float mNew = MathF.Max(m[r], TensorPrimitives.Max(row));
                TensorPrimitives.Subtract(row, mNew, row);
                TensorPrimitives.Exp(row, row);
                // exp(-inf - m_new) = 0 on the first tile, where the accumulator is still zero.
                float correction = MathF.Exp(m[r] - mNew);
                l[r] = correction * l[r] + TensorPrimitives.Sum(row);
                m[r] = mNew;
                if (correction != 1f)
                {
                    var accRow = acc.Slice(r * d, d);
                    TensorPrimitives.Multiply(accRow, correction, accRow);
                }
            }
            // O_i = diag(exp(m_old - m_new)) O_i + P V_j (line 10); the rescale was done row by row above.
            GemmCpu.Sgemm(false, false, br, d, bc, 1f, s, bc, vj, d, 1f, acc, d);
        }
        for (int r = 0; r < br; r++)
        {
            // O_i = diag(l)^-1 O_i, L_i = m_i + log l_i (lines 12-13).
            TensorPrimitives.Multiply(acc.Slice(r * d, d), 1f / l[r], oi.Slice(r * d, d));
            lsei[r] = m[r] + MathF.Log(l[r]);
        }
    }

    private static void BackwardCore(int batch, int n, int d, float scale,
        float* q, float* k, float* v, float* o, float* lse, float* dO, float* dq, float* dk, float* dv)
    {
        long bn = (long)batch * n;
        float[] delta = Scratch.Rent(bn);
        try
        {
            fixed (float* deltaPinned = delta)
            {
                // Delta_i = rowsum(dO_i * O_i) = sum_j P_ij dP_ij (Algorithm 2, line 4): the softmax Jacobian term.
                float* pDeltaRows = deltaPinned;
                CpuParallel.For(bn, Math.Max(1, FlopsPerTask / (2L * d)), (start, end) =>
                {
                    for (long r = start; r < end; r++)
                        pDeltaRows[r] = TensorPrimitives.Dot(new ReadOnlySpan<float>(dO + r * d, d), new ReadOnlySpan<float>(o + r * d, d));
                });
                int keyBlocks = CeilDiv(n, BackwardKeyBlock);
                // One key block: 5 GEMMs of n x min(n, block) x d.
                long blockFlops = 10L * n * Math.Min(n, BackwardKeyBlock) * d;
                if (batch >= CpuParallel.Threads || keyBlocks == 1)
                {
                    CpuParallel.For(batch, Math.Max(1, FlopsPerTask / (blockFlops * keyBlocks)), (start, end) =>
                    {
                        for (long b = start; b < end; b++)
                            for (int j = 0; j < keyBlocks; j++)
                                BackwardKeyBlockOf(n, d, scale, (int)b, j, q, k, v, lse, pDeltaRows, dO, dk, dv,
                                    new Span<float>(dq + b * n * d, n * d), accumulateDq: j > 0);
                    });
                }
                else
                {
                    BackwardWithDqPartials(batch, n, d, scale, keyBlocks, blockFlops, q, k, v, lse, pDeltaRows, dO, dq, dk, dv);
                }
            }
        }
        finally
        {
            Scratch.Return(delta);
        }
    }

    /// <summary>
    /// Backward split over (sequence, key block) for few sequences: key block j writes scale * sum_i dS_ij K_j
    /// into its own [n, d] partial, and the partials are then summed in key-block order.
    /// </summary>
    private static void BackwardWithDqPartials(int batch, int n, int d, float scale, int keyBlocks, long blockFlops,
        float* q, float* k, float* v, float* lse, float* delta, float* dO, float* dq, float* dk, float* dv)
    {
        long nd = (long)n * d;
        float[] partials = Scratch.Rent(batch * keyBlocks * nd);
        try
        {
            fixed (float* pinned = partials)
            {
                float* p = pinned;
                CpuParallel.For((long)batch * keyBlocks, Math.Max(1, FlopsPerTask / blockFlops), (start, end) =>
                {
                    for (long u = start; u < end; u++)
                        BackwardKeyBlockOf(n, d, scale, (int)(u / keyBlocks), (int)(u % keyBlocks), q, k, v, lse, delta,
                            dO, dk, dv, new Span<float>(p + u * nd, (int)nd), accumulateDq: false);
                });
                CpuParallel.For((long)batch * n, Math.Max(1, FlopsPerTask / ((long)keyBlocks * d)), (start, end) =>
                {
                    for (long row = start; row < end; row++)
                    {
                        long b = row / n, r = row % n;
                        var dst = new Span<float>(dq + row * d, d);
                        float* first = p + b * keyBlocks * nd + r * d;
                        new ReadOnlySpan<float>(first, d).CopyTo(dst);
                        for (int j = 1; j < keyBlocks; j++)
                            TensorPrimitives.Add(dst, new ReadOnlySpan<float>(first + j * nd, d), dst);
                    }
                });
            }
        }
        finally
        {
            Scratch.Return(partials);
        }
    }

    /// <summary>
    /// Key block j of sequence b against every query tile (Algorithm 2, lines 6-20): writes dK_j and dV_j,
    /// and writes (or adds, when <paramref name="accumulateDq"/>) this block's share of dQ into dqSeq ([n, d]).
    /// </summary>
    private static void BackwardKeyBlockOf(int n, int d, float scale, int b, int j,
        float* q, float* k, float* v, float* lse, float* delta, float* dO, float* dk, float* dv,
        Span<float> dqSeq, bool accumulateDq)
    {
        var pTile = Tile(ref t_tileA, BackwardQueryTile * BackwardKeyBlock);
        var dsTile = Tile(ref t_tileB, BackwardQueryTile * BackwardKeyBlock);
        long seq = (long)b * n;
        int c0 = j * BackwardKeyBlock, bc = Math.Min(BackwardKeyBlock, n - c0);
        var kj = new ReadOnlySpan<float>(k + (seq + c0) * d, bc * d);
        var vj = new ReadOnlySpan<float>(v + (seq + c0) * d, bc * d);
        var dkj = new Span<float>(dk + (seq + c0) * d, bc * d);
        var dvj = new Span<float>(dv + (seq + c0) * d, bc * d);
        for (int r0 = 0; r0 < n; r0 += BackwardQueryTile)
        {
            int br = Math.Min(BackwardQueryTile, n - r0);
            var qi = new ReadOnlySpan<float>(q + (seq + r0) * d, br * d);
            var doi = new ReadOnlySpan<float>(dO + (seq + r0) * d, br * d);
            var p = pTile[..(br * bc)];
            var ds = dsTile[..(br * bc)];
            // First query tile overwrites dK_j, dV_j (the outputs are not cleared beforehand).
            float beta = r0 == 0 ? 0f : 1f;
            // P_ij = exp(scale * Q_i K_j^T - L_i) (lines 9-10), the softmax recomputed from the saved lse.
            GemmCpu.Sgemm(false, true, br, bc, d, scale, qi, d, kj, d, 0f, p, bc);
            for (int r = 0; r < br; r++)
            {
                var row = p.Slice(r * bc, bc);
                TensorPrimitives.Subtract(row, lse[seq + r0 + r], row);
                TensorPrimitives.Exp(row, row);
            }
            // dV_j += P_ij^T dO_i (line 11).
            GemmCpu.Sgemm(true, false, bc, d, br, 1f, p, bc, doi, d, beta, dvj, d);
            // dP_ij = dO_i V_j^T (line 12), then dS_ij = P_ij * (dP_ij - Delta_i) (line 13).
            GemmCpu.Sgemm(false, true, br, bc, d, 1f, doi, d, vj, d, 0f, ds, bc);
            for (int r = 0; r < br; r++)
            {
                var row = ds.Slice(r * bc, bc);
                TensorPrimitives.Subtract(row, delta[seq + r0 + r], row);
                TensorPrimitives.Multiply(row, p.Slice(r * bc, bc), row);
            }
            // dQ_i += scale * dS_ij K_j (line 14); the scale is the derivative of S = scale * Q K^T.
            GemmCpu.Sgemm(false, false, br, d, bc, scale, ds, bc, kj, d, accumulateDq ? 1f : 0f, dqSeq.Slice(r0 * d, br * d), d);
            // dK_j += scale * dS_ij^T Q_i (line 15).
            GemmCpu.Sgemm(true, false, bc, d, br, scale, ds, bc, qi, d, beta, dkj, d);
        }
    }

    private static Span<float> Tile(ref float[]? buffer, int length)
    {
        if (buffer is null || buffer.Length < length) buffer = GC.AllocateUninitializedArray<float>(length);
        return buffer;
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;

    private static void ValidateSizes(string kernel, int batch, int tokens, int headDim, float scale)
    {
        if (batch < 0 || tokens < 0 || headDim < 1)
            throw new KernelException(kernel, $"sizes B={batch}, N={tokens}, D={headDim}: need B >= 0, N >= 0, D >= 1");
        if (!float.IsFinite(scale))
            throw new KernelException(kernel, $"scale {scale} is not finite (B={batch}, N={tokens}, D={headDim})");
    }

    private static void CheckLength(string kernel, string name, int length, long expected, int batch, int tokens, int? headDim)
    {
        if (length == expected) return;
        string shape = headDim is int d ? $"[B={batch}, N={tokens}, D={d}]" : $"[B={batch}, N={tokens}]";
        throw new KernelException(kernel, $"{name} has {length} elements, expected {shape} = {expected}");
    }
}
