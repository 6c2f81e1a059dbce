using System.Numerics;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Random;

/// <summary>Fills buffers from a Philox stream on the CPU, in parallel, identically for any thread count.</summary>
public static class PhiloxCpu
{
    /// <summary>
    /// Element e of <paramref name="dst"/> is lane e % 4 of stream block <c>blockOffset + e / 4</c>.
    /// Normals pair lanes (0, 1) and (2, 3) through Box-Muller.
    /// </summary>
    public static void Fill<T>(T[] dst, long count, RandomDistribution distribution, ulong seed, ulong blockOffset) where T : unmanaged, IFloatingPointIeee754<T>
    {
        long blocks = (count + 3) / 4;
        CpuParallel.For(blocks, 4096, (s, e) =>
        {
            Span<float> lanes = stackalloc float[4];
            for (long blk = s; blk < e; blk++)
            {
                var (x0, x1, x2, x3) = Philox.StreamBlock(seed, blockOffset + (ulong)blk);
                switch (distribution)
                {
                    case RandomDistribution.Uniform:
                        lanes[0] = Philox.ToUniform(x0); lanes[1] = Philox.ToUniform(x1);
                        lanes[2] = Philox.ToUniform(x2); lanes[3] = Philox.ToUniform(x3);
                        break;
                    case RandomDistribution.Normal:
                        (lanes[0], lanes[1]) = Philox.BoxMuller(x0, x1);
                        (lanes[2], lanes[3]) = Philox.BoxMuller(x2, x3);
                        break;
                    case RandomDistribution.Rademacher:
                        lanes[0] = (x0 & 1) == 0 ? 1f : -1f; lanes[1] = (x1 & 1) == 0 ? 1f : -1f;
                        lanes[2] = (x2 & 1) == 0 ? 1f : -1f; lanes[3] = (x3 & 1) == 0 ? 1f : -1f;
                        break;
                    default: throw new KernelException("FillRandom", $"unknown distribution {distribution}");
                }
                long baseIndex = blk * 4;
                int n = (int)Math.Min(4, count - baseIndex);
                for (int l = 0; l < n; l++) dst[baseIndex + l] = T.CreateTruncating(lanes[l]);
            }
        });
    }
}
