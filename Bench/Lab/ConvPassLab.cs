using System.Globalization;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Bench.Lab;

/// <summary>
/// Every convolution algorithm on every pass of K3, K4 and the other U-Net convolution shapes, one thread, by thread
/// CPU time (threads=N: N threads by the wall clock, only meaningful on a quiet machine): the variants of one shape and pass interleaved repetition by repetition, each validated against the
/// others' results first. GFLOP/s counts 2 N Cout OutH OutW Cin KH KW per pass (BENCHMARKS.md), so a Winograd
/// figure is the direct-convolution work it replaces per second, and can exceed the FMA ceiling.
/// </summary>
internal static class ConvPassLab
{
    /// <summary>K3, K4 and the convolutions of unet-b at batch 32 that K3 and K4 do not cover.</summary>
    private static readonly (string Name, Conv2dShape Shape)[] Workloads =
    [
        ("K3", new Conv2dShape(32, 64, 32, 32, 64, 3, 3, 1, 1)),
        ("K4", new Conv2dShape(32, 128, 16, 16, 128, 3, 3, 2, 1)),
        ("unet-b 16x16 s1", new Conv2dShape(32, 128, 16, 16, 128, 3, 3, 1, 1)),
        ("unet-b 8x8 s1", new Conv2dShape(32, 128, 8, 8, 128, 3, 3, 1, 1)),
        ("unet-b in (Cin 3)", new Conv2dShape(32, 3, 32, 32, 64, 3, 3, 1, 1)),
        ("unet-b out (Cout 3)", new Conv2dShape(32, 64, 32, 32, 3, 3, 3, 1, 1)),
        ("unet-b skip 1x1", new Conv2dShape(32, 192, 16, 16, 128, 1, 1, 1, 0)),
    ];

    public static int Run(string[] args)
    {
        int reps = 9, threads = 1;
        var names = new List<string>();
        foreach (var a in args)
        {
            if (a.StartsWith("reps=", StringComparison.Ordinal)) reps = int.Parse(a[5..], CultureInfo.InvariantCulture);
            else if (a.StartsWith("cfg=", StringComparison.Ordinal)) s_configs.Add(a[4..]);
            else if (a.StartsWith("threads=", StringComparison.Ordinal)) threads = int.Parse(a[8..], CultureInfo.InvariantCulture);
            else names.Add(a);
        }
        if (s_configs.Count == 0) s_configs.Add("");
        int saved = CpuParallel.Threads;
        CpuParallel.Threads = threads;
        s_wallClock = threads > 1 || !ThreadClock.IsThreadTime;
        try
        {
            Console.WriteLine($"conv passes, {threads} thread(s), {(s_wallClock ? "wall clock" : "thread CPU time")}, median and best of {reps}; "
                              + "GFLOP/s of the direct-convolution count; FMA ceiling about 100 GFLOP/s per core here (Zen 3)");
            foreach (var (name, shape) in Workloads)
                if (names.Count == 0 || names.Contains(name))
                    RunShape(name, shape, reps);
        }
        finally
        {
            CpuParallel.Threads = saved;
        }
        return 0;
    }

    /// <summary>Tuning configurations compared interleaved: comma-separated name=value settings of internal knobs.</summary>
    private static readonly List<string> s_configs = [];

    /// <summary>Wall-clock timing: with more than one thread the calling thread's CPU time misses the others'.</summary>
    private static bool s_wallClock;

    private static double Now() => s_wallClock ? System.Diagnostics.Stopwatch.GetTimestamp() / (double)System.Diagnostics.Stopwatch.Frequency : ThreadClock.Seconds();

