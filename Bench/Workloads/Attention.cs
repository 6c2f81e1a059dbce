using DiffusionCore.Bench.Peer;
using DiffusionCore.Engine;
using DiffusionCore.Kernels.Attention;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// K5 of BENCHMARKS.md: single-head self-attention over x[32,128,16,16] seen as 32 sequences of 256 tokens
/// of width 128: q, k, v projections, softmax(q kᵀ/√128) v, output projection, back to NCHW; forward and
/// forward+backward (dx and the eight projection parameters). Ours uses the Engine's ops
/// (<see cref="Ops.Linear"/>, <see cref="Ops.ScaledDotProductAttention"/>: the tiled FlashAttention-2 kernel);
/// libtorch's is written as a PyTorch U-Net writes it (<see cref="LibTorchPeer.SelfAttention"/>).
/// Flops: the four projections as GEMMs, 4·2·B·N·D², plus the core's two products, 4·B·N²·D.
/// </summary>
[Workload("K5", "self-attention 1 head x[32,128,16,16]: q,k,v,out Linear + softmax(qk^T/sqrt d)v",
    4 * 2.0 * Batch * Tokens * Channels * Channels + 4.0 * Batch * Tokens * Tokens * Channels)]
public class K5Attention : PeerBenchmark
{
    private const int Batch = 32, Channels = 128, Size = 16, Tokens = Size * Size;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        bool grad = pass == Pass.ForwardBackward;
        var generator = new Generator(5);
        float[] x = OursSides.Normal(generator, Batch * Channels * Tokens);
        // Weights [out, in] with fan-in scaling 1/sqrt(128), biases with standard deviation 0.1.
        float[][] parameters = Enumerable.Range(0, 8).Select(i => i % 2 == 0
            ? OursSides.Normal(generator, Channels * Channels, 1 / Math.Sqrt(Channels))
            : OursSides.Normal(generator, Channels, 0.1)).ToArray();
        float[] dy = OursSides.Normal(generator, Batch * Channels * Tokens);
        Tensor tx = OursSides.Leaf(x, [Batch, Channels, Size, Size], grad);
        Tensor[] p = parameters.Select((v, i) => OursSides.Leaf(v, i % 2 == 0 ? [Channels, Channels] : [Channels], grad)).ToArray();
        Tensor tdy = OursSides.Leaf(dy, [Batch, Channels, Size, Size], false);
        Tensor Forward()
        {
            var h = Ops.Transpose(Ops.Reshape(tx, Batch, Channels, Tokens), 1, 2);
            var a = Ops.ScaledDotProductAttention(Ops.Linear(h, p[0], p[1]), Ops.Linear(h, p[2], p[3]), Ops.Linear(h, p[4], p[5]));
            return Ops.Reshape(Ops.Transpose(Ops.Linear(a, p[6], p[7]), 1, 2), Batch, Channels, Size, Size);
        }
        // Outputs: y, dx, dWq, dbq, dWk, dbk, ... The key bias adds q·bk to every score of a query's row, and
        // softmax is invariant to such a shift, so dbk (output 5) is zero in exact arithmetic; its rounding
        // noise is measured against the norm of dbq (output 3), the same kind of gradient.
        return new WorkloadSides(
            OursSides.Engine(pass, Forward, tdy, [tx, .. p]),
            LibTorchPeer.SelfAttention(pass, Batch, Channels, Size, x, parameters, dy),
            ZeroOutputs: new Dictionary<int, int> { [5] = 3 });
    }
}

/// <summary>
/// K5's attention core alone, o = softmax(q kᵀ/√128) v for q, k, v[32, 256, 128] (the 32 sequences of K5),
/// forward and forward+backward (dq, dk, dv): ours is <see cref="Ops.ScaledDotProductAttention"/>, our kernel
/// <see cref="AttentionCpu"/> on preallocated buffers, libtorch's the explicit matmul, softmax, matmul of
/// <see cref="K5Attention"/>'s peer. Separates the attention kernel from the projections' GEMMs.
/// Flops: 4·B·N²·D (no recomputation counted in the backward).
/// </summary>
[Workload("K5core", "attention core q,k,v[32,256,128]: softmax(qk^T/sqrt d)v", 4.0 * Sequences * Tokens * Tokens * Width)]
public class K5AttentionCore : KernelPeerBenchmark
{
    private const int Sequences = 32, Tokens = 256, Width = 128;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        bool grad = pass == Pass.ForwardBackward;
        const int count = Sequences * Tokens * Width;
        var generator = new Generator(55);
        float[] q = OursSides.Normal(generator, count), k = OursSides.Normal(generator, count);
        float[] v = OursSides.Normal(generator, count), dO = OursSides.Normal(generator, count);
        int[] shape = [Sequences, Tokens, Width];
        Tensor tq = OursSides.Leaf(q, shape, grad), tk = OursSides.Leaf(k, shape, grad), tv = OursSides.Leaf(v, shape, grad);
        Tensor tdO = OursSides.Leaf(dO, shape, false);
        float[] o = new float[count], lse = new float[Sequences * Tokens], dq = new float[count], dk = new float[count], dv = new float[count];
        float scale = AttentionCpu.DefaultScale(Width);
        void Kernel()
        {
            AttentionCpu.Forward(Sequences, Tokens, Width, scale, q, k, v, o, lse);
            if (grad) AttentionCpu.Backward(Sequences, Tokens, Width, scale, q, k, v, o, lse, dO, dq, dk, dv);
        }
        return new WorkloadSides(
            OursSides.Engine(pass, () => Ops.ScaledDotProductAttention(tq, tk, tv), tdO, tq, tk, tv),
            LibTorchPeer.AttentionCore(pass, Sequences, Tokens, Width, q, k, v, dO),
            grad ? OursSides.Kernel(Kernel, o, dq, dk, dv) : OursSides.Kernel(Kernel, o));
    }
}
