using BenchmarkDotNet.Attributes;
using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Bench.Kernels;

/// <summary>
/// K3 and K4 of BENCHMARKS.md on the CPU. GFLOP/s = 2 N Cout OutH OutW Cin KH KW / time for the forward
/// (K3: 2.416 GFLOP, K4: 1.208 GFLOP); the backward (dx and dw) is twice that, so forward + backward is
/// three times the forward count (K3: 7.248 GFLOP, K4: 3.624 GFLOP).
/// </summary>
[MemoryDiagnoser]
public class Conv2dBench
{
    private static readonly Conv2dShape K3 = new(N: 32, Cin: 64, H: 32, W: 32, Cout: 64, KH: 3, KW: 3, Stride: 1, Pad: 1);
    private static readonly Conv2dShape K4 = new(N: 32, Cin: 128, H: 16, W: 16, Cout: 128, KH: 3, KW: 3, Stride: 2, Pad: 1);

    private Buffers _k3 = null!;
    private Buffers _k4 = null!;

    /// <summary>Fills inputs with seeded uniform noise and runs each workload once to grow the scratch buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _k3 = new Buffers(K3, seed: 3);
        _k4 = new Buffers(K4, seed: 4);
        ForwardBackward(_k3);
        ForwardBackward(_k4);
    }

    /// <summary>K3 forward: y = conv3x3(x, w) + b.</summary>
    [Benchmark]
    public void K3Forward() => Forward(_k3);

    /// <summary>K3 forward, then dx, dw and db.</summary>
    [Benchmark]
    public void K3ForwardBackward() => ForwardBackward(_k3);

    /// <summary>K4 forward: stride-2 downsampling conv.</summary>
    [Benchmark]
    public void K4Forward() => Forward(_k4);

    /// <summary>K4 forward, then dx, dw and db.</summary>
    [Benchmark]
    public void K4ForwardBackward() => ForwardBackward(_k4);

    private static void Forward(Buffers b) => Conv2dCpu.Forward(b.Shape, b.X, b.W, b.Bias, b.Y);

    private static void ForwardBackward(Buffers b)
    {
        Conv2dCpu.Forward(b.Shape, b.X, b.W, b.Bias, b.Y);
        Conv2dCpu.BackwardInput(b.Shape, b.Dy, b.W, b.Dx);
        Conv2dCpu.BackwardWeight(b.Shape, b.X, b.Dy, b.Dw, b.Db);
    }

    private sealed class Buffers
    {
        public readonly Conv2dShape Shape;
        public readonly float[] X, W, Bias, Y, Dy, Dx, Dw, Db;

        public Buffers(Conv2dShape shape, int seed)
        {
            var rng = new Random(seed);
            Shape = shape;
            X = Noise(rng, shape.InputLength);
            W = Noise(rng, shape.WeightLength);
            Bias = Noise(rng, shape.Cout);
            Dy = Noise(rng, shape.OutputLength);
            Y = new float[shape.OutputLength];
            Dx = new float[shape.InputLength];
            Dw = new float[shape.WeightLength];
            Db = new float[shape.Cout];
        }

        private static float[] Noise(Random rng, long length)
        {
            var a = new float[length];
            for (int i = 0; i < a.Length; i++) a[i] = (float)(2 * rng.NextDouble() - 1);
            return a;
        }
    }
}
