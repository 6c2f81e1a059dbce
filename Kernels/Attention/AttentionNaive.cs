using System.Numerics;

namespace DiffusionCore.Kernels.Attention;

/// <summary>
/// Scaled-dot-product attention O = softmax(scale * Q K^T) V as plain loops, generic over the element type,
/// with the same interface as <see cref="AttentionCpu"/> (q, k, v, o are [B, N, D] contiguous, lse is [B, N]).
/// The float64 path of <see cref="Cpu.CpuBackend"/> (gradient checks at tiny sizes) runs here; float32 work goes
/// to the tiled kernel. Each score is recomputed where it is needed, so no N x N buffer is allocated.
/// </summary>
public static class AttentionNaive
{
    /// <summary>
    /// o_i = Σ_j p_ij v_j with p_ij = exp(s_ij - lse_i), s_ij = scale q_i · k_j and lse_i = log Σ_j exp(s_ij)
    /// (computed as m_i + log Σ_j exp(s_ij - m_i), m_i = max_j s_ij, so nothing overflows).
    /// </summary>
    public static void Forward<T>(int batch, int tokens, int headDim, T scale,
        ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, Span<T> o, Span<T> lse)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string kernel = "AttentionForward";
        Validate(kernel, batch, tokens, headDim, scale);
        long bnd = (long)batch * tokens * headDim;
        CheckLength(kernel, "q", q.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "k", k.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "v", v.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "o", o.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "lse", lse.Length, (long)batch * tokens, batch, tokens, null);
        int n = tokens, d = headDim;
        for (int b = 0; b < batch; b++)
        {
            int seq = b * n;
            for (int i = 0; i < n; i++)
            {
                T m = T.NegativeInfinity;
                for (int j = 0; j < n; j++) m = T.Max(m, Score(q, k, seq + i, seq + j, d, scale));
                T l = T.Zero;
                var oi = o.Slice((seq + i) * d, d);
                oi.Clear();
                for (int j = 0; j < n; j++)
                {
                    T p = T.Exp(Score(q, k, seq + i, seq + j, d, scale) - m);
                    l += p;
                    for (int c = 0; c < d; c++) oi[c] += p * v[(seq + j) * d + c];
                }
                for (int c = 0; c < d; c++) oi[c] /= l;
                lse[seq + i] = m + T.Log(l);
            }
        }
    }

    /// <summary>
    /// Gradients of <see cref="Forward{T}"/> (dq, dk, dv overwritten) by the chain rule through the softmax:
    /// with Delta_i = dO_i · o_i = Σ_j p_ij dP_ij, dP_ij = dO_i · v_j and dS_ij = p_ij (dP_ij - Delta_i):
    /// dv_j = Σ_i p_ij dO_i, dq_i = scale Σ_j dS_ij k_j, dk_j = scale Σ_i dS_ij q_i.
    /// </summary>
    public static void Backward<T>(int batch, int tokens, int headDim, T scale,
        ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, ReadOnlySpan<T> o,
        ReadOnlySpan<T> lse, ReadOnlySpan<T> dO, Span<T> dq, Span<T> dk, Span<T> dv)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string kernel = "AttentionBackward";
        Validate(kernel, batch, tokens, headDim, scale);
        long bnd = (long)batch * tokens * headDim;
        CheckLength(kernel, "q", q.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "k", k.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "v", v.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "o", o.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "lse", lse.Length, (long)batch * tokens, batch, tokens, null);
        CheckLength(kernel, "dO", dO.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "dq", dq.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "dk", dk.Length, bnd, batch, tokens, headDim);
        CheckLength(kernel, "dv", dv.Length, bnd, batch, tokens, headDim);
        int n = tokens, d = headDim;
        dq[..(int)bnd].Clear();
        dk[..(int)bnd].Clear();
        dv[..(int)bnd].Clear();
        for (int b = 0; b < batch; b++)
        {
            int seq = b * n;
            for (int i = 0; i < n; i++)
            {
                int ri = (seq + i) * d;
                T delta = T.Zero;
                for (int c = 0; c < d; c++) delta += dO[ri + c] * o[ri + c];
                for (int j = 0; j < n; j++)
                {
                    int rj = (seq + j) * d;
                    T p = T.Exp(Score(q, k, seq + i, seq + j, d, scale) - lse[seq + i]);
                    T dp = T.Zero;
                    for (int c = 0; c < d; c++) dp += dO[ri + c] * v[rj + c];
                    T ds = p * (dp - delta) * scale;
                    for (int c = 0; c < d; c++)
                    {
                        dv[rj + c] += p * dO[ri + c];
                        dq[ri + c] += ds * k[rj + c];
                        dk[rj + c] += ds * q[ri + c];
                    }
                }
            }
        }
    }

    private static T Score<T>(ReadOnlySpan<T> q, ReadOnlySpan<T> k, int row, int col, int d, T scale)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T sum = T.Zero;
        for (int c = 0; c < d; c++) sum += q[row * d + c] * k[col * d + c];
        return scale * sum;
    }

    private static void Validate<T>(string kernel, int batch, int tokens, int headDim, T scale) where T : IFloatingPointIeee754<T>
    {
        if (batch < 0 || tokens < 0 || headDim < 1)
            throw new KernelException(kernel, $"sizes B={batch}, N={tokens}, D={headDim}: need B >= 0, N >= 0, D >= 1");
        if (!T.IsFinite(scale))
            throw new KernelException(kernel, $"scale {scale} is not finite (B={batch}, N={tokens}, D={headDim})");
    }

    private static void CheckLength(string kernel, string name, int length, long expected, int batch, int tokens, int? headDim)
    {
        if (length >= expected) return;
        string shape = headDim is int d ? $"[B={batch}, N={tokens}, D={d}]" : $"[B={batch}, N={tokens}]";
        throw new KernelException(kernel, $"{name} has {length} elements, needs {shape} = {expected}");
    }
}
