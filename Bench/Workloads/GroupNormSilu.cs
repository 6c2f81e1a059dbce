using DiffusionCore.Bench.Peer;
using DiffusionCore.Engine;
using DiffusionCore.Kernels.Norm;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// K6 of BENCHMARKS.md: GroupNorm(32 groups, 128 channels) then SiLU on x[32,128,16,16], forward and
/// forward+backward (dx, dgamma, dbeta). Ours is <see cref="Ops.GroupNormSilu"/> (one fused kernel), our
/// kernel <see cref="GroupNormCpu"/> on preallocated buffers, libtorch's <c>nn.GroupNorm</c> then
/// <c>F.silu</c>. gamma = 1 and beta = 0 on every side (PyTorch's initial values; libtorch's must be set by
/// hand, see <see cref="LibTorchPeer.GroupNormSilu"/>). x has mean 0.5 and standard deviation 2, so the
/// centring and scaling both matter. Memory-bound: no flop rate is reported.
/// </summary>
[Workload("K6", "GroupNorm(32 groups, 128 ch) + SiLU x[32,128,16,16]")]
public class K6GroupNormSilu : KernelPeerBenchmark
{
    private const int Batch = 32, Channels = 128, Size = 16, Spatial = Size * Size, Groups = 32;
    private const double Eps = 1e-5;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        bool grad = pass == Pass.ForwardBackward;
        const int count = Batch * Channels * Spatial;
        var generator = new Generator(6);
        float[] x = OursSides.Normal(generator, count, std: 2, mean: 0.5), dy = OursSides.Normal(generator, count);
        float[] gamma = Enumerable.Repeat(1f, Channels).ToArray(), beta = new float[Channels];
        int[] shape = [Batch, Channels, Size, Size];
        Tensor tx = OursSides.Leaf(x, shape, grad), tdy = OursSides.Leaf(dy, shape, false);
        Tensor tgamma = OursSides.Leaf(gamma, [Channels], grad), tbeta = OursSides.Leaf(beta, [Channels], grad);
        float[] y = new float[count], mean = new float[Batch * Groups], rstd = new float[Batch * Groups];
        float[] dx = new float[count], dgamma = new float[Channels], dbeta = new float[Channels];
        void Kernel()
        {
            GroupNormCpu.Forward<float>(Batch, Channels, Spatial, Groups, Eps, x, gamma, beta, y, mean, rstd, fuseSilu: true);
            if (grad) GroupNormCpu.Backward<float>(Batch, Channels, Spatial, Groups, x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta, fuseSilu: true);
        }
        return new WorkloadSides(
            OursSides.Engine(pass, () => Ops.GroupNormSilu(tx, Groups, tgamma, tbeta, Eps), tdy, tx, tgamma, tbeta),
            LibTorchPeer.GroupNormSilu(pass, Batch, Channels, Size, Groups, x, dy),
            grad ? OursSides.Kernel(Kernel, y, dx, dgamma, dbeta) : OursSides.Kernel(Kernel, y));
    }
}
