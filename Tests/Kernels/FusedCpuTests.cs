using NUnit.Framework;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Tests.Kernels;

/// <summary>CpuBackend's fused sampler update and Hutchinson per-sample dot product against plain float64 loops.</summary>
[TestFixture]
public sealed class FusedCpuTests
{
    private static CpuBackend Cpu => CpuBackend.Instance;

    private static float[] Random(int seed, int n)
    {
        var rng = new System.Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
    }

    private static DeviceBuffer Put(float[] data)
    {
        var b = Cpu.Allocate(data.Length, DType.Float32);
        Cpu.Upload<float>(b, data);
        return b;
    }

    private static float[] Get(DeviceBuffer b)
    {
        var host = new float[b.Length];
        Cpu.Download<float>(b, host);
        return host;
    }

    [TestCase(true)]
    [TestCase(false)]
    public void SamplerUpdate_IsTheWeightedSum(bool withNoise)
    {
        // 70001 elements: more than one thread's share (2^15), with a tail; only the first `count` change.
        const int n = 70_001, count = 70_000;
        var x = Random(1, n);
        var eps = Random(2, n);
        var z = Random(3, n);
        using var bx = Put(x);
        using var be = Put(eps);
        using var bz = Put(z);
        Cpu.SamplerUpdate(bx, be, withNoise ? bz : null, count, 0.99, -0.05, 0.2);
        var y = Get(bx);
        for (int i = 0; i < n; i++)
        {
            double expected = i < count ? 0.99f * (double)x[i] + -0.05f * (double)eps[i] + (withNoise ? 0.2f * (double)z[i] : 0) : x[i];
            // float32 evaluation of three products and two sums: within 4 ulp of the terms' magnitude (|terms| <= 2.5).
            Assert.That(y[i], Is.EqualTo(expected).Within(4 * 2.5 * Math.Pow(2, -24)), $"element {i}");
        }
    }

    [Test]
    public void HutchinsonDot_IsThePerSampleDotProduct()
    {
        const int batch = 5, length = 37;
        var a = Random(4, batch * length);
        var v = Random(5, batch * length);
        using var ba = Put(a);
        using var bv = Put(v);
        using var by = Cpu.Allocate(batch, DType.Float32);
        Cpu.HutchinsonDot(ba, bv, by, batch, length);
        var y = Get(by);
        for (int s = 0; s < batch; s++)
        {
            double expected = 0, magnitude = 0;
            for (int i = 0; i < length; i++)
            {
                expected += (double)a[s * length + i] * v[s * length + i];
                magnitude += Math.Abs((double)a[s * length + i] * v[s * length + i]);
            }
            // Any summation order of n float32 products is within n u Σ|a_i v_i| of the exact sum (Higham 2002, eq. 4.4).
            Assert.That(y[s], Is.EqualTo(expected).Within((length + 1) * Math.Pow(2, -24) * magnitude), $"sample {s}");
        }
    }

    [Test]
    public void FusedKernels_RejectBadArguments()
    {
        using var small = Cpu.Allocate(3, DType.Float32);
        using var large = Cpu.Allocate(10, DType.Float32);
        using var wide = Cpu.Allocate(10, DType.Float64);
        Assert.That(() => Cpu.SamplerUpdate(large, large, small, 10, 1, 1, 1), Throws.TypeOf<KernelException>().With.Message.Contains("SamplerUpdate"));
        Assert.That(() => Cpu.SamplerUpdate(large, wide, null, 10, 1, 1, 1), Throws.TypeOf<KernelException>().With.Message.Contains("mixed dtypes"));
        Assert.That(() => Cpu.HutchinsonDot(large, large, small, 5, 2), Throws.TypeOf<KernelException>().With.Message.Contains("5 samples"));
        Assert.That(() => Cpu.HutchinsonDot(large, large, small, 3, 4), Throws.TypeOf<KernelException>().With.Message.Contains("HutchinsonDot"));
    }
}
