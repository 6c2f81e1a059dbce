using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// The CPU peer of BENCHMARKS.md: libtorch 2.10 through TorchSharp 0.107. Each factory allocates its
/// workload's inputs once (float32, standard normal, weights scaled by 1/sqrt(fan_in)), runs it once and
/// checks that every output and gradient is finite, and returns an <see cref="Action"/> that performs one
/// repetition. Forward-only workloads run under <c>torch.no_grad</c>; forward+backward workloads take
/// every gradient with <c>torch.autograd.grad</c> against a fixed upstream gradient, so nothing
/// accumulates into <c>.grad</c> between repetitions. Each repetition's tensors are freed at its end by a
/// dispose scope, as Python's reference counting would free them.
/// </summary>
public static class LibTorchPeer
{
    private static bool _initialised;

    /// <summary>
    /// Makes TorchSharp loadable (<see cref="ElfVersionPatcher.PatchTorchSharp"/> on the build-output copy)
    /// and sets libtorch's intra-op thread count to <see cref="Environment.ProcessorCount"/>, as
    /// BENCHMARKS.md asks (both sides use all cores). Idempotent; must precede every other TorchSharp call.
    /// </summary>
    /// <returns>One line describing the patch and the thread count.</returns>
    public static string Initialise()
    {
        var patched = ElfVersionPatcher.PatchTorchSharp(AppContext.BaseDirectory);
        string files = patched.Count == 0 ? "no libLibTorchSharp.so found to patch"
            : string.Join(", ", patched.Select(p => $"{Path.GetRelativePath(AppContext.BaseDirectory, p.Path)}: {p.Outcome}"));
        return $"libtorch threads {ConfigureTorch()}; {ElfVersionPatcher.TorchSharpMissingVersion} weak: {files}";
    }

    /// <summary>
    /// The first TorchSharp call, which loads the native library. Kept out of line so that the JIT cannot
    /// run TorchSharp's type initialisers while compiling <see cref="Initialise"/>, before the patch.
    /// </summary>
    /// <returns>libtorch's intra-op thread count.</returns>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int ConfigureTorch()
    {
        if (!_initialised)
        {
            torch.set_num_threads(Environment.ProcessorCount);
            torch.manual_seed(1);
            _initialised = true;
        }
        return torch.get_num_threads();
    }

    /// <summary>K1/K2: C[m x n] = A[m x k] B[k x n] with <c>torch.matmul</c>.</summary>
    public static Action Gemm(int m, int n, int k)
    {
        Tensor a = torch.randn(m, k), b = torch.randn(k, n);
        return Prepare($"gemm {m}x{n}x{k}", forwardOnly: true, () => [torch.matmul(a, b)]);
    }

    /// <summary>
    /// K3/K4: conv2d with bias, square kernel, padding 1, on x[batch, cin, size, size] and
    /// w[cout, cin, kernel, kernel]; with <paramref name="backward"/>, also dx, dw and db.
    /// </summary>
    public static Action Conv2d(int batch, int cin, int cout, int size, int kernel, int stride, bool backward)
    {
        Tensor x = torch.randn(new long[] { batch, cin, size, size }, requires_grad: backward);
        Tensor w = Param(torch.randn(new long[] { cout, cin, kernel, kernel }) * (1.0 / Math.Sqrt(cin * kernel * kernel)), backward);
        Tensor bias = Param(torch.randn(cout) * 0.1, backward);
        long[] strides = [stride, stride], padding = [1, 1];
        Tensor Forward() => F.conv2d(x, w, bias, strides, padding);
        if (!backward) return Prepare("conv2d forward", forwardOnly: true, () => [Forward()]);
        int outSize = (size + 2 - kernel) / stride + 1;
        Tensor dy = torch.randn(batch, cout, outSize, outSize);
        return Prepare("conv2d forward+backward", forwardOnly: false,
            () => Grad(Forward(), dy, x, w, bias));
    }

    /// <summary>
    /// K5: single-head self-attention over x[32, 128, 16, 16] seen as 32 sequences of 256 tokens of
    /// width 128: q, k, v = Linear(tokens), o = Linear(softmax(q k^T / sqrt(128)) v), back to NCHW. The
    /// 1/sqrt(d) scale is applied to q (N x D products) rather than to q k^T (N x N products).
    /// With <paramref name="backward"/>, the gradients of x and of all eight projection parameters.
    /// </summary>
    public static Action SelfAttention(int batch, int channels, int size, bool backward)
    {
        int tokens = size * size;
        double scale = 1.0 / Math.Sqrt(channels);
        Tensor x = torch.randn(new long[] { batch, channels, size, size }, requires_grad: backward);
        Tensor[] p = new Tensor[8];
        for (int i = 0; i < 4; i++)
        {
            p[2 * i] = Param(torch.randn(channels, channels) * (1.0 / Math.Sqrt(channels)), backward);
            p[2 * i + 1] = Param(torch.randn(channels) * 0.1, backward);
        }
        Tensor Forward()
        {
            Tensor h = x.reshape(batch, channels, tokens).transpose(1, 2);
            Tensor q = F.linear(h, p[0], p[1]) * scale, k = F.linear(h, p[2], p[3]), v = F.linear(h, p[4], p[5]);
            Tensor a = torch.softmax(torch.matmul(q, k.transpose(1, 2)), -1);
            return F.linear(torch.matmul(a, v), p[6], p[7]).transpose(1, 2).reshape(batch, channels, size, size);
        }
        if (!backward) return Prepare("self-attention forward", forwardOnly: true, () => [Forward()]);
        Tensor dy = torch.randn(batch, channels, size, size);
        return Prepare("self-attention forward+backward", forwardOnly: false,
            () => Grad(Forward(), dy, [x, .. p]));
    }

