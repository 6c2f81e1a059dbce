using BenchmarkDotNet.Attributes;
using DiffusionCore.Kernels.Attention;

namespace DiffusionCore.Bench.Kernels;

/// <summary>
/// K5's attention core (BENCHMARKS.md): 32 sequences of 256 tokens, head width 128, float32,
/// softmax(q k^T / sqrt(128)) v and its backward. The q, k, v and output projections are GEMMs and are
/// measured with the GEMM benchmarks, not here. Flops: forward 4 B N^2 D = 1.07 G; backward 10 B N^2 D.
/// </summary>
[MemoryDiagnoser]
public class AttentionBench
{
    private const int Sequences = 32, Tokens = 256, HeadDim = 128;

    private float[] _q = [], _k = [], _v = [], _o = [], _lse = [], _dO = [], _dq = [], _dk = [], _dv = [];

    /// <summary>Random inputs in [-1, 1) from a fixed seed; outputs allocated once.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(5);
        int count = Sequences * Tokens * HeadDim;
        float[] Random() => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        (_q, _k, _v, _dO) = (Random(), Random(), Random(), Random());
        (_o, _dq, _dk, _dv) = (new float[count], new float[count], new float[count], new float[count]);
        _lse = new float[Sequences * Tokens];
    }

    /// <summary>Forward: o and lse.</summary>
    [Benchmark]
    public void Forward()
        => AttentionCpu.Forward(Sequences, Tokens, HeadDim, AttentionCpu.DefaultScale(HeadDim), _q, _k, _v, _o, _lse);

    /// <summary>Forward, then the backward to dq, dk, dv (one training step's attention core).</summary>
    [Benchmark]
    public void ForwardBackward()
    {
        float scale = AttentionCpu.DefaultScale(HeadDim);
        AttentionCpu.Forward(Sequences, Tokens, HeadDim, scale, _q, _k, _v, _o, _lse);
        AttentionCpu.Backward(Sequences, Tokens, HeadDim, scale, _q, _k, _v, _o, _lse, _dO, _dq, _dk, _dv);
    }
}
