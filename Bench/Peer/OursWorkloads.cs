using DiffusionCore.Bench.Kernels;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// Gives the peer table our side of each kernel workload, reusing the BenchmarkDotNet classes' set-up
/// (inputs validated there against the references), so both tables time the same calls.
/// </summary>
public static class OursWorkloads
{
    /// <summary>Registers our delegates for K3, K4, the K5 attention core and K6.</summary>
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
        Set("K6-fwd", () => { var b = Setup(new GroupNormBench(), x => x.Setup()); return b.Forward; });
        Set("K6-fwdbwd", () => { var b = Setup(new GroupNormBench(), x => x.Setup()); return b.ForwardBackward; });
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
