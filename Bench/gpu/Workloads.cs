using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Ilgpu;

namespace DiffusionCore.GpuBench;

/// <summary>One timed workload: an id shared with Bench/gpu/peer.py, its operation count, and a factory for the call.</summary>
/// <param name="Id">Short id, the same as the peer table's (Bench/Peer/PeerTable.cs) and peer.py's.</param>
/// <param name="Description">What is computed, with shapes.</param>
/// <param name="Flops">Floating-point operations per call (0 where GFLOP/s means nothing, e.g. a norm).</param>
/// <param name="Create">Allocates and fills the inputs on the device and returns the call to time.</param>
public sealed record Workload(string Id, string Description, double Flops, Func<Device, Action> Create);

/// <summary>
/// shared/BENCHMARKS.md's kernel workloads K1-K6 on an ILGPU device, through the IBackend primitives and fused capabilities (K5 also
/// through the Engine's ops, as the peer computes it). Shapes and operation counts are those of Bench/Peer/PeerTable.cs.
/// </summary>
public static class Workloads
{
    private const int B = 32;

    /// <summary>Every workload, in table order.</summary>
    public static IReadOnlyList<Workload> All { get; } = Build();

    private static List<Workload> Build()
    {
        double k3 = 2.0 * B * 64 * 32 * 32 * 64 * 9, k4 = 2.0 * B * 128 * 8 * 8 * 128 * 9;
        double core = 4.0 * B * 256 * 256 * 128, projections = 4 * 2.0 * B * 256 * 128 * 128;
        var k3Shape = new Conv2dShape(B, 64, 32, 32, 64, 3, 3, 1, 1);
        var k4Shape = new Conv2dShape(B, 128, 16, 16, 128, 3, 3, 2, 1);
        return
        [
            new("K1", "GEMM C[1024x1024] = A[1024x1024] B[1024x1024]", 2.0 * 1024 * 1024 * 1024, d => Gemm(d, 1024, 1024, 1024)),
            new("K2", "GEMM C[4096x256] = A[4096x1024] B[1024x256]", 2.0 * 4096 * 256 * 1024, d => Gemm(d, 4096, 256, 1024)),
            new("K3-fwd", "conv3x3 s1 p1 +bias x[32,64,32,32] w[64,64,3,3] forward", k3, d => Conv(d, k3Shape, backward: false)),
            new("K3-fwdbwd", "conv3x3 s1 p1 +bias forward + dx,dw,db", 3 * k3, d => Conv(d, k3Shape, backward: true)),
            new("K4-fwd", "conv3x3 s2 p1 +bias x[32,128,16,16] w[128,128,3,3] forward", k4, d => Conv(d, k4Shape, backward: false)),
            new("K4-fwdbwd", "conv3x3 s2 p1 +bias forward + dx,dw,db", 3 * k4, d => Conv(d, k4Shape, backward: true)),
            new("K5-fwd", "self-attention 1 head x[32,128,16,16]: q,k,v,out Linear + softmax(qk^T/sqrt d)v", core + projections, d => SelfAttention(d, backward: false)),
            new("K5-fwdbwd", "self-attention forward + dx and projection grads", 3 * (core + projections), d => SelfAttention(d, backward: true)),
            new("K5core-fwd", "attention core q,k,v[32,256,128] fused forward", core, d => AttentionCore(d, backward: false)),
            new("K5core-fwdbwd", "attention core forward + dq,dk,dv", 3 * core, d => AttentionCore(d, backward: true)),
            new("K6-fwd", "GroupNorm(32,128)+SiLU x[32,128,16,16] forward", 0, d => GroupNormSilu(d, backward: false)),
            new("K6-fwdbwd", "GroupNorm(32,128)+SiLU forward + dx,dgamma,dbeta", 0, d => GroupNormSilu(d, backward: true)),
        ];
    }

    /// <summary>A device buffer of <paramref name="length"/> float32 values from the Philox stream (uniform on [-1, 1)).</summary>
    private static DeviceBuffer Random(IBackend backend, long length, ulong seed)
    {
        var b = backend.Allocate(length, DType.Float32, zero: false);
        backend.FillRandom(b, RandomDistribution.Uniform, seed, 0);
        backend.Affine(b, b, length, 2.0, -1.0);
        return b;
    }

    private static Action Gemm(Device device, int m, int n, int k)
    {
        var be = device.Backend;
        var a = Random(be, (long)m * k, 1);
        var b = Random(be, (long)k * n, 2);
        var c = be.Allocate((long)m * n, DType.Float32);
        return () => be.Gemm(false, false, 1, m, n, k, 1.0, a, 0, 0, b, 0, 0, 0.0, c, 0, 0);
    }

    private static Action Conv(Device device, Conv2dShape s, bool backward)
    {
        var be = device.Backend;
        var x = Random(be, s.InputLength, 3);
        var w = Random(be, s.WeightLength, 4);
        var bias = Random(be, s.Cout, 5);
        var y = be.Allocate(s.OutputLength, DType.Float32);
        var dy = Random(be, s.OutputLength, 6);
        var dx = be.Allocate(s.InputLength, DType.Float32);
        var dw = be.Allocate(s.WeightLength, DType.Float32);
        var db = be.Allocate(s.Cout, DType.Float32);
        var conv = be.GetCapability<IConvolutionKernels>()!;
        return () =>
        {
            conv.Conv2dForward(s, x, w, bias, y);
            if (!backward) return;
            conv.Conv2dBackwardInput(s, dy, w, dx);
            conv.Conv2dBackwardWeight(s, x, dy, dw, db);
        };
    }

