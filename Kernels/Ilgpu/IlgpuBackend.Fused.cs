namespace DiffusionCore.Kernels.Ilgpu;

// The row softmax and the fused optimizer updates as capabilities, on the kernels of IlgpuBackend.cs; arguments
// checked by their bases.
public sealed partial class IlgpuBackend
{
    private sealed class IlgpuSoftmax : SoftmaxKernels<IlgpuBuffer>
    {
        private readonly IlgpuBackend _b;

        public IlgpuSoftmax(IlgpuBackend backend) : base(backend) => _b = backend;

        protected override void Softmax(IlgpuBuffer x, IlgpuBuffer y, int rows, int cols, bool log) => _b.Softmax(x, y, rows, cols, log);
    }

    private sealed class IlgpuOptimizer : OptimizerKernels<IlgpuBuffer>
    {
        private readonly IlgpuBackend _b;

        public IlgpuOptimizer(IlgpuBackend backend) : base(backend) => _b = backend;

        protected override void Axpby(IlgpuBuffer x, IlgpuBuffer y, long count, double alpha, double beta) => _b.Axpby(x, y, count, alpha, beta);

        protected override void AdamUpdate(IlgpuBuffer param, IlgpuBuffer grad, IlgpuBuffer m, IlgpuBuffer v, long count, AdamStep step)
            => _b.AdamUpdate(param, grad, m, v, count, step);
    }
}
