namespace DiffusionCore.Kernels;

/// <summary>
/// Optional capability: fused (tiled, FlashAttention-style) scaled-dot-product attention that never stores the
/// N x N scores. Without it the Engine computes softmax(scale q kᵀ) v with GEMMs and a softmax (<c>Ops.AttentionComposite</c>).
/// </summary>
public interface IAttentionKernels
{
    /// <summary>
    /// o = softmax(scale q kᵀ) v per sequence over contiguous q, k, v, o [B, N, D]; also writes
    /// lse[B, N] = log Σ_j exp(scale q_i · k_j), the row log-sum-exp kept for <see cref="AttentionBackward"/>.
    /// B and N may be 0.
    /// </summary>
    void AttentionForward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse);

    /// <summary>
    /// Backward of <see cref="AttentionForward"/> from its o and lse: given dO = ∂L/∂o [B, N, D], writes (overwrites)
    /// dq, dk, dv [B, N, D] (softmax Jacobian through Delta_i = dO_i · o_i; FlashAttention-2, Algorithm 2).
    /// </summary>
    void AttentionBackward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse,
        DeviceBuffer dO, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv);
}

/// <summary>
/// The checked base of <see cref="IAttentionKernels"/>: validates sizes (B, N &gt;= 0, D &gt;= 1, a finite scale) and
/// buffers, returns at once when there is no token, and calls the backend's cores.
/// </summary>
public abstract class AttentionKernels<TBuffer>(CheckedBackend<TBuffer> backend) : IAttentionKernels where TBuffer : DeviceBuffer
{
    /// <inheritdoc />
    public void AttentionForward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse)
    {
        const string kernel = "AttentionForward";
        string shape = Check(kernel, batch, tokens, headDim, scale);
        var bq = backend.Own(q, kernel); var bk = backend.Own(k, kernel); var bv = backend.Own(v, kernel);
        var bo = backend.Own(o, kernel); var bl = backend.Own(lse, kernel);
        KernelChecks.SameType(kernel, bq, bk, bv, bo, bl);
        long values = (long)batch * tokens * headDim;
        foreach (var (name, b) in new[] { ("q", bq), ("k", bk), ("v", bv), ("o", bo) }) KernelChecks.Length(kernel, name, b, values, shape);
        KernelChecks.Length(kernel, "lse", bl, (long)batch * tokens, shape);
        KernelChecks.Distinct(kernel, [("o", bo), ("lse", bl)], [("q", bq), ("k", bk), ("v", bv)]);
        if (values > 0) Forward(batch, tokens, headDim, scale, bq, bk, bv, bo, bl);
    }

    /// <inheritdoc />
    public void AttentionBackward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse,
        DeviceBuffer dO, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv)
    {
        const string kernel = "AttentionBackward";
        string shape = Check(kernel, batch, tokens, headDim, scale);
        var bq = backend.Own(q, kernel); var bk = backend.Own(k, kernel); var bv = backend.Own(v, kernel);
        var bo = backend.Own(o, kernel); var bl = backend.Own(lse, kernel); var bdo = backend.Own(dO, kernel);
        var bdq = backend.Own(dq, kernel); var bdk = backend.Own(dk, kernel); var bdv = backend.Own(dv, kernel);
        KernelChecks.SameType(kernel, bq, bk, bv, bo, bl, bdo, bdq, bdk, bdv);
        long values = (long)batch * tokens * headDim;
        foreach (var (name, b) in new[] { ("q", bq), ("k", bk), ("v", bv), ("o", bo), ("dO", bdo), ("dq", bdq), ("dk", bdk), ("dv", bdv) })
            KernelChecks.Length(kernel, name, b, values, shape);
        KernelChecks.Length(kernel, "lse", bl, (long)batch * tokens, shape);
        KernelChecks.Distinct(kernel, [("dq", bdq), ("dk", bdk), ("dv", bdv)], [("q", bq), ("k", bk), ("v", bv), ("o", bo), ("lse", bl), ("dO", bdo)]);
        if (values > 0) Backward(batch, tokens, headDim, scale, bq, bk, bv, bo, bl, bdo, bdq, bdk, bdv);
    }

    /// <summary>The forward pass; B and N are at least 1 and the buffers are checked.</summary>
    protected abstract void Forward(int batch, int tokens, int headDim, double scale, TBuffer q, TBuffer k, TBuffer v, TBuffer o, TBuffer lse);

    /// <summary>The backward pass; B and N are at least 1 and the buffers are checked.</summary>
    protected abstract void Backward(int batch, int tokens, int headDim, double scale,
        TBuffer q, TBuffer k, TBuffer v, TBuffer o, TBuffer lse, TBuffer dO, TBuffer dq, TBuffer dk, TBuffer dv);

    private static string Check(string kernel, int batch, int tokens, int headDim, double scale)
    {
        string shape = $"B={batch}, N={tokens}, D={headDim}";
        if (batch < 0 || tokens < 0 || headDim < 1) throw new KernelException(kernel, $"needs B >= 0, N >= 0, D >= 1: {shape}");
        if (!double.IsFinite(scale)) throw new KernelException(kernel, $"scale {scale} is not finite: {shape}");
        return shape;
    }
}
