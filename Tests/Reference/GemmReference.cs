namespace DiffusionCore.Tests.Reference;

/// <summary>Plain triple-loop GEMM in double precision: the reference the fast kernels are checked against.</summary>
public static class GemmReference
{
    /// <summary>
    /// C = alpha * op(A) * op(B) + beta * C0, row-major, leading dimensions are the row strides of the stored
    /// matrices. Returns the m x n result (row stride n) and, per element, the magnitude
    /// |alpha| * sum_p |op(A)(i,p)| * |op(B)(p,j)| + |beta * C0(i,j)| that rounding errors scale with.
    /// When beta is 0, C0 is not read.
    /// </summary>
    public static (double[] Value, double[] Magnitude) Gemm(bool transA, bool transB, int m, int n, int k, double alpha,
        float[] a, int lda, float[] b, int ldb, double beta, float[] c0, int ldc)
    {
        var value = new double[m * n];
        var magnitude = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = transA ? a[p * lda + i] : a[i * lda + p];
                    double y = transB ? b[j * ldb + p] : b[p * ldb + j];
                    sum += x * y;
                    abs += Math.Abs(x * y);
                }
                double old = beta == 0 ? 0 : beta * c0[i * ldc + j];
                value[i * n + j] = alpha * sum + old;
                magnitude[i * n + j] = Math.Abs(alpha) * abs + Math.Abs(old);
            }
        }
        return (value, magnitude);
    }
}
