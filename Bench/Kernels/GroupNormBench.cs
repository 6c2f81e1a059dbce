using BenchmarkDotNet.Attributes;
using DiffusionCore.Kernels.Norm;

namespace DiffusionCore.Bench.Kernels;

/// <summary>
/// K6 of BENCHMARKS.md: GroupNorm with 32 groups then SiLU on x[32, 128, 16, 16], float32, as one fused kernel;
/// forward alone, and forward followed by the backward (dx, dgamma, dbeta).
/// </summary>
public class GroupNormBench
{
    private const int Batch = 32, Channels = 128, Spatial = 16 * 16, Groups = 32;
    private const double Eps = 1e-5;

    private float[] _x = [], _gamma = [], _beta = [], _y = [], _mean = [], _rstd = [], _dy = [], _dx = [], _dgamma = [], _dbeta = [];

    /// <summary>Allocates the tensors once and fills x, gamma, beta and dy with seeded random values.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(6);
        float[] Fill(int length, float offset, float scale)
        {
            var a = new float[length];
            for (int i = 0; i < length; i++) a[i] = offset + scale * (2 * rng.NextSingle() - 1);
            return a;
        }
        int size = Batch * Channels * Spatial;
        _x = Fill(size, 0.5f, 2f);
        _dy = Fill(size, 0f, 1f);
        _gamma = Fill(Channels, 1f, 0.5f);
        _beta = Fill(Channels, 0f, 0.5f);
        _y = new float[size];
        _dx = new float[size];
        _mean = new float[Batch * Groups];
        _rstd = new float[Batch * Groups];
        _dgamma = new float[Channels];
        _dbeta = new float[Channels];
    }

    /// <summary>K6 forward: y = SiLU(GroupNorm(x)), saving mean and rstd.</summary>
    [Benchmark]
    public void Forward()
        => GroupNormCpu.Forward(Batch, Channels, Spatial, Groups, Eps, _x, _gamma, _beta, _y, _mean, _rstd, fuseSilu: true);

    /// <summary>K6 forward then backward: dx, dgamma and dbeta through the fused SiLU.</summary>
    [Benchmark]
    public void ForwardBackward()
    {
        Forward();
        GroupNormCpu.Backward(Batch, Channels, Spatial, Groups, _x, _gamma, _beta, _mean, _rstd, _dy, _dx, _dgamma, _dbeta, fuseSilu: true);
    }
}