    private static void Apply(string config)
    {
        foreach (var setting in config.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var (name, value) = (setting.Split('=')[0], int.Parse(setting.Split('=')[1], CultureInfo.InvariantCulture));
            switch (name)
            {
                case "strip": ProductPlan.StripTiles = value; break;
                case "slice": ProductPlan.SliceFloats = value; break;
                case "wstrip": ConvWinogradCpu.StripFloats = value; break;
                case "batch": ReductionPlan.BatchPixels = value; break;
                default: throw new ArgumentException($"lab conv: unknown setting {name}");
            }
        }
    }

    private static void RunShape(string name, Conv2dShape s, int reps)
    {
        var rng = new Random(7);
        float[] x = Random(rng, s.InputLength), w = Random(rng, s.WeightLength), bias = Random(rng, s.Cout), dy = Random(rng, s.OutputLength);
        double flops = 2.0 * s.N * s.Cout * s.OutH * s.OutW * s.Cin * s.KH * s.KW;
        Console.WriteLine($"{name}: {s}");
        foreach (var pass in Enum.GetValues<Conv2dPass>())
        {
            var supported = Enum.GetValues<Conv2dAlgorithm>().Where(a => a != Conv2dAlgorithm.Auto && Conv2dCpu.Supports(s, pass, a)).ToArray();
            var algorithms = supported.SelectMany(a => s_configs.Select(_ => a)).ToArray();
            var configs = supported.SelectMany(_ => s_configs).ToArray();
            var outputs = algorithms.Select(_ => pass switch
            {
                Conv2dPass.Forward => new float[s.OutputLength],
                Conv2dPass.BackwardInput => new float[s.InputLength],
                _ => new float[s.WeightLength + s.Cout],
            }).ToArray();
            void Call(int i)
            {
                Apply(configs[i]);
                var o = outputs[i];
                switch (pass)
                {
                    case Conv2dPass.Forward: Conv2dCpu.Forward(s, x, w, bias, o, algorithms[i]); break;
                    case Conv2dPass.BackwardInput: Conv2dCpu.BackwardInput(s, dy, w, o, algorithms[i]); break;
                    default: Conv2dCpu.BackwardWeight(s, x, dy, o.AsSpan(0, (int)s.WeightLength), o.AsSpan((int)s.WeightLength), algorithms[i]); break;
                }
            }
            for (int warm = 0; warm < 3; warm++)
                for (int i = 0; i < algorithms.Length; i++) Call(i);
            for (int i = 1; i < algorithms.Length; i++)
            {
                double diff = MaxRelativeDifference(outputs[0], outputs[i]);
                if (diff > 1e-3) Console.WriteLine($"  WARNING {pass} {algorithms[i]} differs from {algorithms[0]} by {diff:G3} (relative to the largest |value|)");
            }
            var times = algorithms.Select(_ => new List<double>()).ToArray();
            for (int r = 0; r < reps; r++)
            {
                for (int i = 0; i < algorithms.Length; i++)
                {
                    double t0 = Now();
                    Call(i);
                    times[i].Add(Now() - t0);
                }
            }
            for (int i = 0; i < algorithms.Length; i++)
            {
                times[i].Sort();
                double median = times[i][reps / 2], best = times[i][0];
                string chosen = Conv2dCpu.Choose(s, pass) == algorithms[i] ? " (chosen)" : "";
                Console.WriteLine($"  {pass,-15} {algorithms[i],-9} {configs[i],-20} median {median * 1e3,8:F2} ms {flops / median * 1e-9,6:F1} GFLOP/s   best {best * 1e3,8:F2} ms {flops / best * 1e-9,6:F1} GFLOP/s{chosen}");
            }
        }
    }

    private static float[] Random(Random rng, long n)
    {
        var a = new float[n];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(2 * rng.NextDouble() - 1);
        return a;
    }

    private static double MaxRelativeDifference(float[] a, float[] b)
    {
        double scale = 0, diff = 0;
        for (int i = 0; i < a.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(a[i]));
            diff = Math.Max(diff, Math.Abs(a[i] - b[i]));
        }
        return scale == 0 ? diff : diff / scale;
    }
}
