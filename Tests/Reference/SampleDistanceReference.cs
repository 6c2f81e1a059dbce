namespace DiffusionCore.Tests.Reference;

/// <summary>Plain double-precision loops for the two-sample distances, straight from their definitions.</summary>
public static class SampleDistanceReference
{
    /// <summary>2 mean|x_i - y_j| - mean_{i != j}|x_i - x_j| - mean_{i != j}|y_i - y_j|.</summary>
    public static double EnergyDistance(float[] x, float[] y, int dim) =>
        2 * MeanOverPairs(x, y, dim, false, Math.Sqrt) - MeanOverPairs(x, x, dim, true, Math.Sqrt) - MeanOverPairs(y, y, dim, true, Math.Sqrt);

    /// <summary>Unbiased MMD^2 with k(a, b) = exp(-|a - b|^2 / (2 h^2)).</summary>
    public static double Mmd2Rbf(float[] x, float[] y, int dim, double h)
    {
        double Kernel(double squared) => Math.Exp(-squared / (2 * h * h));
        return MeanOverPairs(x, x, dim, true, Kernel) + MeanOverPairs(y, y, dim, true, Kernel) - 2 * MeanOverPairs(x, y, dim, false, Kernel);
    }

    private static double MeanOverPairs(float[] a, float[] b, int dim, bool distinct, Func<double, double> f)
    {
        int na = a.Length / dim, nb = b.Length / dim;
        double sum = 0;
        long pairs = 0;
        for (int i = 0; i < na; i++)
        {
            for (int j = 0; j < nb; j++)
            {
                if (distinct && i == j) continue;
                double squared = 0;
                for (int k = 0; k < dim; k++)
                {
                    double d = (double)a[i * dim + k] - b[j * dim + k];
                    squared += d * d;
                }
                sum += f(squared);
                pairs++;
            }
        }
        return sum / pairs;
    }
}
