using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Kernels.Resample;

namespace DiffusionCore.Kernels.Cpu;

// The image primitives (conv, group norm, resampling, attention). float32 runs on the fast kernels
// (Conv2dCpu, AttentionCpu, and the generic GroupNormCpu and ResampleCpu); float64, used by gradient checks at
// tiny sizes, runs on the plain loops of Conv2dNaive and AttentionNaive and on the same generic kernels.
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public void Conv2dForward(Conv2dShape shape, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y)
    {
        const string kernel = "Conv2dForward";
        var bx = Own(x, kernel); var bw = Own(w, kernel); var by = Own(y, kernel);
        var bb = bias is null ? null : Own(bias, kernel);
        SameType(kernel, bb is null ? [bx, bw, by] : [bx, bw, by, bb]);
        if (bx.DType == DType.Float32)
            Conv2dCpu.Forward(shape, bx.Span<float>(), bw.Span<float>(), bb is null ? default : bb.Span<float>(), by.Span<float>());
        else
            Conv2dNaive.Forward<double>(shape, bx.Span<double>(), bw.Span<double>(), bb is null ? default : bb.Span<double>(), by.Span<double>());
    }

    /// <inheritdoc />
    public void Conv2dBackwardInput(Conv2dShape shape, DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx)
    {
        const string kernel = "Conv2dBackwardInput";
        var bdy = Own(dy, kernel); var bw = Own(w, kernel); var bdx = Own(dx, kernel);
        SameType(kernel, bdy, bw, bdx);
        if (bdy.DType == DType.Float32) Conv2dCpu.BackwardInput(shape, bdy.Span<float>(), bw.Span<float>(), bdx.Span<float>());
        else Conv2dNaive.BackwardInput<double>(shape, bdy.Span<double>(), bw.Span<double>(), bdx.Span<double>());
    }

    /// <inheritdoc />
    public void Conv2dBackwardWeight(Conv2dShape shape, DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? db)
    {
        const string kernel = "Conv2dBackwardWeight";
        var bx = Own(x, kernel); var bdy = Own(dy, kernel); var bdw = Own(dw, kernel);
        var bdb = db is null ? null : Own(db, kernel);
        SameType(kernel, bdb is null ? [bx, bdy, bdw] : [bx, bdy, bdw, bdb]);
        if (bx.DType == DType.Float32)
            Conv2dCpu.BackwardWeight(shape, bx.Span<float>(), bdy.Span<float>(), bdw.Span<float>(), bdb is null ? default : bdb.Span<float>());
        else
            Conv2dNaive.BackwardWeight<double>(shape, bx.Span<double>(), bdy.Span<double>(), bdw.Span<double>(), bdb is null ? default : bdb.Span<double>());
    }

    /// <inheritdoc />
    public void GroupNormForward(int batch, int channels, int spatial, int groups, double eps,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer y, DeviceBuffer mean, DeviceBuffer rstd, bool fuseSilu)
    {
        const string kernel = "GroupNormForward";
        var bx = Own(x, kernel); var bg = Own(gamma, kernel); var bb = Own(beta, kernel);
        var by = Own(y, kernel); var bm = Own(mean, kernel); var br = Own(rstd, kernel);
        SameType(kernel, bx, bg, bb, by, bm, br);
        if (bx.DType == DType.Float32)
            GroupNormCpu.Forward<float>(batch, channels, spatial, groups, eps, bx.Span<float>(), bg.Span<float>(), bb.Span<float>(),
                by.Span<float>(), bm.Span<float>(), br.Span<float>(), fuseSilu);
        else
            GroupNormCpu.Forward<double>(batch, channels, spatial, groups, eps, bx.Span<double>(), bg.Span<double>(), bb.Span<double>(),
                by.Span<double>(), bm.Span<double>(), br.Span<double>(), fuseSilu);
    }

    /// <inheritdoc />
    public void GroupNormBackward(int batch, int channels, int spatial, int groups,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer mean, DeviceBuffer rstd,
        DeviceBuffer dy, DeviceBuffer dx, DeviceBuffer dgamma, DeviceBuffer dbeta, bool fuseSilu)
    {
        const string kernel = "GroupNormBackward";
        var bx = Own(x, kernel); var bg = Own(gamma, kernel); var bb = Own(beta, kernel);
        var bm = Own(mean, kernel); var br = Own(rstd, kernel); var bdy = Own(dy, kernel);
        var bdx = Own(dx, kernel); var bdg = Own(dgamma, kernel); var bdb = Own(dbeta, kernel);
        SameType(kernel, bx, bg, bb, bm, br, bdy, bdx, bdg, bdb);
        if (bx.DType == DType.Float32)
            GroupNormCpu.Backward<float>(batch, channels, spatial, groups, bx.Span<float>(), bg.Span<float>(), bb.Span<float>(),
                bm.Span<float>(), br.Span<float>(), bdy.Span<float>(), bdx.Span<float>(), bdg.Span<float>(), bdb.Span<float>(), fuseSilu);
        else
            GroupNormCpu.Backward<double>(batch, channels, spatial, groups, bx.Span<double>(), bg.Span<double>(), bb.Span<double>(),
                bm.Span<double>(), br.Span<double>(), bdy.Span<double>(), bdx.Span<double>(), bdg.Span<double>(), bdb.Span<double>(), fuseSilu);
    }

    /// <inheritdoc />
    public void UpsampleNearest2x(int batch, int channels, int height, int width, DeviceBuffer x, DeviceBuffer y)
    {
        const string kernel = "UpsampleNearest2x";
        var bx = Own(x, kernel); var by = Own(y, kernel);
        SameType(kernel, bx, by);
        if (bx.DType == DType.Float32) ResampleCpu.UpsampleNearest2x<float>(batch, channels, height, width, bx.Span<float>(), by.Span<float>());
        else ResampleCpu.UpsampleNearest2x<double>(batch, channels, height, width, bx.Span<double>(), by.Span<double>());
    }

    /// <inheritdoc />
    public void UpsampleNearest2xBackward(int batch, int channels, int height, int width, DeviceBuffer dy, DeviceBuffer dx)
    {
        const string kernel = "UpsampleNearest2xBackward";
        var bdy = Own(dy, kernel); var bdx = Own(dx, kernel);
        SameType(kernel, bdy, bdx);
        if (bdy.DType == DType.Float32) ResampleCpu.UpsampleNearest2xBackward<float>(batch, channels, height, width, bdy.Span<float>(), bdx.Span<float>());
        else ResampleCpu.UpsampleNearest2xBackward<double>(batch, channels, height, width, bdy.Span<double>(), bdx.Span<double>());
    }

    /// <inheritdoc />
    public void AvgPool2d(int batch, int channels, int height, int width, int k, DeviceBuffer x, DeviceBuffer y)
    {
        const string kernel = "AvgPool2d";
        var bx = Own(x, kernel); var by = Own(y, kernel);
        SameType(kernel, bx, by);
        if (bx.DType == DType.Float32) ResampleCpu.AvgPool<float>(batch, channels, height, width, k, bx.Span<float>(), by.Span<float>());
        else ResampleCpu.AvgPool<double>(batch, channels, height, width, k, bx.Span<double>(), by.Span<double>());
    }

    /// <inheritdoc />
    public void AvgPool2dBackward(int batch, int channels, int height, int width, int k, DeviceBuffer dy, DeviceBuffer dx)
    {
        const string kernel = "AvgPool2dBackward";
        var bdy = Own(dy, kernel); var bdx = Own(dx, kernel);
        SameType(kernel, bdy, bdx);
        if (bdy.DType == DType.Float32) ResampleCpu.AvgPoolBackward<float>(batch, channels, height, width, k, bdy.Span<float>(), bdx.Span<float>());
        else ResampleCpu.AvgPoolBackward<double>(batch, channels, height, width, k, bdy.Span<double>(), bdx.Span<double>());
    }

    /// <inheritdoc />
    public void AttentionForward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse)
    {
        const string kernel = "AttentionForward";
        var bq = Own(q, kernel); var bk = Own(k, kernel); var bv = Own(v, kernel); var bo = Own(o, kernel); var bl = Own(lse, kernel);
        SameType(kernel, bq, bk, bv, bo, bl);
        if (bq.DType == DType.Float32)
            AttentionCpu.Forward(batch, tokens, headDim, (float)scale, bq.Span<float>(), bk.Span<float>(), bv.Span<float>(), bo.Span<float>(), bl.Span<float>());
        else
            AttentionNaive.Forward<double>(batch, tokens, headDim, scale, bq.Span<double>(), bk.Span<double>(), bv.Span<double>(), bo.Span<double>(), bl.Span<double>());
    }

    /// <inheritdoc />
    public void AttentionBackward(int batch, int tokens, int headDim, double scale,
        DeviceBuffer q, DeviceBuffer k, DeviceBuffer v, DeviceBuffer o, DeviceBuffer lse,
        DeviceBuffer dO, DeviceBuffer dq, DeviceBuffer dk, DeviceBuffer dv)
    {
        const string kernel = "AttentionBackward";
        var bq = Own(q, kernel); var bk = Own(k, kernel); var bv = Own(v, kernel); var bo = Own(o, kernel); var bl = Own(lse, kernel);
        var bdo = Own(dO, kernel); var bdq = Own(dq, kernel); var bdk = Own(dk, kernel); var bdv = Own(dv, kernel);
        SameType(kernel, bq, bk, bv, bo, bl, bdo, bdq, bdk, bdv);
        if (bq.DType == DType.Float32)
            AttentionCpu.Backward(batch, tokens, headDim, (float)scale, bq.Span<float>(), bk.Span<float>(), bv.Span<float>(), bo.Span<float>(),
                bl.Span<float>(), bdo.Span<float>(), bdq.Span<float>(), bdk.Span<float>(), bdv.Span<float>());
        else
            AttentionNaive.Backward<double>(batch, tokens, headDim, scale, bq.Span<double>(), bk.Span<double>(), bv.Span<double>(), bo.Span<double>(),
                bl.Span<double>(), bdo.Span<double>(), bdq.Span<double>(), bdk.Span<double>(), bdv.Span<double>());
    }
}
