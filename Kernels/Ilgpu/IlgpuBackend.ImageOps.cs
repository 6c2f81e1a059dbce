using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Kernels.Resample;
using ILGPU;

namespace DiffusionCore.Kernels.Ilgpu;

// The image capabilities (conv, group norm, resampling, attention) as ILGPU kernels: Conv2dIlgpu, GroupNormIlgpu,
// AttentionIlgpu (float32 only: their tiles, shared-memory layouts and warp shuffles are written for float) and
// ResampleIlgpu (float and double). Each loader is created on the first call that needs it (so a backend that never
// convolves never compiles the conv kernels), compiles its kernels through this backend's IlgpuKernelCache (compile
// times recorded), owns its scratch buffer, and is disposed with the backend. The tiled loaders need 256-thread
// groups (ImageTilesIlgpu.RequireTileSupport): on an accelerator with smaller groups the float32 calls throw
// KernelException, as Gemm does.
// float64 conv, group norm and attention (used by the gradient checks, never in training) keep the host path:
// inputs are downloaded, CpuBackend computes in float64, outputs are uploaded, one round trip per call.
// The checked bases (ConvolutionKernels and the others) have validated every size and buffer before these run.
public sealed partial class IlgpuBackend
{
    private readonly Lazy<Conv2dIlgpu.Kernels> _conv;
    private readonly Lazy<GroupNormIlgpu.Kernels> _groupNorm;
    private readonly Lazy<AttentionIlgpu.Kernels> _attention;
    private readonly Lazy<ResampleIlgpu.Kernels> _resample;

    private sealed class IlgpuConvolution : ConvolutionKernels<IlgpuBuffer>
    {
        private readonly IlgpuBackend _b;

        public IlgpuConvolution(IlgpuBackend backend) : base(backend) => _b = backend;

        protected override void Forward(Conv2dShape shape, IlgpuBuffer x, IlgpuBuffer w, IlgpuBuffer? bias, IlgpuBuffer y)
        {
            if (x.DType == DType.Float32)
                _b._conv.Value.Forward(_b.Stream, shape, x.View<float>(), w.View<float>(), bias is null ? ArrayView<float>.Empty : bias.View<float>(), y.View<float>());
            else
                _b.Staged(bias is null ? [x, w] : [x, w, bias], [y], (i, o) => Host<IConvolutionKernels>().Conv2dForward(shape, i[0], i[1], bias is null ? null : i[2], o[0]));
        }

        protected override void BackwardInput(Conv2dShape shape, IlgpuBuffer dy, IlgpuBuffer w, IlgpuBuffer dx)
        {
            if (dy.DType == DType.Float32)
                _b._conv.Value.BackwardInput(_b.Stream, shape, dy.View<float>(), w.View<float>(), dx.View<float>());
            else
                _b.Staged([dy, w], [dx], (i, o) => Host<IConvolutionKernels>().Conv2dBackwardInput(shape, i[0], i[1], o[0]));
        }

        protected override void BackwardWeight(Conv2dShape shape, IlgpuBuffer x, IlgpuBuffer dy, IlgpuBuffer dw, IlgpuBuffer? db)
        {
            if (x.DType == DType.Float32)
                _b._conv.Value.BackwardWeight(_b.Stream, shape, x.View<float>(), dy.View<float>(), dw.View<float>(), db is null ? ArrayView<float>.Empty : db.View<float>());
            else
                _b.Staged([x, dy], db is null ? [dw] : [dw, db], (i, o) => Host<IConvolutionKernels>().Conv2dBackwardWeight(shape, i[0], i[1], o[0], db is null ? null : o[1]));
        }
    }

    private sealed class IlgpuGroupNorm : GroupNormKernels<IlgpuBuffer>
    {
        private readonly IlgpuBackend _b;

        public IlgpuGroupNorm(IlgpuBackend backend) : base(backend) => _b = backend;

