using System.Diagnostics;
using DiffusionCore.Kernels.Gemm;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// One row of the peer table: a BENCHMARKS.md workload, DiffusionCore's implementation of it and
/// libtorch's. Both actions perform one repetition; make them with <see cref="PeerTable.Lazy"/> so that
/// their inputs are allocated only when the workload is selected.
/// </summary>
/// <param name="Id">Short id used on the command line, e.g. "K3-fwdbwd".</param>
/// <param name="Description">What is computed, with the shapes.</param>
/// <param name="Flops">The standard flop count of one repetition (BENCHMARKS.md "How to measure"); 0 where
/// no flop rate is meaningful.</param>
/// <param name="Ours">DiffusionCore's repetition; null until registered.</param>
/// <param name="Peer">libtorch's repetition.</param>
public sealed record Workload(string Id, string Description, double Flops, Action? Ours, Action Peer);

/// <summary>
/// The "peer" mode of Bench: for each selected workload, times DiffusionCore and libtorch alternately in
/// the same process and prints workload, our median, libtorch's median, libtorch/ours (above 1 means ours
/// is faster) and both flop rates. libtorch's allocator and OpenMP behaviour depend on environment
/// variables read at process start (GLIBC_TUNABLES, OMP_WAIT_POLICY), so the tuned and the as-shipped peer
/// are two processes; Bench/run-peer.sh runs both.
/// </summary>
public static class PeerTable
{
    /// <summary>Calls of each side before timing: the first libtorch call creates its oneDNN primitives.</summary>
    private const int WarmupCalls = 3;

    /// <summary>Least number of timed repetitions per side (BENCHMARKS.md asks for at least 5).</summary>
    private const int MinReps = 7;

    /// <summary>Most timed repetitions per side, for workloads of well under a millisecond.</summary>
    private const int MaxReps = 101;

    /// <summary>Timed seconds aimed at per side and workload; the repetition count follows from the warm-up.</summary>
    private const double TargetSeconds = 1.0;

    /// <summary>
    /// Untimed pause before every timed call, so that each side starts on idle cores: after a libtorch call
    /// its OpenMP workers keep spinning for GOMP_SPINCOUNT iterations (about 20 ns each here; 100000 in
    /// run-peer.sh's tuned run, about 2 ms), and would otherwise take a core from our next call.
    /// </summary>
    private const int SettleMilliseconds = 5;

    private static readonly List<Workload> Registry = Builtin();

    /// <summary>The registered workloads, in table order.</summary>
    public static IReadOnlyList<Workload> Workloads => Registry;

    /// <summary>
    /// Adds <paramref name="w"/>, or replaces the workload with the same id; e.g. to give a row our
    /// implementation: <c>Register(Workloads.First(x =&gt; x.Id == "K3-fwd") with { Ours = ... })</c>.
    /// </summary>
    public static void Register(Workload w)
    {
        int at = Registry.FindIndex(x => x.Id == w.Id);
        if (at >= 0) Registry[at] = w;
        else Registry.Add(w);
    }

    /// <summary>
    /// An action that builds its real action on first call (allocating inputs then), then runs it on every
    /// call, so that registering a workload costs nothing until it is selected.
    /// </summary>
    public static Action Lazy(Func<Action> make)
    {
        Action? made = null;
        return () => (made ??= make())();
    }

