using System.Runtime.CompilerServices;
using DiffusionCore.Bench.Workloads;
using DiffusionCore.Kernels.Conv;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// The CPU peer of BENCHMARKS.md: libtorch 2.10 through TorchSharp 0.107. Each factory copies its
/// workload's inputs from the host arrays that our side also uses, and returns a <see cref="WorkloadSide"/>.
/// Forward-only passes run under <c>torch.no_grad</c>; forward+backward passes take every gradient with
/// <c>torch.autograd.grad</c> against a fixed upstream gradient, so nothing accumulates into <c>.grad</c>
/// between repetitions. Each repetition's tensors are freed at its end by a dispose scope, as Python's
/// reference counting would free them. <see cref="WorkloadSide.Results"/> throws if any output or gradient
/// is not finite.
/// </summary>
public static class LibTorchPeer
{
    private static string? _description;

    /// <summary>
    /// Makes TorchSharp loadable (<see cref="ElfVersionPatcher.PatchTorchSharp"/> on the build-output copy)
    /// and sets libtorch's intra-op thread count to <see cref="Environment.ProcessorCount"/>, as
    /// BENCHMARKS.md asks (both sides use all cores). Idempotent; must precede every other TorchSharp call.
    /// </summary>
    /// <returns>One line describing the patch and the thread count.</returns>
    public static string Initialise()
    {
        if (_description is not null) return _description;
        var patched = ElfVersionPatcher.PatchTorchSharp(AppContext.BaseDirectory);
        string files = patched.Count == 0 ? "no libLibTorchSharp.so found to patch"
            : string.Join(", ", patched.Select(p => $"{Path.GetRelativePath(AppContext.BaseDirectory, p.Path)}: {p.Outcome}"));
        return _description = $"libtorch threads {ConfigureTorch()}; {ElfVersionPatcher.TorchSharpMissingVersion} weak: {files}";
    }

