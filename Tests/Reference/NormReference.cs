namespace DiffusionCore.Tests.Reference;

/// <summary>
/// Plain, obviously-correct double-precision references for GroupNorm (with optional SiLU), nearest x2
/// upsampling and average pooling, written straight from the definitions with index loops.
/// </summary>
public static class NormReference
{
    /// <summary>
    /// y = GroupNorm(x) (Wu and He 2018, eqs. 1-2), then y = z*sigmoid(z) when <paramref name="silu"/>.
    /// mean and rstd are per (n, group), the variance biased (divided by M = C/groups * HW).
    /// </summary>
    public static void GroupNormForward(int n, int c, int hw, int groups, double eps, double[] x, double[] gamma, double[] beta,
        double[] y, double[] mean, double[] rstd, bool silu)
    {
        int cg = c / groups;
        for (int b = 0; b < n; b++)
        for (int g = 0; g < groups; g++)
        {
            double sum = 0;
            for (int ch = g * cg; ch < (g + 1) * cg; ch++)
            for (int i = 0; i < hw; i++)
                sum += x[(b * c + ch) * hw + i];
            double mu = sum / (cg * hw);
            double sq = 0;
            for (int ch = g * cg; ch < (g + 1) * cg; ch++)
            for (int i = 0; i < hw; i++)
            {
                double d = x[(b * c + ch) * hw + i] - mu;
                sq += d * d;
            }
            double r = 1.0 / Math.Sqrt(sq / (cg * hw) + eps);
            mean[b * groups + g] = mu;
            rstd[b * groups + g] = r;
            for (int ch = g * cg; ch < (g + 1) * cg; ch++)
            for (int i = 0; i < hw; i++)
            {
                int idx = (b * c + ch) * hw + i;
                double z = (x[idx] - mu) * r * gamma[ch] + beta[ch];
                y[idx] = silu ? z * Sigmoid(z) : z;
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="GroupNormForward"/>. With g = dL/dz (dy, times silu'(z) = s(1 + z(1 - s)) when
    /// <paramref name="silu"/>) and dxhat = gamma*g, the standard normalisation gradient
    /// dx_i = rstd/M * (M*dxhat_i - sum_j dxhat_j - xhat_i * sum_j dxhat_j*xhat_j) over the group's M elements;
    /// dgamma_c = sum g*xhat and dbeta_c = sum g over n and the positions of channel c.
    /// </summary>
    public static void GroupNormBackward(int n, int c, int hw, int groups, double eps, double[] x, double[] gamma, double[] beta,
        double[] dy, double[] dx, double[] dgamma, double[] dbeta, bool silu)
    {
        int cg = c / groups, m = cg * hw;
        var y = new double[x.Length];
        var mean = new double[n * groups];
        var rstd = new double[n * groups];
        GroupNormForward(n, c, hw, groups, eps, x, gamma, beta, y, mean, rstd, false);
        Array.Clear(dgamma);
        Array.Clear(dbeta);
        var xhat = new double[x.Length];
        var dxhat = new double[x.Length];
        for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < hw; i++)
        {
            int idx = (b * c + ch) * hw + i, stat = b * groups + ch / cg;
            xhat[idx] = (x[idx] - mean[stat]) * rstd[stat];
            double z = xhat[idx] * gamma[ch] + beta[ch];
            double s = Sigmoid(z);
            double g = silu ? dy[idx] * s * (1 + z * (1 - s)) : dy[idx];
            dgamma[ch] += g * xhat[idx];
            dbeta[ch] += g;
            dxhat[idx] = g * gamma[ch];
        }
        for (int b = 0; b < n; b++)
        for (int grp = 0; grp < groups; grp++)
        {
            double sumD = 0, sumDX = 0;
            for (int ch = grp * cg; ch < (grp + 1) * cg; ch++)
            for (int i = 0; i < hw; i++)
            {
                int idx = (b * c + ch) * hw + i;
                sumD += dxhat[idx];
                sumDX += dxhat[idx] * xhat[idx];
            }
            double r = rstd[b * groups + grp];
            for (int ch = grp * cg; ch < (grp + 1) * cg; ch++)
            for (int i = 0; i < hw; i++)
            {
                int idx = (b * c + ch) * hw + i;
                dx[idx] = r / m * (m * dxhat[idx] - sumD - xhat[idx] * sumDX);
            }
        }
    }

    /// <summary>y[n, c, i, j] = x[n, c, i/2, j/2] for y of shape [N, C, 2H, 2W].</summary>
    public static double[] UpsampleNearest2x(int n, int c, int h, int w, double[] x)
    {
        var y = new double[n * c * 4 * h * w];
        for (int p = 0; p < n * c; p++)
        for (int i = 0; i < 2 * h; i++)
        for (int j = 0; j < 2 * w; j++)
            y[(p * 2 * h + i) * 2 * w + j] = x[(p * h + i / 2) * w + j / 2];
        return y;
    }

    /// <summary>dx[n, c, i, j] = sum over a, b in {0,1} of dy[n, c, 2i + a, 2j + b].</summary>
    public static double[] UpsampleNearest2xBackward(int n, int c, int h, int w, double[] dy)
    {
        var dx = new double[n * c * h * w];
        for (int p = 0; p < n * c; p++)
        for (int i = 0; i < 2 * h; i++)
        for (int j = 0; j < 2 * w; j++)
            dx[(p * h + i / 2) * w + j / 2] += dy[(p * 2 * h + i) * 2 * w + j];
        return dx;
    }

    /// <summary>y[n, c, i, j] = mean of x[n, c, k*i .. k*i+k-1, k*j .. k*j+k-1].</summary>
    public static double[] AvgPool(int n, int c, int h, int w, int k, double[] x)
    {
        int oh = h / k, ow = w / k;
        var y = new double[n * c * oh * ow];
        for (int p = 0; p < n * c; p++)
        for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
            y[(p * oh + i / k) * ow + j / k] += x[(p * h + i) * w + j] / (k * k);
        return y;
    }

    /// <summary>dx[n, c, i, j] = dy[n, c, i/k, j/k] / k^2.</summary>
    public static double[] AvgPoolBackward(int n, int c, int h, int w, int k, double[] dy)
    {
        int oh = h / k, ow = w / k;
        var dx = new double[n * c * h * w];
        for (int p = 0; p < n * c; p++)
        for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++)
            dx[(p * h + i) * w + j] = dy[(p * oh + i / k) * ow + j / k] / (k * k);
        return dx;
    }

    private static double Sigmoid(double z) => 1.0 / (1.0 + Math.Exp(-z));
}