    /// <summary>
    /// Runs the workloads named in <paramref name="workloads"/> (all when empty) and prints the table.
    /// A name selects the workload with that id and those whose id starts with it followed by '-'
    /// ("K3" selects K3-fwd and K3-fwdbwd).
    /// </summary>
    /// <exception cref="ArgumentException">A name selects no workload.</exception>
    public static void Run(string[] workloads)
    {
        var selected = workloads.Length == 0 ? Registry.ToList() : Select(workloads);
        Console.WriteLine("DiffusionCore vs libtorch (TorchSharp-cpu 0.107.0, libtorch 2.10), float32, CPU");
        Console.WriteLine($"cores {Environment.ProcessorCount}; {Environment.OSVersion}; .NET {Environment.Version}");
        Console.WriteLine($"GLIBC_TUNABLES={Env("GLIBC_TUNABLES")} OMP_WAIT_POLICY={Env("OMP_WAIT_POLICY")} GOMP_SPINCOUNT={Env("GOMP_SPINCOUNT")}");
        Console.WriteLine(LibTorchPeer.Initialise());
        if (Env("OMP_WAIT_POLICY").Equals("active", StringComparison.OrdinalIgnoreCase) && Env("GOMP_SPINCOUNT") == "(unset)")
            Console.WriteLine("warning: OMP_WAIT_POLICY=ACTIVE without GOMP_SPINCOUNT: libtorch's idle OpenMP workers spin without end and slow our side; see Bench/run-peer.sh");
        Console.WriteLine($"median of >= {MinReps} alternating repetitions after {WarmupCalls} warm-up calls each, {SettleMilliseconds} ms idle before each; ratio = libtorch / ours (> 1: ours faster)");
        Console.WriteLine();
        Console.WriteLine($"{"workload",-20} {"ours ms",10} {"libtorch ms",12} {"ratio",7} {"ours GF/s",10} {"torch GF/s",11}  description");
        foreach (var w in selected)
        {
            var (ours, peer) = Measure(w);
            Console.WriteLine($"{w.Id,-20} {Ms(ours),10} {Ms(peer),12} {Ratio(peer, ours),7} {Rate(w.Flops, ours),10} {Rate(w.Flops, peer),11}  {w.Description}");
        }
    }