        protected override void Forward(int batch, int channels, int spatial, int groups, double eps,
            IlgpuBuffer x, IlgpuBuffer gamma, IlgpuBuffer beta, IlgpuBuffer y, IlgpuBuffer mean, IlgpuBuffer rstd, bool fuseSilu)
        {
            if (x.DType == DType.Float32)
                _b._groupNorm.Value.Forward(_b.Stream, batch, channels, spatial, groups, eps, x.View<float>(), gamma.View<float>(), beta.View<float>(),
                    y.View<float>(), mean.View<float>(), rstd.View<float>(), fuseSilu);
            else
                _b.Staged([x, gamma, beta], [y, mean, rstd],
                    (i, o) => Host<IGroupNormKernels>().GroupNormForward(batch, channels, spatial, groups, eps, i[0], i[1], i[2], o[0], o[1], o[2], fuseSilu));
        }

        protected override void Backward(int batch, int channels, int spatial, int groups,
            IlgpuBuffer x, IlgpuBuffer gamma, IlgpuBuffer beta, IlgpuBuffer mean, IlgpuBuffer rstd,
            IlgpuBuffer dy, IlgpuBuffer dx, IlgpuBuffer dgamma, IlgpuBuffer dbeta, bool fuseSilu)
        {
            if (x.DType == DType.Float32)
                _b._groupNorm.Value.Backward(_b.Stream, batch, channels, spatial, groups, x.View<float>(), gamma.View<float>(), beta.View<float>(), mean.View<float>(),
                    rstd.View<float>(), dy.View<float>(), dx.View<float>(), dgamma.View<float>(), dbeta.View<float>(), fuseSilu);
            else
                _b.Staged([x, gamma, beta, mean, rstd, dy], [dx, dgamma, dbeta],
                    (i, o) => Host<IGroupNormKernels>().GroupNormBackward(batch, channels, spatial, groups, i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], o[2], fuseSilu));
        }
    }

    private sealed class IlgpuResample : ResampleKernels<IlgpuBuffer>
    {
        private readonly IlgpuBackend _b;

        public IlgpuResample(IlgpuBackend backend) : base(backend) => _b = backend;

        private ResampleIlgpu.Kernels Kernels => _b._resample.Value;

        protected override void Upsample(int batch, int channels, int height, int width, IlgpuBuffer x, IlgpuBuffer y)
        {
            if (x.DType == DType.Float32) Kernels.UpsampleNearest2x(_b.Stream, batch, channels, height, width, x.View<float>(), y.View<float>());
            else Kernels.UpsampleNearest2x(_b.Stream, batch, channels, height, width, x.View<double>(), y.View<double>());
        }

        protected override void UpsampleBackward(int batch, int channels, int height, int width, IlgpuBuffer dy, IlgpuBuffer dx)
        {
            if (dy.DType == DType.Float32) Kernels.UpsampleNearest2xBackward(_b.Stream, batch, channels, height, width, dy.View<float>(), dx.View<float>());
            else Kernels.UpsampleNearest2xBackward(_b.Stream, batch, channels, height, width, dy.View<double>(), dx.View<double>());
        }

        protected override void AvgPool(int batch, int channels, int height, int width, int k, IlgpuBuffer x, IlgpuBuffer y)
        {
            if (x.DType == DType.Float32) Kernels.AvgPool2d(_b.Stream, batch, channels, height, width, k, x.View<float>(), y.View<float>());
            else Kernels.AvgPool2d(_b.Stream, batch, channels, height, width, k, x.View<double>(), y.View<double>());
        }

        protected override void AvgPoolBackward(int batch, int channels, int height, int width, int k, IlgpuBuffer dy, IlgpuBuffer dx)
        {
            if (dy.DType == DType.Float32) Kernels.AvgPool2dBackward(_b.Stream, batch, channels, height, width, k, dy.View<float>(), dx.View<float>());
            else Kernels.AvgPool2dBackward(_b.Stream, batch, channels, height, width, k, dy.View<double>(), dx.View<double>());
        }
    }

    private sealed class IlgpuAttention : AttentionKernels<IlgpuBuffer>
    {
        private readonly IlgpuBackend _b;

        public IlgpuAttention(IlgpuBackend backend) : base(backend) => _b = backend;

        protected override void Forward(int batch, int tokens, int headDim, double scale, IlgpuBuffer q, IlgpuBuffer k, IlgpuBuffer v, IlgpuBuffer o, IlgpuBuffer lse)
        {
            if (q.DType == DType.Float32)
                _b._attention.Value.Forward(_b.Stream, batch, tokens, headDim, scale, q.View<float>(), k.View<float>(), v.View<float>(), o.View<float>(), lse.View<float>());
            else
                _b.Staged([q, k, v], [o, lse], (i, r) => Host<IAttentionKernels>().AttentionForward(batch, tokens, headDim, scale, i[0], i[1], i[2], r[0], r[1]));
        }

        protected override void Backward(int batch, int tokens, int headDim, double scale,
            IlgpuBuffer q, IlgpuBuffer k, IlgpuBuffer v, IlgpuBuffer o, IlgpuBuffer lse, IlgpuBuffer dO, IlgpuBuffer dq, IlgpuBuffer dk, IlgpuBuffer dv)
        {
            if (q.DType == DType.Float32)
                _b._attention.Value.Backward(_b.Stream, batch, tokens, headDim, scale, q.View<float>(), k.View<float>(), v.View<float>(), o.View<float>(), lse.View<float>(),
                    dO.View<float>(), dq.View<float>(), dk.View<float>(), dv.View<float>());
            else
                _b.Staged([q, k, v, o, lse, dO], [dq, dk, dv],
                    (i, r) => Host<IAttentionKernels>().AttentionBackward(batch, tokens, headDim, scale, i[0], i[1], i[2], i[3], i[4], i[5], r[0], r[1], r[2]));
        }
    }

    /// <summary>The host backend's kernels of a capability (CpuBackend has every one), for the float64 path.</summary>
    private static T Host<T>() where T : class => CpuBackend.Instance.GetCapability<T>()!;

    /// <summary>Frees the image loaders' scratch buffers (called from <see cref="Dispose"/>).</summary>
    private void DisposeImageKernels()
    {
        if (_conv.IsValueCreated) _conv.Value.Dispose();
        if (_groupNorm.IsValueCreated) _groupNorm.Value.Dispose();
        if (_attention.IsValueCreated) _attention.Value.Dispose();
    }

    /// <summary>
    /// The float64 path of conv, group norm and attention: runs the CpuBackend kernel on host copies: downloads
    /// <paramref name="inputs"/> and <paramref name="outputs"/> (outputs too, so the host buffers have the device
    /// buffers' lengths), calls <paramref name="body"/>, uploads the outputs.
    /// </summary>
    private void Staged(IlgpuBuffer[] inputs, IlgpuBuffer[] outputs, Action<DeviceBuffer[], DeviceBuffer[]> body)
    {
        var cpu = CpuBackend.Instance;
        var hostIn = inputs.Select(b => ToHost(cpu, b)).ToArray();
        var hostOut = outputs.Select(b => ToHost(cpu, b)).ToArray();
        try
        {
            body(hostIn, hostOut);
            foreach (var (device, host) in outputs.Zip(hostOut))
                Upload<double>(device, ((CpuBuffer)host).Span<double>());
        }
        finally
        {
            foreach (var h in hostIn.Concat(hostOut)) h.Dispose();
        }
    }

    private DeviceBuffer ToHost(CpuBackend cpu, IlgpuBuffer b)
    {
        var h = (CpuBuffer)cpu.Allocate(b.Length, DType.Float64, zero: false);
        Download(b, h.Span<double>());
        return h;
    }
}