    /// <summary>
    /// K5's attention core alone: o = softmax(q k^T / sqrt(d)) v for q, k, v[sequences, tokens, width];
    /// explicitly (matmul, softmax, matmul) or, with <paramref name="fused"/>, through
    /// <c>scaled_dot_product_attention</c> (libtorch's fused CPU kernel). With <paramref name="backward"/>,
    /// dq, dk and dv.
    /// </summary>
    public static Action AttentionCore(int sequences, int tokens, int width, bool fused, bool backward)
    {
        double scale = 1.0 / Math.Sqrt(width);
        Tensor q = torch.randn(new long[] { sequences, tokens, width }, requires_grad: backward);
        Tensor k = torch.randn(new long[] { sequences, tokens, width }, requires_grad: backward);
        Tensor v = torch.randn(new long[] { sequences, tokens, width }, requires_grad: backward);
        Tensor Forward() => fused
            ? F.scaled_dot_product_attention(q, k, v)
            : torch.matmul(torch.softmax(torch.matmul(q * scale, k.transpose(1, 2)), -1), v);
        string name = fused ? "attention core (sdpa)" : "attention core";
        if (!backward) return Prepare($"{name} forward", forwardOnly: true, () => [Forward()]);
        Tensor dO = torch.randn(sequences, tokens, width);
        return Prepare($"{name} forward+backward", forwardOnly: false, () => Grad(Forward(), dO, q, k, v));
    }

    /// <summary>
    /// K6: nn.GroupNorm(groups, channels) then SiLU on x[batch, channels, size, size]. TorchSharp 0.107's
    /// GroupNorm leaves its affine weight and bias uninitialised, so they are set to 1 and 0 here (PyTorch's
    /// defaults). With <paramref name="backward"/>, dx, dweight and dbias.
    /// </summary>
    public static Action GroupNormSiLU(int batch, int channels, int size, int groups, bool backward)
    {
        var norm = torch.nn.GroupNorm(groups, channels);
        Tensor weight = norm.weight ?? throw new InvalidOperationException("GroupNorm has no weight");
        Tensor bias = norm.bias ?? throw new InvalidOperationException("GroupNorm has no bias");
        using (torch.no_grad())
        {
            weight.fill_(1);
            bias.fill_(0);
        }
        Tensor x = torch.randn(new long[] { batch, channels, size, size }, requires_grad: backward);
        Tensor Forward() => F.silu(norm.call(x));
        if (!backward) return Prepare("groupnorm+silu forward", forwardOnly: true, () => [Forward()]);
        Tensor dy = torch.randn(batch, channels, size, size);
        return Prepare("groupnorm+silu forward+backward", forwardOnly: false, () => Grad(Forward(), dy, x, weight, bias));
    }

    /// <summary>A leaf parameter tensor, tracking gradients when the workload has a backward.</summary>
    private static Tensor Param(Tensor t, bool backward) => backward ? t.requires_grad_() : t;

    /// <summary>The forward output followed by the gradients of <paramref name="inputs"/> for upstream <paramref name="dy"/>.</summary>
    private static Tensor[] Grad(Tensor y, Tensor dy, params Tensor[] inputs)
        => [y, .. torch.autograd.grad([y], inputs, [dy])];

    /// <summary>
    /// Runs <paramref name="body"/> once, throws if any tensor it returns holds a non-finite value, and
    /// returns one repetition of it: a dispose scope (and <c>no_grad</c> when <paramref name="forwardOnly"/>)
    /// around the body.
    /// </summary>
    private static Action Prepare(string name, bool forwardOnly, Func<Tensor[]> body)
    {
        Tensor[] Run()
        {
            if (!forwardOnly) return body();
            using (torch.no_grad()) return body();
        }
        using (torch.NewDisposeScope())
        {
            Tensor[] outputs = Run();
            for (int i = 0; i < outputs.Length; i++)
                if (!outputs[i].isfinite().all().item<bool>())
                    throw new InvalidOperationException($"libtorch peer {name}: output {i} {ShapeOf(outputs[i])} has non-finite values");
        }
        return () =>
        {
            using (torch.NewDisposeScope()) Run();
        };
    }

    private static string ShapeOf(Tensor t) => "[" + string.Join(",", t.shape) + "]";
}