    /// <summary>Medians in seconds of <paramref name="w"/>'s two sides (ours NaN when not registered).</summary>
    private static (double Ours, double Peer) Measure(Workload w)
    {
        for (int i = 0; i < WarmupCalls; i++)
        {
            w.Ours?.Invoke();
            w.Peer();
        }
        double probe = Math.Max(w.Ours is null ? 0 : Time(w.Ours), Time(w.Peer));
        int reps = Math.Clamp((int)Math.Ceiling(TargetSeconds / Math.Max(probe, 1e-6)), MinReps, MaxReps);
        var ours = new double[reps];
        var peer = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            ours[r] = w.Ours is null ? double.NaN : Time(w.Ours);
            peer[r] = Time(w.Peer);
        }
        return (Median(ours), Median(peer));
    }

    private static double Time(Action a)
    {
        Thread.Sleep(SettleMilliseconds);
        long start = Stopwatch.GetTimestamp();
        a();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private static double Median(double[] xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : 0.5 * (s[s.Length / 2 - 1] + s[s.Length / 2]);
    }

    private static List<Workload> Select(string[] names)
    {
        var selected = new List<Workload>();
        foreach (string name in names)
        {
            var hits = Registry.Where(w => w.Id.Equals(name, StringComparison.OrdinalIgnoreCase)
                || w.Id.StartsWith(name + "-", StringComparison.OrdinalIgnoreCase)).ToList();
            if (hits.Count == 0)
                throw new ArgumentException($"peer: no workload '{name}'; known: {string.Join(" ", Registry.Select(w => w.Id))}", nameof(names));
            selected.AddRange(hits.Where(h => !selected.Contains(h)));
        }
        return selected;
    }

    private static string Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : "(unset)";
    private static string Ms(double s) => double.IsNaN(s) ? "-" : (s * 1e3).ToString("F3");
    private static string Ratio(double peer, double ours) => double.IsNaN(ours) ? "-" : (peer / ours).ToString("F2");
    private static string Rate(double flops, double s) => flops <= 0 || double.IsNaN(s) ? "-" : (flops / s * 1e-9).ToString("F1");

    /// <summary>
    /// BENCHMARKS.md's CPU workloads K1-K6 with libtorch's side, and our side where DiffusionCore has a
    /// kernel for it (the GEMMs so far). Flops: 2mnk for a GEMM; 2 N Cout Hout Wout Cin kh kw for a conv
    /// forward, three times that for forward+backward; attention core 4 B N^2 D forward and 8 B N^2 D more
    /// for the backward (no recomputation counted); K5 adds its four projections as GEMMs.
    /// </summary>
    private static List<Workload> Builtin()
    {
        const int B = 32;
        double k3 = 2.0 * B * 64 * 32 * 32 * 64 * 9, k4 = 2.0 * B * 128 * 8 * 8 * 128 * 9;
        double core = 4.0 * B * 256 * 256 * 128, projections = 4 * 2.0 * B * 256 * 128 * 128;
        return
        [
            Gemm("K1", 1024, 1024, 1024),
            Gemm("K2", 4096, 256, 1024),
            new("K3-fwd", "conv3x3 s1 p1 +bias x[32,64,32,32] w[64,64,3,3] forward", k3, null,
                Lazy(() => LibTorchPeer.Conv2d(B, 64, 64, 32, 3, 1, backward: false))),
            new("K3-fwdbwd", "conv3x3 s1 p1 +bias forward + dx,dw,db", 3 * k3, null,
                Lazy(() => LibTorchPeer.Conv2d(B, 64, 64, 32, 3, 1, backward: true))),
            new("K4-fwd", "conv3x3 s2 p1 +bias x[32,128,16,16] w[128,128,3,3] forward", k4, null,
                Lazy(() => LibTorchPeer.Conv2d(B, 128, 128, 16, 3, 2, backward: false))),
            new("K4-fwdbwd", "conv3x3 s2 p1 +bias forward + dx,dw,db", 3 * k4, null,
                Lazy(() => LibTorchPeer.Conv2d(B, 128, 128, 16, 3, 2, backward: true))),
            new("K5-fwd", "self-attention 1 head x[32,128,16,16]: q,k,v,out Linear + softmax(qk^T/sqrt d)v", core + projections, null,
                Lazy(() => LibTorchPeer.SelfAttention(B, 128, 16, backward: false))),
            new("K5-fwdbwd", "self-attention forward + dx and projection grads", 3 * (core + projections), null,
                Lazy(() => LibTorchPeer.SelfAttention(B, 128, 16, backward: true))),
            new("K5core-fwd", "attention core q,k,v[32,256,128] explicit matmul/softmax/matmul", core, null,
                Lazy(() => LibTorchPeer.AttentionCore(B, 256, 128, fused: false, backward: false))),
            new("K5core-fwdbwd", "attention core forward + dq,dk,dv", 3 * core, null,
                Lazy(() => LibTorchPeer.AttentionCore(B, 256, 128, fused: false, backward: true))),
            new("K5core-sdpa-fwd", "attention core via scaled_dot_product_attention", core, null,
                Lazy(() => LibTorchPeer.AttentionCore(B, 256, 128, fused: true, backward: false))),
            new("K5core-sdpa-fwdbwd", "attention core via scaled_dot_product_attention + dq,dk,dv", 3 * core, null,
                Lazy(() => LibTorchPeer.AttentionCore(B, 256, 128, fused: true, backward: true))),
            new("K6-fwd", "GroupNorm(32,128)+SiLU x[32,128,16,16] forward", 0, null,
                Lazy(() => LibTorchPeer.GroupNormSiLU(B, 128, 16, 32, backward: false))),
            new("K6-fwdbwd", "GroupNorm(32,128)+SiLU forward + dx,dgamma,dbeta", 0, null,
                Lazy(() => LibTorchPeer.GroupNormSiLU(B, 128, 16, 32, backward: true))),
        ];
    }

    /// <summary>A GEMM row: ours is <see cref="GemmCpu.Sgemm"/> into a preallocated C, libtorch's is torch.matmul.</summary>
    private static Workload Gemm(string id, int m, int n, int k)
    {
        Action Ours()
        {
            var rng = new Random(7);
            float[] a = RandomArray(rng, m * k), b = RandomArray(rng, k * n), c = new float[m * n];
            return () => GemmCpu.Sgemm(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);
        }
        return new(id, $"GEMM C[{m}x{n}] = A[{m}x{k}] B[{k}x{n}]", 2.0 * m * n * k, Lazy(Ours),
            Lazy(() => LibTorchPeer.Gemm(m, n, k)));
    }

    private static float[] RandomArray(Random rng, int count)
    {
        var x = new float[count];
        for (int i = 0; i < count; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
