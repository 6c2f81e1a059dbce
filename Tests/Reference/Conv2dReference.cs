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

    // The F(2x2, 3x3) transforms with every entry replaced by its absolute value: |Bᵀ|, |G|, |Aᵀ|.
    private static readonly double[,] AbsBt = { { 1, 0, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 1, 0 }, { 0, 1, 0, 1 } };
    private static readonly double[,] AbsG = { { 1, 0, 0 }, { 0.5, 0.5, 0.5 }, { 0.5, 0.5, 0.5 }, { 0, 0, 1 } };
    private static readonly double[,] AbsAt = { { 1, 1, 1, 0 }, { 0, 1, 1, 1 } };

    /// <summary>
    /// The absolute-value F(2x2, 3x3) sum of each forward output (3x3 kernel, stride 1):
    /// |bias| + |Aᵀ| [Σ_ci (|G| |g| |G|ᵀ) ⊙ (|Bᵀ| |d| |B|)] |A|, with d the 4x4 input tile of the output's 2x2
    /// tile (zero outside the image). Every intermediate of the algorithm is bounded in magnitude by the matching
    /// term of this sum, so a float32 Winograd result computed in k rounding steps is within γ_k of it (Higham,
    /// eq. 3.5, applied to the bilinear algorithm term by term).
    /// </summary>
    public static double[] WinogradForwardBound(Conv2dShape s, float[] x, float[] w, float[]? bias)
    {
        int outH = s.OutH, outW = s.OutW;
        var bound = new double[s.N * s.Cout * outH * outW];
        var u = new double[s.Cout, s.Cin, 4, 4];
        for (int co = 0; co < s.Cout; co++)
            for (int ci = 0; ci < s.Cin; ci++)
            {
                var g = new double[3, 3];
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++)
                        g[kh, kw] = Math.Abs(w[((co * s.Cin + ci) * 3 + kh) * 3 + kw]);
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        for (int kh = 0; kh < 3; kh++)
                            for (int kw = 0; kw < 3; kw++)
                                u[co, ci, a, b] += AbsG[a, kh] * g[kh, kw] * AbsG[b, kw];
            }
        for (int n = 0; n < s.N; n++)
            for (int i = 0; 2 * i < outH; i++)
                for (int j = 0; 2 * j < outW; j++)
                {
                    var v = new double[s.Cin, 4, 4];
                    for (int ci = 0; ci < s.Cin; ci++)
                        for (int r = 0; r < 4; r++)
                            for (int c = 0; c < 4; c++)
                            {
                                int ih = 2 * i - s.Pad + r, iw = 2 * j - s.Pad + c;
                                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                double d = Math.Abs(x[((n * s.Cin + ci) * s.H + ih) * s.W + iw]);
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        v[ci, a, b] += AbsBt[a, r] * d * AbsBt[b, c];
                            }
                    for (int co = 0; co < s.Cout; co++)
                    {
                        var m = new double[4, 4];
                        for (int ci = 0; ci < s.Cin; ci++)
                            for (int a = 0; a < 4; a++)
                                for (int b = 0; b < 4; b++)
                                    m[a, b] += u[co, ci, a, b] * v[ci, a, b];
                        for (int r = 0; r < 2 && 2 * i + r < outH; r++)
                            for (int c = 0; c < 2 && 2 * j + c < outW; c++)
                            {
                                double y = Math.Abs(bias?[co] ?? 0);
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        y += AbsAt[r, a] * m[a, b] * AbsAt[c, b];
                                bound[((n * s.Cout + co) * outH + 2 * i + r) * outW + 2 * j + c] = y;
                            }
                    }
                }
        return bound;
    }

    /// <summary>
    /// The absolute-value F(2x2, 3x3) sum of each weight-gradient entry: |Gᵀ| [Σ_{n, tiles} (|A| |dY| |Aᵀ|) ⊙
    /// (|Bᵀ| |d| |B|)] |G|, dY the 2x2 output-gradient tile (zero outside the output); see
    /// <see cref="WinogradForwardBound"/>.
    /// </summary>
    public static double[] WinogradWeightBound(Conv2dShape s, float[] x, float[] dy)
    {
        int outH = s.OutH, outW = s.OutW;
        var du = new double[s.Cout, s.Cin, 4, 4];
        for (int n = 0; n < s.N; n++)
            for (int i = 0; 2 * i < outH; i++)
                for (int j = 0; 2 * j < outW; j++)
                {
                    var v = new double[s.Cin, 4, 4];
                    for (int ci = 0; ci < s.Cin; ci++)
                        for (int r = 0; r < 4; r++)
                            for (int c = 0; c < 4; c++)
                            {
                                int ih = 2 * i - s.Pad + r, iw = 2 * j - s.Pad + c;
                                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                                double d = Math.Abs(x[((n * s.Cin + ci) * s.H + ih) * s.W + iw]);
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        v[ci, a, b] += AbsBt[a, r] * d * AbsBt[b, c];
                            }
                    for (int co = 0; co < s.Cout; co++)
                    {
                        var dm = new double[4, 4];
                        for (int r = 0; r < 2 && 2 * i + r < outH; r++)
                            for (int c = 0; c < 2 && 2 * j + c < outW; c++)
                            {
                                double g = Math.Abs(dy[((n * s.Cout + co) * outH + 2 * i + r) * outW + 2 * j + c]);
                                for (int a = 0; a < 4; a++)
                                    for (int b = 0; b < 4; b++)
                                        dm[a, b] += AbsAt[r, a] * g * AbsAt[c, b];
                            }
                        for (int ci = 0; ci < s.Cin; ci++)
                            for (int a = 0; a < 4; a++)
                                for (int b = 0; b < 4; b++)
                                    du[co, ci, a, b] += dm[a, b] * v[ci, a, b];
                    }
                }
        var bound = new double[s.WeightLength];
        for (int co = 0; co < s.Cout; co++)
            for (int ci = 0; ci < s.Cin; ci++)
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++)
                    {
                        double sum = 0;
                        for (int a = 0; a < 4; a++)
                            for (int b = 0; b < 4; b++)
                                sum += AbsG[a, kh] * du[co, ci, a, b] * AbsG[b, kw];
                        bound[((co * s.Cin + ci) * 3 + kh) * 3 + kw] = sum;
                    }
        return bound;
    }

    /// <summary>
    /// The shape and kernel whose forward convolution of dy is dx (stride 1): w'[ci][co][kh][kw] =
    /// w[co][ci][K-1-kh][K-1-kw], padding K - 1 - pad, Cin and Cout swapped.
    /// </summary>
    public static (Conv2dShape Shape, float[] W) InputGradientAsForward(Conv2dShape s, float[] w)
    {
        var t = new Conv2dShape(s.N, s.Cout, s.OutH, s.OutW, s.Cin, s.KH, s.KW, 1, s.KH - 1 - s.Pad);
        var flipped = new float[w.Length];
        for (int co = 0; co < s.Cout; co++)
            for (int ci = 0; ci < s.Cin; ci++)
                for (int kh = 0; kh < s.KH; kh++)
                    for (int kw = 0; kw < s.KW; kw++)
                        flipped[((ci * s.Cout + co) * s.KH + kh) * s.KW + kw] = w[((co * s.Cin + ci) * s.KH + s.KH - 1 - kh) * s.KW + s.KW - 1 - kw];
        return (t, flipped);
    }
}
