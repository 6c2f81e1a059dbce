using DiffusionCore.Bench.Peer;
using DiffusionCore.Engine;
using DiffusionCore.Kernels.Gemm;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// A GEMM workload C[m x n] = A[m x k] · B[k x n], row-major, float32, forward only: ours is
/// <see cref="Ops.MatMul"/> (a new C per call, from the pool), our kernel <see cref="GemmCpu.Sgemm"/> into a
/// preallocated C, libtorch's <c>torch.matmul</c> (MKL here). A and B are standard normal.
/// </summary>
/// <param name="m">Rows of A and C.</param>
/// <param name="n">Columns of B and C.</param>
/// <param name="k">Columns of A, rows of B.</param>
/// <param name="seed">Seed of the inputs.</param>
public abstract class GemmBenchmark(int m, int n, int k, ulong seed) : KernelPeerBenchmark
{
    /// <summary>BENCHMARKS.md measures the GEMMs forward only.</summary>
    public override IEnumerable<Pass> Passes => [Pass.Forward];

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        var generator = new Generator(seed);
        float[] a = OursSides.Normal(generator, m * k), b = OursSides.Normal(generator, k * n), c = new float[m * n];
        Tensor ta = OursSides.Leaf(a, [m, k], false), tb = OursSides.Leaf(b, [k, n], false);
        return new WorkloadSides(
            OursSides.Engine(pass, () => Ops.MatMul(ta, tb), null),
            LibTorchPeer.Gemm(m, n, k, a, b),
            OursSides.Kernel(() => GemmCpu.Sgemm(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n), c));
    }
}

/// <summary>K1 of BENCHMARKS.md: C[1024x1024] = A[1024x1024] · B[1024x1024].</summary>
[Workload("K1", "GEMM C[1024x1024] = A[1024x1024] B[1024x1024]", 2.0 * 1024 * 1024 * 1024)]
public class K1Gemm() : GemmBenchmark(1024, 1024, 1024, seed: 1);

/// <summary>K2 of BENCHMARKS.md (skinny): C[4096x256] = A[4096x1024] · B[1024x256].</summary>
[Workload("K2", "GEMM C[4096x256] = A[4096x1024] B[1024x256]", 2.0 * 4096 * 256 * 1024)]
public class K2GemmSkinny() : GemmBenchmark(4096, 256, 1024, seed: 2);
