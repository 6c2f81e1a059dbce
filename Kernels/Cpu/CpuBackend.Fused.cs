using DiffusionCore.Kernels.Elementwise;
using DiffusionCore.Kernels.Optim;

namespace DiffusionCore.Kernels.Cpu;

// The row softmax and the fused optimizer updates, on ReduceCpu and OptimCpu; arguments checked by their bases.
public sealed partial class CpuBackend
{
    private sealed class CpuSoftmax(CpuBackend backend) : SoftmaxKernels<CpuBuffer>(backend)
    {
        protected override void Softmax(CpuBuffer x, CpuBuffer y, int rows, int cols, bool log)
        {
            if (x.DType == DType.Float32) ReduceCpu.Softmax(x.Float32Array, y.Float32Array, rows, cols, log);
            else ReduceCpu.Softmax(x.Float64Array, y.Float64Array, rows, cols, log);
        }
    }

    private sealed class CpuOptimizer(CpuBackend backend) : OptimizerKernels<CpuBuffer>(backend)
    {
        protected override void Axpby(CpuBuffer x, CpuBuffer y, long count, double alpha, double beta)
        {
            if (x.DType == DType.Float32) OptimCpu.Axpby(x.Float32Array, y.Float32Array, count, (float)alpha, (float)beta);
            else OptimCpu.Axpby(x.Float64Array, y.Float64Array, count, alpha, beta);
        }

        protected override void AdamUpdate(CpuBuffer p, CpuBuffer g, CpuBuffer m, CpuBuffer v, long count, AdamStep step)
        {
            if (p.DType == DType.Float32) OptimCpu.Adam(p.Float32Array, g.Float32Array, m.Float32Array, v.Float32Array, count, step);
            else OptimCpu.Adam(p.Float64Array, g.Float64Array, m.Float64Array, v.Float64Array, count, step);
        }
    }
}