    /// <summary>
    /// The first TorchSharp call, which loads the native library. Kept out of line so that the JIT cannot
    /// run TorchSharp's type initialisers while compiling <see cref="Initialise"/>, before the patch.
    /// </summary>
    /// <returns>libtorch's intra-op thread count.</returns>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int ConfigureTorch()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        return torch.get_num_threads();
    }

    /// <summary>K1/K2: C[m x n] = A[m x k] B[k x n] with <c>torch.matmul</c>; a and b row-major.</summary>
    public static WorkloadSide Gemm(int m, int n, int k, float[] a, float[] b)
    {
        var owned = new List<IDisposable>();
        Tensor ta = Input(owned, a, false, m, k), tb = Input(owned, b, false, k, n);
        return Prepare(Pass.Forward, () => torch.matmul(ta, tb), null, [], owned);
    }

    /// <summary>
    /// K3/K4: conv2d with bias of x[N, Cin, H, W] and w[Cout, Cin, KH, KW] with <c>F.conv2d</c>; for
    /// <see cref="Pass.ForwardBackward"/>, then dx, dw and db for the upstream gradient dy.
    /// </summary>
    public static WorkloadSide Conv2d(Pass pass, Conv2dShape s, float[] x, float[] w, float[] bias, float[] dy)
    {
        bool grad = pass == Pass.ForwardBackward;
        var owned = new List<IDisposable>();
        Tensor tx = Input(owned, x, grad, s.N, s.Cin, s.H, s.W);
        Tensor tw = Input(owned, w, grad, s.Cout, s.Cin, s.KH, s.KW);
        Tensor tb = Input(owned, bias, grad, s.Cout);
        Tensor tdy = Input(owned, dy, false, s.N, s.Cout, s.OutH, s.OutW);
        long[] strides = [s.Stride, s.Stride], padding = [s.Pad, s.Pad];
        return Prepare(pass, () => F.conv2d(tx, tw, tb, strides, padding), tdy, [tx, tw, tb], owned);
    }

    /// <summary>
    /// K5: single-head self-attention over x[batch, channels, size, size] seen as batch sequences of size²
    /// tokens of width channels: q, k, v = Linear(tokens), o = Linear(softmax(q kᵀ / sqrt(channels)) v), back
    /// to NCHW, written as a PyTorch U-Net writes it (matmul, softmax, matmul). The 1/sqrt(d) scale is applied
    /// to q (N x D products) rather than to q kᵀ (N x N products). <paramref name="parameters"/> are
    /// Wq, bq, Wk, bk, Wv, bv, Wo, bo (weights [out, in]); the gradients are those of x and of the eight.
    /// </summary>
    public static WorkloadSide SelfAttention(Pass pass, int batch, int channels, int size, float[] x, float[][] parameters, float[] dy)
    {
        bool grad = pass == Pass.ForwardBackward;
        int tokens = size * size;
        double scale = 1.0 / Math.Sqrt(channels);
        var owned = new List<IDisposable>();
        Tensor tx = Input(owned, x, grad, batch, channels, size, size);
        var p = new Tensor[8];
        for (int i = 0; i < 8; i++)
            p[i] = i % 2 == 0 ? Input(owned, parameters[i], grad, channels, channels) : Input(owned, parameters[i], grad, channels);
        Tensor tdy = Input(owned, dy, false, batch, channels, size, size);
        Tensor Forward()
        {
            Tensor h = tx.reshape(batch, channels, tokens).transpose(1, 2);
            Tensor q = F.linear(h, p[0], p[1]) * scale, k = F.linear(h, p[2], p[3]), v = F.linear(h, p[4], p[5]);
            Tensor a = torch.softmax(torch.matmul(q, k.transpose(1, 2)), -1);
            return F.linear(torch.matmul(a, v), p[6], p[7]).transpose(1, 2).reshape(batch, channels, size, size);
        }
        return Prepare(pass, Forward, tdy, [tx, .. p], owned);
    }

    /// <summary>
    /// K5's attention core alone: o = softmax(q kᵀ / sqrt(width)) v for q, k, v[sequences, tokens, width],
    /// explicitly (matmul, softmax, matmul) as in <see cref="SelfAttention"/>; the gradients are dq, dk, dv.
    /// </summary>
    public static WorkloadSide AttentionCore(Pass pass, int sequences, int tokens, int width, float[] q, float[] k, float[] v, float[] dO)
    {
        bool grad = pass == Pass.ForwardBackward;
        double scale = 1.0 / Math.Sqrt(width);
        var owned = new List<IDisposable>();
        Tensor tq = Input(owned, q, grad, sequences, tokens, width);
        Tensor tk = Input(owned, k, grad, sequences, tokens, width);
        Tensor tv = Input(owned, v, grad, sequences, tokens, width);
        Tensor tdO = Input(owned, dO, false, sequences, tokens, width);
        return Prepare(pass, () => torch.matmul(torch.softmax(torch.matmul(tq * scale, tk.transpose(1, 2)), -1), tv),
            tdO, [tq, tk, tv], owned);
    }

    /// <summary>
    /// K6: <c>nn.GroupNorm(groups, channels)</c> then SiLU on x[batch, channels, size, size]. TorchSharp 0.107's
    /// GroupNorm leaves its affine weight and bias uninitialised, so they are set to 1 and 0 here (PyTorch's
    /// defaults, and what our side uses). The gradients are dx, dweight and dbias.
    /// </summary>
    public static WorkloadSide GroupNormSilu(Pass pass, int batch, int channels, int size, int groups, float[] x, float[] dy)
    {
        bool grad = pass == Pass.ForwardBackward;
        var owned = new List<IDisposable>();
        var norm = torch.nn.GroupNorm(groups, channels);
        owned.Add(norm);
        Tensor weight = norm.weight ?? throw new InvalidOperationException("libtorch peer: GroupNorm has no weight");
        Tensor bias = norm.bias ?? throw new InvalidOperationException("libtorch peer: GroupNorm has no bias");
        using (torch.no_grad())
        {
            weight.fill_(1);
            bias.fill_(0);
        }
        Tensor tx = Input(owned, x, grad, batch, channels, size, size);
        Tensor tdy = Input(owned, dy, false, batch, channels, size, size);
        return Prepare(pass, () => F.silu(norm.call(tx)), tdy, [tx, weight, bias], owned);
    }

    /// <summary>A float32 tensor holding a copy of <paramref name="data"/>, added to <paramref name="owned"/>.</summary>
    private static Tensor Input(List<IDisposable> owned, float[] data, bool requiresGrad, params long[] shape)
    {
        Tensor t = torch.tensor(data, shape, requires_grad: requiresGrad);
        owned.Add(t);
        return t;
    }

    /// <summary>
    /// A side whose repetition is <paramref name="forward"/> under <c>no_grad</c> (<see cref="Pass.Forward"/>),
    /// or the forward and the gradients of <paramref name="inputs"/> for <paramref name="dy"/>, in a dispose
    /// scope. Its results are checked finite.
    /// </summary>
    private static WorkloadSide Prepare(Pass pass, Func<Tensor> forward, Tensor? dy, Tensor[] inputs, List<IDisposable> owned)
    {
        Tensor[] Body()
        {
            if (pass == Pass.Forward)
            {
                using (torch.no_grad()) return [forward()];
            }
            Tensor y = forward();
            return [y, .. torch.autograd.grad([y], inputs, [dy ?? throw new ArgumentNullException(nameof(dy), "a backward needs dy")])];
        }
        float[][] Results()
        {
            using var scope = torch.NewDisposeScope();
            Tensor[] outputs = Body();
            for (int i = 0; i < outputs.Length; i++)
                if (!outputs[i].isfinite().all().item<bool>())
                    throw new InvalidOperationException($"libtorch peer: output {i} [{string.Join(",", outputs[i].shape)}] has non-finite values");
            return outputs.Select(t => t.contiguous().data<float>().ToArray()).ToArray();
        }
        return new WorkloadSide("libtorch",
            () =>
            {
                using var scope = torch.NewDisposeScope();
                Body();
            },
            Results,
            () => owned.ForEach(d => d.Dispose()));
    }
}
