using DiffusionCore.Bench.Kernels;
using DiffusionCore.Engine;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// Gives the peer table our side of each kernel workload, reusing the BenchmarkDotNet classes' set-up
/// (inputs validated there against the references), so both tables time the same calls.
/// </summary>
public static class OursWorkloads
{
    /// <summary>Registers our delegates for K3, K4, K5 (whole block and attention core) and K6.</summary>
    public static void Register()
    {
        Set("K3-fwd", () => { var b = Setup(new Conv2dBench(), x => x.Setup()); return b.K3Forward; });
        Set("K3-fwdbwd", () => { var b = Setup(new Conv2dBench(), x => x.Setup()); return b.K3ForwardBackward; });
        Set("K4-fwd", () => { var b = Setup(new Conv2dBench(), x => x.Setup()); return b.K4Forward; });
        Set("K4-fwdbwd", () => { var b = Setup(new Conv2dBench(), x => x.Setup()); return b.K4ForwardBackward; });
        Set("K5core-fwd", () => { var b = Setup(new AttentionBench(), x => x.Setup()); return b.Forward; });
        Set("K5core-fwdbwd", () => { var b = Setup(new AttentionBench(), x => x.Setup()); return b.ForwardBackward; });
        Set("K5core-sdpa-fwd", () => { var b = Setup(new AttentionBench(), x => x.Setup()); return b.Forward; });
        Set("K5core-sdpa-fwdbwd", () => { var b = Setup(new AttentionBench(), x => x.Setup()); return b.ForwardBackward; });
        Set("K5-fwd", () => SelfAttention(backward: false));
        Set("K5-fwdbwd", () => SelfAttention(backward: true));
        Set("K6-fwd", () => { var b = Setup(new GroupNormBench(), x => x.Setup()); return b.Forward; });
        Set("K6-fwdbwd", () => { var b = Setup(new GroupNormBench(), x => x.Setup()); return b.ForwardBackward; });
    }

    /// <summary>
    /// K5 through the Engine's tensor ops, as the peer computes it: x[32,128,16,16] as 32 sequences of 256
    /// tokens, q,k,v projections, fused attention, output projection; with <paramref name="backward"/>
    /// the gradients of x and of the eight projection parameters.
    /// </summary>
    private static Action SelfAttention(bool backward)
    {
        const int batch = 32, channels = 128, size = 16, tokens = size * size;
        var gen = new Generator(5);
        var x = TensorScope.Escape(gen.Normal([batch, channels, size, size]));
        x.RequiresGrad = backward;
        var p = new Tensor[8];
        for (int i = 0; i < 4; i++)
        {
            p[2 * i] = TensorScope.Escape(Ops.Scale(gen.Normal([channels, channels]), 1.0 / Math.Sqrt(channels)));
            p[2 * i + 1] = TensorScope.Escape(Ops.Scale(gen.Normal([channels]), 0.1));
            p[2 * i].RequiresGrad = p[2 * i + 1].RequiresGrad = backward;
        }
        var dy = TensorScope.Escape(gen.Normal([batch, channels, size, size]));
        return () =>
        {
            using var scope = TensorScope.Begin();
            using var mode = backward ? null : Autograd.NoGrad();
            var h = Ops.Transpose(Ops.Reshape(x, batch, channels, tokens), 1, 2);
            var a = Ops.ScaledDotProductAttention(Ops.Linear(h, p[0], p[1]), Ops.Linear(h, p[2], p[3]), Ops.Linear(h, p[4], p[5]));
            var y = Ops.Reshape(Ops.Transpose(Ops.Linear(a, p[6], p[7]), 1, 2), batch, channels, size, size);
            if (backward) Autograd.Grad([y], [x, .. p], [dy]);
        };
    }

    private static T Setup<T>(T bench, Action<T> setup)
    {
        setup(bench);
        return bench;
    }

    private static void Set(string id, Func<Action> ours)
    {
        var w = PeerTable.Workloads.First(x => x.Id == id);
        PeerTable.Register(w with { Ours = PeerTable.Lazy(ours) });
    }
}