    private static Action AttentionCore(Device device, bool backward)
    {
        const int tokens = 256, dim = 128;
        long n = (long)B * tokens * dim;
        var be = device.Backend;
        var q = Random(be, n, 7);
        var k = Random(be, n, 8);
        var v = Random(be, n, 9);
        var o = be.Allocate(n, DType.Float32);
        var lse = be.Allocate((long)B * tokens, DType.Float32);
        var dO = Random(be, n, 10);
        var dq = be.Allocate(n, DType.Float32);
        var dk = be.Allocate(n, DType.Float32);
        var dv = be.Allocate(n, DType.Float32);
        double scale = 1 / Math.Sqrt(dim);
        var attention = be.GetCapability<IAttentionKernels>()!;
        return () =>
        {
            attention.AttentionForward(B, tokens, dim, scale, q, k, v, o, lse);
            if (backward) attention.AttentionBackward(B, tokens, dim, scale, q, k, v, o, lse, dO, dq, dk, dv);
        };
    }

    private static Action GroupNormSilu(Device device, bool backward)
    {
        const int channels = 128, spatial = 16 * 16, groups = 32;
        long n = (long)B * channels * spatial;
        var be = device.Backend;
        var x = Random(be, n, 11);
        var gamma = Random(be, channels, 12);
        var beta = Random(be, channels, 13);
        var y = be.Allocate(n, DType.Float32);
        var mean = be.Allocate(B * groups, DType.Float32);
        var rstd = be.Allocate(B * groups, DType.Float32);
        var dy = Random(be, n, 14);
        var dx = be.Allocate(n, DType.Float32);
        var dgamma = be.Allocate(channels, DType.Float32);
        var dbeta = be.Allocate(channels, DType.Float32);
        var norm = be.GetCapability<IGroupNormKernels>()!;
        return () =>
        {
            norm.GroupNormForward(B, channels, spatial, groups, 1e-5, x, gamma, beta, y, mean, rstd, fuseSilu: true);
            if (backward) norm.GroupNormBackward(B, channels, spatial, groups, x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta, fuseSilu: true);
        };
    }

    /// <summary>
    /// K5 through the Engine's ops on the device, as Bench/Peer/OursWorkloads.cs and peer.py compute it: x[32,128,16,16]
    /// as 32 sequences of 256 tokens, q, k, v projections, fused attention, output projection; with
    /// <paramref name="backward"/> the gradients of x and of the eight projection parameters.
    /// </summary>
    private static Action SelfAttention(Device device, bool backward)
    {
        const int channels = 128, size = 16, tokens = size * size;
        var gen = new Generator(5);
        var x = gen.Normal([B, channels, size, size], DType.Float32, device);
        x.RequiresGrad = backward;
        var p = new Tensor[8];
        for (int i = 0; i < 4; i++)
        {
            p[2 * i] = Ops.Scale(gen.Normal([channels, channels], DType.Float32, device), 1.0 / Math.Sqrt(channels));
            p[2 * i + 1] = Ops.Scale(gen.Normal([channels], DType.Float32, device), 0.1);
            p[2 * i].RequiresGrad = p[2 * i + 1].RequiresGrad = backward;
        }
        var dy = gen.Normal([B, channels, size, size], DType.Float32, device);
        return () =>
        {
            using var scope = TensorScope.Begin();
            using var mode = backward ? null : Autograd.NoGrad();
            var h = Ops.Transpose(Ops.Reshape(x, B, channels, tokens), 1, 2);
            var a = Ops.ScaledDotProductAttention(Ops.Linear(h, p[0], p[1]), Ops.Linear(h, p[2], p[3]), Ops.Linear(h, p[4], p[5]));
            var y = Ops.Reshape(Ops.Transpose(Ops.Linear(a, p[6], p[7]), 1, 2), B, channels, size, size);
            if (backward) Autograd.Grad([y], [x, .. p], [dy]);
        };
    }

    /// <summary>The workloads whose ids are in <paramref name="names"/> (an id or an id prefix such as "K3"); all when empty.</summary>
    public static IReadOnlyList<Workload> Select(IReadOnlyList<string> names)
    {
        if (names.Count == 0) return All;
        var chosen = new List<Workload>();
        foreach (var name in names)
        {
            var hits = All.Where(w => w.Id.Equals(name, StringComparison.OrdinalIgnoreCase) || w.Id.StartsWith(name + "-", StringComparison.OrdinalIgnoreCase)).ToList();
            if (hits.Count == 0) throw new ArgumentException($"no workload '{name}'; known: {string.Join(" ", All.Select(w => w.Id))}", nameof(names));
            chosen.AddRange(hits.Where(h => !chosen.Contains(h)));
        }
        return chosen;
    }

    /// <summary>The ILGPU backend behind a device, for synchronising and compile statistics.</summary>
    public static IlgpuBackend Ilgpu(Device device) =>
        device.Backend as IlgpuBackend ?? throw new ArgumentException($"device {device.Name} is not an ILGPU device", nameof(device));
}
