using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Kernels.Resample;
using ILGPU;

namespace DiffusionCore.Kernels.Ilgpu;

// The image primitives (conv, group norm, resampling, attention) as ILGPU kernels: Conv2dIlgpu, GroupNormIlgpu,
// AttentionIlgpu (float32 only: their tiles, shared-memory layouts and warp shuffles are written for float) and
// ResampleIlgpu (float and double). Each loader is created on the first call that needs it (so a backend that never
// convolves never compiles the conv kernels), compiles its kernels through this backend's IlgpuKernelCache (compile
// times recorded), owns its scratch buffer, and is disposed with the backend. The tiled loaders need 256-thread
// groups (ImageTilesIlgpu.RequireTileSupport): on an accelerator with smaller groups the float32 calls throw
// KernelException, as Gemm does.
// float64 conv, group norm and attention (used by the gradient checks, never in training) keep the host path:
// inputs are downloaded, CpuBackend computes in float64, outputs are uploaded, one round trip per call.
public sealed partial class IlgpuBackend
{
    private readonly Lazy<Conv2dIlgpu.Kernels> _conv;
    private readonly Lazy<GroupNormIlgpu.Kernels> _groupNorm;
    private readonly Lazy<AttentionIlgpu.Kernels> _attention;
    private readonly Lazy<ResampleIlgpu.Kernels> _resample;

    private Conv2dIlgpu.Kernels Conv => _conv.Value;

    private GroupNormIlgpu.Kernels GroupNorm => _groupNorm.Value;

    private AttentionIlgpu.Kernels Attention => _attention.Value;

    private ResampleIlgpu.Kernels Resample => _resample.Value;

    /// <inheritdoc />
    public void Conv2dForward(Conv2dShape shape, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y)
    {
        const string kernel = "Conv2dForward";
        if (IsFloat32(kernel, bias is null ? [x, w, y] : [x, w, bias, y]))
            Conv.Forward(Stream, shape, F(x, kernel), F(w, kernel), bias is null ? ArrayView<float>.Empty : F(bias, kernel), F(y, kernel));
        else
            Staged(kernel, bias is null ? [x, w] : [x, w, bias], [y], (cpu, i, o) => cpu.Conv2dForward(shape, i[0], i[1], bias is null ? null : i[2], o[0]));
    }

    /// <inheritdoc />
    public void Conv2dBackwardInput(Conv2dShape shape, DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx)
    {
        const string kernel = "Conv2dBackwardInput";
        if (IsFloat32(kernel, [dy, w, dx]))
            Conv.BackwardInput(Stream, shape, F(dy, kernel), F(w, kernel), F(dx, kernel));
        else
            Staged(kernel, [dy, w], [dx], (cpu, i, o) => cpu.Conv2dBackwardInput(shape, i[0], i[1], o[0]));
    }

    /// <inheritdoc />
    public void Conv2dBackwardWeight(Conv2dShape shape, DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? db)
    {
        const string kernel = "Conv2dBackwardWeight";
        if (IsFloat32(kernel, db is null ? [x, dy, dw] : [x, dy, dw, db]))
            Conv.BackwardWeight(Stream, shape, F(x, kernel), F(dy, kernel), F(dw, kernel), db is null ? ArrayView<float>.Empty : F(db, kernel));
        else
            Staged(kernel, [x, dy], db is null ? [dw] : [dw, db], (cpu, i, o) => cpu.Conv2dBackwardWeight(shape, i[0], i[1], o[0], db is null ? null : o[1]));
    }

    /// <inheritdoc />
    public void GroupNormForward(int batch, int channels, int spatial, int groups, double eps,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer y, DeviceBuffer mean, DeviceBuffer rstd, bool fuseSilu)
    {
        const string kernel = "GroupNormForward";
        if (IsFloat32(kernel, [x, gamma, beta, y, mean, rstd]))
            GroupNorm.Forward(Stream, batch, channels, spatial, groups, eps, F(x, kernel), F(gamma, kernel), F(beta, kernel),
                F(y, kernel), F(mean, kernel), F(rstd, kernel), fuseSilu);
        else
            Staged(kernel, [x, gamma, beta], [y, mean, rstd],
                (cpu, i, o) => cpu.GroupNormForward(batch, channels, spatial, groups, eps, i[0], i[1], i[2], o[0], o[1], o[2], fuseSilu));
    }

