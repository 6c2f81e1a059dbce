using DiffusionCore.Bench.Peer;
using DiffusionCore.Engine;
using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// A conv2d-with-bias workload, forward and forward+backward (dx, dw, db): ours is <see cref="Ops.Conv2d"/>
/// with autograd, our kernel <see cref="Conv2dCpu"/>'s three calls on preallocated buffers, libtorch's
/// <c>F.conv2d</c> (oneDNN here). x and dy are standard normal, w normal with standard deviation
/// 1/sqrt(Cin·KH·KW) (fan-in scaling, so y has unit scale), the bias normal with standard deviation 0.1.
/// </summary>
/// <param name="shape">The convolution.</param>
/// <param name="seed">Seed of the inputs.</param>
public abstract class ConvBenchmark(Conv2dShape shape, ulong seed) : KernelPeerBenchmark
{
    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        var s = shape;
        bool grad = pass == Pass.ForwardBackward;
        var generator = new Generator(seed);
        float[] x = OursSides.Normal(generator, (int)s.InputLength);
        float[] w = OursSides.Normal(generator, (int)s.WeightLength, 1 / Math.Sqrt(s.Cin * s.KH * s.KW));
        float[] bias = OursSides.Normal(generator, s.Cout, 0.1);
        float[] dy = OursSides.Normal(generator, (int)s.OutputLength);
        Tensor tx = OursSides.Leaf(x, [s.N, s.Cin, s.H, s.W], grad), tw = OursSides.Leaf(w, [s.Cout, s.Cin, s.KH, s.KW], grad);
        Tensor tb = OursSides.Leaf(bias, [s.Cout], grad), tdy = OursSides.Leaf(dy, [s.N, s.Cout, s.OutH, s.OutW], false);
        float[] y = new float[s.OutputLength], dx = new float[s.InputLength], dw = new float[s.WeightLength], db = new float[s.Cout];
        void Kernel()
        {
            Conv2dCpu.Forward(s, x, w, bias, y);
            if (!grad) return;
            Conv2dCpu.BackwardInput(s, dy, w, dx);
            Conv2dCpu.BackwardWeight(s, x, dy, dw, db);
        }
        return new WorkloadSides(
            OursSides.Engine(pass, () => Ops.Conv2d(tx, tw, tb, s.Stride, s.Pad), tdy, tx, tw, tb),
            LibTorchPeer.Conv2d(pass, s, x, w, bias, dy),
            grad ? OursSides.Kernel(Kernel, y, dx, dw, db) : OursSides.Kernel(Kernel, y));
    }
}

/// <summary>K3 of BENCHMARKS.md: conv 3x3, stride 1, pad 1, with bias, x[32,64,32,32], w[64,64,3,3].</summary>
[Workload("K3", "conv3x3 s1 p1 +bias x[32,64,32,32] w[64,64,3,3]", 2.0 * 32 * 64 * 32 * 32 * 64 * 3 * 3)]
public class K3Conv() : ConvBenchmark(new Conv2dShape(N: 32, Cin: 64, H: 32, W: 32, Cout: 64, KH: 3, KW: 3, Stride: 1, Pad: 1), seed: 3);

/// <summary>K4 of BENCHMARKS.md: conv 3x3, stride 2, pad 1 (downsampling), x[32,128,16,16], w[128,128,3,3].</summary>
[Workload("K4", "conv3x3 s2 p1 +bias x[32,128,16,16] w[128,128,3,3]", 2.0 * 32 * 128 * 8 * 8 * 128 * 3 * 3)]
public class K4ConvStride2() : ConvBenchmark(new Conv2dShape(N: 32, Cin: 128, H: 16, W: 16, Cout: 128, KH: 3, KW: 3, Stride: 2, Pad: 1), seed: 4);
