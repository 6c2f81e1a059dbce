namespace DiffusionCore.Tests.Reference;

/// <summary>
/// Plain scaled-dot-product attention in double: the full N x N score matrix per sequence, a textbook
/// softmax, and the backward by the chain rule through the softmax Jacobian. Layout as in the kernel:
/// q, k, v, o are [B, N, D] contiguous, lse is [B, N].
/// </summary>
public static class AttentionReference
{
    /// <summary>o = softmax(scale q k^T) v and lse = log sum_j exp(scale q_i . k_j), per sequence.</summary>
    public static void Forward(int batch, int n, int d, double scale,
        double[] q, double[] k, double[] v, double[] o, double[] lse)
    {
        for (int b = 0; b < batch; b++)
        {
            var p = Probabilities(b, n, d, scale, q, k, out var rowLse);
            for (int i = 0; i < n; i++)
            {
                lse[b * n + i] = rowLse[i];
                for (int c = 0; c < d; c++)
                {
                    double sum = 0;
                    for (int j = 0; j < n; j++) sum += p[i, j] * v[(b * n + j) * d + c];
                    o[(b * n + i) * d + c] = sum;
                }
            }
        }
    }

    /// <summary>
    /// Gradients of <see cref="Forward"/> for upstream gradient dO: dV = P^T dO, dP = dO V^T,
    /// dS_ij = P_ij (dP_ij - sum_l P_il dP_il) (softmax Jacobian), dQ = scale dS K, dK = scale dS^T Q.
    /// </summary>
    public static void Backward(int batch, int n, int d, double scale,
        double[] q, double[] k, double[] v, double[] dO, double[] dq, double[] dk, double[] dv)
    {
        for (int b = 0; b < batch; b++)
        {
            var p = Probabilities(b, n, d, scale, q, k, out _);
            var dp = new double[n, n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int c = 0; c < d; c++) sum += dO[(b * n + i) * d + c] * v[(b * n + j) * d + c];
                    dp[i, j] = sum;
                }
            var ds = new double[n, n];
            for (int i = 0; i < n; i++)
            {
                double inner = 0;
                for (int j = 0; j < n; j++) inner += p[i, j] * dp[i, j];
                for (int j = 0; j < n; j++) ds[i, j] = p[i, j] * (dp[i, j] - inner);
            }
            for (int i = 0; i < n; i++)
                for (int c = 0; c < d; c++)
                {
                    double sv = 0, sq = 0, sk = 0;
                    for (int j = 0; j < n; j++)
                    {
                        sv += p[j, i] * dO[(b * n + j) * d + c];
                        sq += ds[i, j] * k[(b * n + j) * d + c];
                        sk += ds[j, i] * q[(b * n + j) * d + c];
                    }
                    dv[(b * n + i) * d + c] = sv;
                    dq[(b * n + i) * d + c] = scale * sq;
                    dk[(b * n + i) * d + c] = scale * sk;
                }
        }
    }

    /// <summary>P = softmax over rows of scale q k^T for sequence b (max subtracted first), and each row's lse.</summary>
    private static double[,] Probabilities(int b, int n, int d, double scale, double[] q, double[] k, out double[] lse)
    {
        var p = new double[n, n];
        lse = new double[n];
        for (int i = 0; i < n; i++)
        {
            double max = double.NegativeInfinity;
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int c = 0; c < d; c++) s += q[(b * n + i) * d + c] * k[(b * n + j) * d + c];
                p[i, j] = scale * s;
                max = Math.Max(max, p[i, j]);
            }
            double sum = 0;
            for (int j = 0; j < n; j++) sum += Math.Exp(p[i, j] - max);
            for (int j = 0; j < n; j++) p[i, j] = Math.Exp(p[i, j] - max) / sum;
            lse[i] = max + Math.Log(sum);
        }
        return p;
    }
}
