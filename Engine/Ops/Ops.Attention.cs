using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// Scaled-dot-product attention, o = softmax(scale · q kᵀ) v per sequence (Vaswani et al. 2017, eq. 1), for
    /// q, k, v of one shape [B, N, D] (B sequences, e.g. batch × heads; N tokens; D head width). The scale defaults
    /// to 1/sqrt(D).
    /// B and N may be 0 (an empty result and empty gradients).
    /// <para>
    /// On a backend with <see cref="IAttentionKernels"/>, forward and first-order backward are the tiled kernels
    /// (FlashAttention-2, Dao 2023): the N × N score matrix is never stored, only the row log-sum-exp. When the backward
    /// pass is itself recorded (createGraph), the gradient is instead taken through <see cref="AttentionComposite"/>, the
    /// same function built from MatMul and Softmax, so it can be differentiated again; a backend without the kernels
    /// runs the composite throughout.
    /// </para>
    /// </summary>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, double? scale = null)
    {
        const string op = "ScaledDotProductAttention";
        var (b, n, d) = AttentionShape(op, q, k, v, scale);
        double s = scale ?? 1.0 / Math.Sqrt(d);
        if (q.Backend.GetCapability<IAttentionKernels>() is not { } kernels) return AttentionComposite(q, k, v, s);
        var o = NewLike(q);
        var lse = NewLike(q, [b, n]);
        kernels.AttentionForward(b, n, d, s, q.Buffer, k.Buffer, v.Buffer, o.Buffer, lse.Buffer);
        Tensor[] inputs = [q, k, v];
        if (!Autograd.IsRecording || !inputs.Any(t => t.TracksGrad))
        {
            lse.Dispose();
            return o;
        }
        // The kernel's backward reads o; a detached alias keeps it readable without holding o's graph node.
        var saved = o.Detach();
        return Autograd.Record(o, op, inputs, g =>
        {
            if (Autograd.IsRecording)
                return GradientByRecompute(inputs, g, t => AttentionComposite(t[0], t[1], t[2], s));
            var dq = NewLike(q);
            var dk = NewLike(k);
            var dv = NewLike(v);
            kernels.AttentionBackward(b, n, d, s, q.Buffer, k.Buffer, v.Buffer, saved.Buffer, lse.Buffer,
                g.Buffer, dq.Buffer, dk.Buffer, dv.Buffer);
            return KeepTracked(inputs, [dq, dk, dv]);
        });
    }

    /// <summary>
    /// <see cref="ScaledDotProductAttention"/> written with differentiable ops, softmax(scale · q kᵀ) v through
    /// <see cref="MatMul"/> and <see cref="Softmax"/>: it stores the N × N probabilities. It is the path of gradients
    /// that must be differentiated again, and the reference the tiled kernel is tested against.
    /// </summary>
    public static Tensor AttentionComposite(Tensor q, Tensor k, Tensor v, double? scale = null)
    {
        var (_, _, d) = AttentionShape("AttentionComposite", q, k, v, scale);
        var scores = Scale(MatMul(q, k, transposeB: true), scale ?? 1.0 / Math.Sqrt(d));
        return MatMul(Softmax(scores, -1), v);
    }

    private static (int B, int N, int D) AttentionShape(string op, Tensor q, Tensor k, Tensor v, double? scale)
    {
        SameDevice(op, q, k);
        SameDevice(op, q, v);
        string desc = $"q {ShapeUtil.Format(q.Shape)}, k {ShapeUtil.Format(k.Shape)}, v {ShapeUtil.Format(v.Shape)}";
        if (q.Rank != 3) throw new TensorException(op, $"needs [B, N, D] tensors: {desc}");
        if (!ShapeUtil.Same(q.Shape, k.Shape) || !ShapeUtil.Same(q.Shape, v.Shape))
            throw new TensorException(op, $"q, k and v must have one shape: {desc}");
        if (q.Shape[2] < 1) throw new TensorException(op, $"head width D must be at least 1: {desc}");
        if (scale is double s && !double.IsFinite(s)) throw new TensorException(op, $"scale {s} is not finite: {desc}");
        return (q.Shape[0], q.Shape[1], q.Shape[2]);
    }
}