    /// <inheritdoc />
    public void GroupNormBackward(int batch, int channels, int spatial, int groups,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer mean, DeviceBuffer rstd,
        DeviceBuffer dy, DeviceBuffer dx, DeviceBuffer dgamma, DeviceBuffer dbeta, bool fuseSilu)
    {
        const string kernel = "GroupNormBackward";
        if (IsFloat32(kernel, [x, gamma, beta, mean, rstd, dy, dx, dgamma, dbeta]))
            GroupNorm.Backward(Stream, batch, channels, spatial, groups, F(x, kernel), F(gamma, kernel), F(beta, kernel), F(mean, kernel),
                F(rstd, kernel), F(dy, kernel), F(dx, kernel), F(dgamma, kernel), F(dbeta, kernel), fuseSilu);
        else
            Staged(kernel, [x, gamma, beta, mean, rstd, dy], [dx, dgamma, dbeta],
                (cpu, i, o) => cpu.GroupNormBackward(batch, channels, spatial, groups, i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], o[2], fuseSilu));
    }

    /// <inheritdoc />
    public void UpsampleNearest2x(int batch, int channels, int height, int width, DeviceBuffer x, DeviceBuffer y)
    {
        const string kernel = "UpsampleNearest2x";
        if (IsFloat32(kernel, [x, y])) Resample.UpsampleNearest2x(Stream, batch, channels, height, width, F(x, kernel), F(y, kernel));
        else Resample.UpsampleNearest2x(Stream, batch, channels, height, width, D(x, kernel), D(y, kernel));
    }

    /// <inheritdoc />
    public void UpsampleNearest2xBackward(int batch, int channels, int height, int width, DeviceBuffer dy, DeviceBuffer dx)
    {
        const string kernel = "UpsampleNearest2xBackward";
        if (IsFloat32(kernel, [dy, dx])) Resample.UpsampleNearest2xBackward(Stream, batch, channels, height, width, F(dy, kernel), F(dx, kernel));
        else Resample.UpsampleNearest2xBackward(Stream, batch, channels, height, width, D(dy, kernel), D(dx, kernel));
    }

    /// <inheritdoc />
    public void AvgPool2d(int batch, int channels, int height, int width, int k, DeviceBuffer x, DeviceBuffer y)
    {
        const string kernel = "AvgPool2d";
        if (IsFloat32(kernel, [x, y])) Resample.AvgPool2d(Stream, batch, channels, height, width, k, F(x, kernel), F(y, kernel));
        else Resample.AvgPool2d(Stream, batch, channels, height, width, k, D(x, kernel), D(y, kernel));
    }

    /// <inheritdoc />
    public void AvgPool2dBackward(int batch, int channels, int height, int width, int k, DeviceBuffer dy, DeviceBuffer dx)
    {
        const string kernel = "AvgPool2dBackward";
        if (IsFloat32(kernel, [dy, dx])) Resample.AvgPool2dBackward(Stream, batch, channels, height, width, k, F(dy, kernel), F(dx, kernel));
        else Resample.AvgPool2dBackward(Stream, batch, channels, height, width, k, D(dy, kernel), D(dx, kernel));
    }

    /// <inheritdoc />
    public void AttentionForward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse)
    {
        const string kernel = "AttentionForward";
        if (IsFloat32(kernel, [q, k, v, o, lse]))
            Attention.Forward(Stream, batch, tokens, headDim, scale, F(q, kernel), F(k, kernel), F(v, kernel), F(o, kernel), F(lse, kernel));
        else
            Staged(kernel, [q, k, v], [o, lse], (cpu, i, r) => cpu.AttentionForward(batch, tokens, headDim, scale, i[0], i[1], i[2], r[0], r[1]));
    }

    /// <inheritdoc />
    public void AttentionBackward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse,
        DeviceBuffer dO, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv)
    {
        const string kernel = "AttentionBackward";
        if (IsFloat32(kernel, [q, k, v, o, lse, dO, dq, dk, dv]))
            Attention.Backward(Stream, batch, tokens, headDim, scale, F(q, kernel), F(k, kernel), F(v, kernel), F(o, kernel), F(lse, kernel),
                F(dO, kernel), F(dq, kernel), F(dk, kernel), F(dv, kernel));
        else
            Staged(kernel, [q, k, v, o, lse, dO], [dq, dk, dv],
                (cpu, i, r) => cpu.AttentionBackward(batch, tokens, headDim, scale, i[0], i[1], i[2], i[3], i[4], i[5], r[0], r[1], r[2]));
    }

    /// <summary>Checks that every buffer is this backend's and all share one dtype; true when it is float32.</summary>
    private bool IsFloat32(string kernel, DeviceBuffer[] buffers)
    {
        var owned = buffers.Select(b => Own(b, kernel)).ToArray();
        SameType(kernel, owned);
        return owned[0].DType == DType.Float32;
    }

    private ArrayView<float> F(DeviceBuffer b, string kernel) => Own(b, kernel).View<float>();

    private ArrayView<double> D(DeviceBuffer b, string kernel) => Own(b, kernel).View<double>();

    /// <summary>Frees the image loaders' scratch buffers (called from <see cref="Dispose"/>).</summary>
    private void DisposeImageKernels()
    {
        if (_conv.IsValueCreated) _conv.Value.Dispose();
        if (_groupNorm.IsValueCreated) _groupNorm.Value.Dispose();
        if (_attention.IsValueCreated) _attention.Value.Dispose();
    }

    /// <summary>
    /// The float64 path of conv, group norm and attention: runs the CpuBackend primitive on host copies: downloads
    /// <paramref name="inputs"/> and <paramref name="outputs"/> (outputs too, so CpuBackend's shape checks see the
    /// real lengths), calls <paramref name="body"/>, uploads the outputs.
    /// </summary>
    private void Staged(string kernel, DeviceBuffer[] inputs, DeviceBuffer[] outputs, Action<CpuBackend, DeviceBuffer[], DeviceBuffer[]> body)
    {
        var cpu = CpuBackend.Instance;
        var hostIn = inputs.Select(b => ToHost(cpu, Own(b, kernel))).ToArray();
        var hostOut = outputs.Select(b => ToHost(cpu, Own(b, kernel))).ToArray();
        try
        {
            body(cpu, hostIn, hostOut);
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
