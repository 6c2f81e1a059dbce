using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Tests.Reference;

/// <summary>
/// Obviously-correct conv2d (NCHW, zero padding): the seven nested loops of the definition
/// y[n, co, oh, ow] = bias[co] + Σ_{c, kh, kw} w[co, c, kh, kw] x[n, c, oh S - pad + kh, ow S - pad + kw],
/// in double. Each result comes with the sum of the absolute values of its terms, which bounds the
/// float32 rounding error of any summation order (Higham, Accuracy and Stability, eq. 3.5).
/// </summary>
public static class Conv2dReference
{
    /// <summary>Output y and the absolute term sums of each output element.</summary>
    public static (double[] Y, double[] AbsSum) Forward(Conv2dShape s, float[] x, float[] w, float[]? bias)
    {
        int oh_ = s.OutH, ow_ = s.OutW;
        var y = new double[s.N * s.Cout * oh_ * ow_];
        var abs = new double[y.Length];
        for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.Cout; co++)
        for (int oh = 0; oh < oh_; oh++)
        for (int ow = 0; ow < ow_; ow++)
        {
            int o = ((n * s.Cout + co) * oh_ + oh) * ow_ + ow;
            double sum = bias?[co] ?? 0, sumAbs = Math.Abs(sum);
            for (int c = 0; c < s.Cin; c++)
            for (int kh = 0; kh < s.KH; kh++)
            for (int kw = 0; kw < s.KW; kw++)
            {
                int ih = oh * s.Stride - s.Pad + kh, iw = ow * s.Stride - s.Pad + kw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                double term = (double)w[((co * s.Cin + c) * s.KH + kh) * s.KW + kw] * x[((n * s.Cin + c) * s.H + ih) * s.W + iw];
                sum += term;
                sumAbs += Math.Abs(term);
            }
            y[o] = sum;
            abs[o] = sumAbs;
        }
        return (y, abs);
    }

    /// <summary>
    /// dx, dw and db from dy by the chain rule on the same seven loops: every term w·x of the forward
    /// sends dy·w to dx and dy·x to dw; db sums dy.
    /// </summary>
    public static (double[] Dx, double[] DxAbs, double[] Dw, double[] DwAbs, double[] Db, double[] DbAbs) Backward(
        Conv2dShape s, float[] x, float[] w, float[] dy)
    {
        int oh_ = s.OutH, ow_ = s.OutW;
        var dx = new double[x.Length];
        var dxAbs = new double[x.Length];
        var dw = new double[w.Length];
        var dwAbs = new double[w.Length];
        var db = new double[s.Cout];
        var dbAbs = new double[s.Cout];
        for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.Cout; co++)
        for (int oh = 0; oh < oh_; oh++)
        for (int ow = 0; ow < ow_; ow++)
        {
            double g = dy[((n * s.Cout + co) * oh_ + oh) * ow_ + ow];
            db[co] += g;
            dbAbs[co] += Math.Abs(g);
            for (int c = 0; c < s.Cin; c++)
            for (int kh = 0; kh < s.KH; kh++)
            for (int kw = 0; kw < s.KW; kw++)
            {
                int ih = oh * s.Stride - s.Pad + kh, iw = ow * s.Stride - s.Pad + kw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                int xi = ((n * s.Cin + c) * s.H + ih) * s.W + iw;
                int wi = ((co * s.Cin + c) * s.KH + kh) * s.KW + kw;
                dx[xi] += g * w[wi];
                dxAbs[xi] += Math.Abs(g * w[wi]);
                dw[wi] += g * x[xi];
                dwAbs[wi] += Math.Abs(g * x[xi]);
            }
        }
        return (dx, dxAbs, dw, dwAbs, db, dbAbs);
    }
}
