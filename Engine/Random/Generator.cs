using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Random;

namespace DiffusionCore.Engine;

/// <summary>
/// A reproducible random stream: Philox4x32-10 under a 64-bit seed, read from a block counter that
/// advances with every draw. (Seed, Offset) is the whole state, so a stream can be saved in a
/// checkpoint and resumed, and the same state gives the same numbers on every backend.
/// </summary>
public sealed class Generator
{
    /// <summary>A stream starting at block <paramref name="offset"/> of <paramref name="seed"/>'s sequence.</summary>
    public Generator(ulong seed, ulong offset = 0)
    {
        Seed = seed;
        Offset = offset;
    }

    /// <summary>The key of the stream.</summary>
    public ulong Seed { get; }

    /// <summary>Next unused Philox block (each block holds 4 values).</summary>
    public ulong Offset { get; set; }

    /// <summary>An independent stream for sub-task <paramref name="stream"/> (seed mixed by SplitMix64).</summary>
    public Generator Split(ulong stream)
    {
        ulong z = Seed + 0x9E3779B97F4A7C15UL * (stream + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return new Generator(z ^ (z >> 31));
    }

    private ulong Take(long count)
    {
        ulong start = Offset;
        Offset += (ulong)((count + 3) / 4);
        return start;
    }

    private Tensor Draw(int[] shape, RandomDistribution distribution, DType dtype, Device? device)
    {
        var t = Tensor.Empty(shape, dtype, device);
        t.Device.Backend.FillRandom(t.Buffer, distribution, Seed, Take(t.Count));
        return t;
    }

    /// <summary>Standard normal draws.</summary>
    public Tensor Normal(int[] shape, DType dtype = DType.Float32, Device? device = null) => Draw(shape, RandomDistribution.Normal, dtype, device);

    /// <summary>Uniform draws on [0, 1).</summary>
    public Tensor Uniform(int[] shape, DType dtype = DType.Float32, Device? device = null) => Draw(shape, RandomDistribution.Uniform, dtype, device);

    /// <summary>Rademacher draws (+1 or -1).</summary>
    public Tensor Rademacher(int[] shape, DType dtype = DType.Float32, Device? device = null) => Draw(shape, RandomDistribution.Rademacher, dtype, device);

    /// <summary><paramref name="count"/> integers uniform on [0, <paramref name="maxExclusive"/>).</summary>
    public int[] Integers(int count, int maxExclusive)
    {
        if (maxExclusive <= 0) throw new ArgumentOutOfRangeException(nameof(maxExclusive), maxExclusive, "must be positive");
        var r = new int[count];
        ulong start = Take(count);
        for (int i = 0; i < count; i += 4)
        {
            var (a, b, c, d) = Philox.StreamBlock(Seed, start + (ulong)(i / 4));
            uint[] lanes = [a, b, c, d];
            for (int l = 0; l < 4 && i + l < count; l++) r[i + l] = Philox.ToInt(lanes[l], maxExclusive);
        }
        return r;
    }

    /// <summary><paramref name="count"/> uniform draws on [0, 1) in host memory.</summary>
    public float[] UniformHost(int count)
    {
        var r = new float[count];
        PhiloxCpu.Fill(r, count, RandomDistribution.Uniform, Seed, Take(count));
        return r;
    }

    /// <summary><paramref name="count"/> standard normal draws in host memory.</summary>
    public float[] NormalHost(int count)
    {
        var r = new float[count];
        PhiloxCpu.Fill(r, count, RandomDistribution.Normal, Seed, Take(count));
        return r;
    }
}
