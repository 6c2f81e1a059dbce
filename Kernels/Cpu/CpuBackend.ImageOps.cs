using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Kernels.Resample;

namespace DiffusionCore.Kernels.Cpu;

// The image capabilities (conv, group norm, resampling, attention). float32 runs on the fast kernels (Conv2dCpu,
// AttentionCpu, and the generic GroupNormCpu and ResampleCpu); float64, used by gradient checks at tiny sizes, runs on
// the plain loops of Conv2dNaive and AttentionNaive and on the same generic kernels. The checked bases have validated
// every size and buffer; the kernels get spans of exactly the lengths the shape implies.
public sealed partial class CpuBackend
{
    private sealed class CpuConvolution(CpuBackend backend) : ConvolutionKernels<CpuBuffer>(backend)
    {
        protected override void Forward(Conv2dShape s, CpuBuffer x, CpuBuffer w, CpuBuffer? bias, CpuBuffer y)
        {
            if (x.DType == DType.Float32)
                Conv2dCpu.Forward(s, Exact<float>(x, s.InputLength), Exact<float>(w, s.WeightLength), bias is null ? default : Exact<float>(bias, s.Cout), Exact<float>(y, s.OutputLength));
            else
                Conv2dNaive.Forward<double>(s, Exact<double>(x, s.InputLength), Exact<double>(w, s.WeightLength), bias is null ? default : Exact<double>(bias, s.Cout), Exact<double>(y, s.OutputLength));
        }

        protected override void BackwardInput(Conv2dShape s, CpuBuffer dy, CpuBuffer w, CpuBuffer dx)
        {
            if (dy.DType == DType.Float32)
                Conv2dCpu.BackwardInput(s, Exact<float>(dy, s.OutputLength), Exact<float>(w, s.WeightLength), Exact<float>(dx, s.InputLength));
            else
                Conv2dNaive.BackwardInput<double>(s, Exact<double>(dy, s.OutputLength), Exact<double>(w, s.WeightLength), Exact<double>(dx, s.InputLength));
        }

        protected override void BackwardWeight(Conv2dShape s, CpuBuffer x, CpuBuffer dy, CpuBuffer dw, CpuBuffer? db)
        {
            if (x.DType == DType.Float32)
                Conv2dCpu.BackwardWeight(s, Exact<float>(x, s.InputLength), Exact<float>(dy, s.OutputLength), Exact<float>(dw, s.WeightLength), db is null ? default : Exact<float>(db, s.Cout));
            else
                Conv2dNaive.BackwardWeight<double>(s, Exact<double>(x, s.InputLength), Exact<double>(dy, s.OutputLength), Exact<double>(dw, s.WeightLength), db is null ? default : Exact<double>(db, s.Cout));
        }
    }

    private sealed class CpuGroupNorm(CpuBackend backend) : GroupNormKernels<CpuBuffer>(backend)
    {
        protected override void Forward(int batch, int channels, int spatial, int groups, double eps,
            CpuBuffer x, CpuBuffer gamma, CpuBuffer beta, CpuBuffer y, CpuBuffer mean, CpuBuffer rstd, bool fuseSilu)
        {
            long values = (long)batch * channels * spatial, stats = (long)batch * groups;
            if (x.DType == DType.Float32)
                GroupNormCpu.Forward<float>(batch, channels, spatial, groups, eps, Exact<float>(x, values), Exact<float>(gamma, channels), Exact<float>(beta, channels),
                    Exact<float>(y, values), Exact<float>(mean, stats), Exact<float>(rstd, stats), fuseSilu);
            else
                GroupNormCpu.Forward<double>(batch, channels, spatial, groups, eps, Exact<double>(x, values), Exact<double>(gamma, channels), Exact<double>(beta, channels),
                    Exact<double>(y, values), Exact<double>(mean, stats), Exact<double>(rstd, stats), fuseSilu);
        }

        protected override void Backward(int batch, int channels, int spatial, int groups,
            CpuBuffer x, CpuBuffer gamma, CpuBuffer beta, CpuBuffer mean, CpuBuffer rstd, CpuBuffer dy, CpuBuffer dx, CpuBuffer dgamma, CpuBuffer dbeta, bool fuseSilu)
        {
            long values = (long)batch * channels * spatial, stats = (long)batch * groups;
            if (x.DType == DType.Float32)
                GroupNormCpu.Backward<float>(batch, channels, spatial, groups, Exact<float>(x, values), Exact<float>(gamma, channels), Exact<float>(beta, channels),
                    Exact<float>(mean, stats), Exact<float>(rstd, stats), Exact<float>(dy, values), Exact<float>(dx, values), Exact<float>(dgamma, channels), Exact<float>(dbeta, channels), fuseSilu);
            else
                GroupNormCpu.Backward<double>(batch, channels, spatial, groups, Exact<double>(x, values), Exact<double>(gamma, channels), Exact<double>(beta, channels),
                    Exact<double>(mean, stats), Exact<double>(rstd, stats), Exact<double>(dy, values), Exact<double>(dx, values), Exact<double>(dgamma, channels), Exact<double>(dbeta, channels), fuseSilu);
        }
    }

