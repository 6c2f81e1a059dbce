using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Ilgpu;

// The image primitives (conv, group norm, resampling, attention) staged through the host: inputs are downloaded,
// CpuBackend computes, outputs are uploaded. This is the interim path of this branch only: the ILGPU image
// kernels (Conv2dIlgpu, GroupNormIlgpu, AttentionIlgpu, ResampleIlgpu) are written on a separate branch and
// replace each method here when the two are merged. The parity tests of Tests/Ilgpu cover these methods already,
// so the device kernels are checked against CpuBackend as soon as they are wired in.
public sealed partial class IlgpuBackend
{
    /// <inheritdoc />
    public void Conv2dForward(Conv2dShape shape, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y)
        => Staged("Conv2dForward", bias is null ? [x, w] : [x, w, bias], [y], (cpu, i, o) => cpu.Conv2dForward(shape, i[0], i[1], bias is null ? null : i[2], o[0]));

    /// <inheritdoc />
    public void Conv2dBackwardInput(Conv2dShape shape, DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx)
        => Staged("Conv2dBackwardInput", [dy, w], [dx], (cpu, i, o) => cpu.Conv2dBackwardInput(shape, i[0], i[1], o[0]));

    /// <inheritdoc />
    public void Conv2dBackwardWeight(Conv2dShape shape, DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? db)
        => Staged("Conv2dBackwardWeight", [x, dy], db is null ? [dw] : [dw, db], (cpu, i, o) => cpu.Conv2dBackwardWeight(shape, i[0], i[1], o[0], db is null ? null : o[1]));

    /// <inheritdoc />
    public void GroupNormForward(int batch, int channels, int spatial, int groups, double eps,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer y, DeviceBuffer mean, DeviceBuffer rstd, bool fuseSilu)
        => Staged("GroupNormForward", [x, gamma, beta], [y, mean, rstd],
            (cpu, i, o) => cpu.GroupNormForward(batch, channels, spatial, groups, eps, i[0], i[1], i[2], o[0], o[1], o[2], fuseSilu));

    /// <inheritdoc />
    public void GroupNormBackward(int batch, int channels, int spatial, int groups,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer mean, DeviceBuffer rstd,
        DeviceBuffer dy, DeviceBuffer dx, DeviceBuffer dgamma, DeviceBuffer dbeta, bool fuseSilu)
        => Staged("GroupNormBackward", [x, gamma, beta, mean, rstd, dy], [dx, dgamma, dbeta],
            (cpu, i, o) => cpu.GroupNormBackward(batch, channels, spatial, groups, i[0], i[1], i[2], i[3], i[4], i[5], o[0], o[1], o[2], fuseSilu));

    /// <inheritdoc />
    public void UpsampleNearest2x(int batch, int channels, int height, int width, DeviceBuffer x, DeviceBuffer y)
        => Staged("UpsampleNearest2x", [x], [y], (cpu, i, o) => cpu.UpsampleNearest2x(batch, channels, height, width, i[0], o[0]));

    /// <inheritdoc />
    public void UpsampleNearest2xBackward(int batch, int channels, int height, int width, DeviceBuffer dy, DeviceBuffer dx)
        => Staged("UpsampleNearest2xBackward", [dy], [dx], (cpu, i, o) => cpu.UpsampleNearest2xBackward(batch, channels, height, width, i[0], o[0]));

    /// <inheritdoc />
    public void AvgPool2d(int batch, int channels, int height, int width, int k, DeviceBuffer x, DeviceBuffer y)
        => Staged("AvgPool2d", [x], [y], (cpu, i, o) => cpu.AvgPool2d(batch, channels, height, width, k, i[0], o[0]));

    /// <inheritdoc />
    public void AvgPool2dBackward(int batch, int channels, int height, int width, int k, DeviceBuffer dy, DeviceBuffer dx)
        => Staged("AvgPool2dBackward", [dy], [dx], (cpu, i, o) => cpu.AvgPool2dBackward(batch, channels, height, width, k, i[0], o[0]));

    /// <inheritdoc />
    public void AttentionForward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse)
        => Staged("AttentionForward", [q, k, v], [o, lse], (cpu, i, r) => cpu.AttentionForward(batch, tokens, headDim, scale, i[0], i[1], i[2], r[0], r[1]));

    /// <inheritdoc />
    public void AttentionBackward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse,
        DeviceBuffer dO, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv)
        => Staged("AttentionBackward", [q, k, v, o, lse, dO], [dq, dk, dv],
            (cpu, i, r) => cpu.AttentionBackward(batch, tokens, headDim, scale, i[0], i[1], i[2], i[3], i[4], i[5], r[0], r[1], r[2]));

    /// <summary>
    /// Runs a CpuBackend primitive on host copies: downloads <paramref name="inputs"/> and <paramref name="outputs"/>
    /// (outputs too, so CpuBackend's shape checks see the real lengths), calls <paramref name="body"/>, uploads the outputs.
    /// </summary>
    private void Staged(string kernel, DeviceBuffer[] inputs, DeviceBuffer[] outputs, Action<CpuBackend, DeviceBuffer[], DeviceBuffer[]> body)
    {
        var cpu = CpuBackend.Instance;
        var owned = inputs.Concat(outputs).Select(b => Own(b, kernel)).ToArray();
        SameType(kernel, owned);
        var hostIn = inputs.Select(b => ToHost(cpu, Own(b, kernel))).ToArray();
        var hostOut = outputs.Select(b => ToHost(cpu, Own(b, kernel))).ToArray();
        try
        {
            body(cpu, hostIn, hostOut);
            for (int j = 0; j < outputs.Length; j++)
            {
                var h = (CpuBuffer)hostOut[j];
                if (h.DType == DType.Float32) Upload<float>(outputs[j], h.Span<float>());
                else Upload<double>(outputs[j], h.Span<double>());
            }
        }
        finally
        {
            foreach (var h in hostIn.Concat(hostOut)) h.Dispose();
        }
    }

    private DeviceBuffer ToHost(CpuBackend cpu, IlgpuBuffer b)
    {
        var h = (CpuBuffer)cpu.Allocate(b.Length, b.DType, zero: false);
        if (b.DType == DType.Float32) Download(b, h.Span<float>());
        else Download(b, h.Span<double>());
        return h;
    }
}