    private sealed class CpuResample(CpuBackend backend) : ResampleKernels<CpuBuffer>(backend)
    {
        protected override void Upsample(int batch, int channels, int height, int width, CpuBuffer x, CpuBuffer y)
        {
            long image = (long)batch * channels * height * width;
            if (x.DType == DType.Float32) ResampleCpu.UpsampleNearest2x<float>(batch, channels, height, width, Exact<float>(x, image), Exact<float>(y, 4 * image));
            else ResampleCpu.UpsampleNearest2x<double>(batch, channels, height, width, Exact<double>(x, image), Exact<double>(y, 4 * image));
        }

        protected override void UpsampleBackward(int batch, int channels, int height, int width, CpuBuffer dy, CpuBuffer dx)
        {
            long image = (long)batch * channels * height * width;
            if (dy.DType == DType.Float32) ResampleCpu.UpsampleNearest2xBackward<float>(batch, channels, height, width, Exact<float>(dy, 4 * image), Exact<float>(dx, image));
            else ResampleCpu.UpsampleNearest2xBackward<double>(batch, channels, height, width, Exact<double>(dy, 4 * image), Exact<double>(dx, image));
        }

        protected override void AvgPool(int batch, int channels, int height, int width, int k, CpuBuffer x, CpuBuffer y)
        {
            long image = (long)batch * channels * height * width, pooled = image / ((long)k * k);
            if (x.DType == DType.Float32) ResampleCpu.AvgPool<float>(batch, channels, height, width, k, Exact<float>(x, image), Exact<float>(y, pooled));
            else ResampleCpu.AvgPool<double>(batch, channels, height, width, k, Exact<double>(x, image), Exact<double>(y, pooled));
        }

        protected override void AvgPoolBackward(int batch, int channels, int height, int width, int k, CpuBuffer dy, CpuBuffer dx)
        {
            long image = (long)batch * channels * height * width, pooled = image / ((long)k * k);
            if (dy.DType == DType.Float32) ResampleCpu.AvgPoolBackward<float>(batch, channels, height, width, k, Exact<float>(dy, pooled), Exact<float>(dx, image));
            else ResampleCpu.AvgPoolBackward<double>(batch, channels, height, width, k, Exact<double>(dy, pooled), Exact<double>(dx, image));
        }
    }

    private sealed class CpuAttention(CpuBackend backend) : AttentionKernels<CpuBuffer>(backend)
    {
        protected override void Forward(int batch, int tokens, int headDim, double scale, CpuBuffer q, CpuBuffer k, CpuBuffer v, CpuBuffer o, CpuBuffer lse)
        {
            long values = (long)batch * tokens * headDim, rows = (long)batch * tokens;
            if (q.DType == DType.Float32)
                AttentionCpu.Forward(batch, tokens, headDim, (float)scale, Exact<float>(q, values), Exact<float>(k, values), Exact<float>(v, values), Exact<float>(o, values), Exact<float>(lse, rows));
            else
                AttentionNaive.Forward<double>(batch, tokens, headDim, scale, Exact<double>(q, values), Exact<double>(k, values), Exact<double>(v, values), Exact<double>(o, values), Exact<double>(lse, rows));
        }

        protected override void Backward(int batch, int tokens, int headDim, double scale,
            CpuBuffer q, CpuBuffer k, CpuBuffer v, CpuBuffer o, CpuBuffer lse, CpuBuffer dO, CpuBuffer dq, CpuBuffer dk, CpuBuffer dv)
        {
            long values = (long)batch * tokens * headDim, rows = (long)batch * tokens;
            if (q.DType == DType.Float32)
                AttentionCpu.Backward(batch, tokens, headDim, (float)scale, Exact<float>(q, values), Exact<float>(k, values), Exact<float>(v, values), Exact<float>(o, values),
                    Exact<float>(lse, rows), Exact<float>(dO, values), Exact<float>(dq, values), Exact<float>(dk, values), Exact<float>(dv, values));
            else
                AttentionNaive.Backward<double>(batch, tokens, headDim, scale, Exact<double>(q, values), Exact<double>(k, values), Exact<double>(v, values), Exact<double>(o, values),
                    Exact<double>(lse, rows), Exact<double>(dO, values), Exact<double>(dq, values), Exact<double>(dk, values), Exact<double>(dv, values));
        }
    }
}
