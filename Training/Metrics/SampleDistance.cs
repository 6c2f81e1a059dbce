using System.Numerics.Tensors;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Training.Metrics;

/// <summary>
/// Two-sample distances between a set of generated samples and a set of data points, each set stored
/// row-major as <c>count x dim</c> floats. Both statistics are exact O(n m dim) sums over all pairs,
/// parallel over rows; each row's sum is kept separately and the rows are added in order, so the result
/// does not depend on the thread count.
/// </summary>
public static class SampleDistance
{
    // Rows per parallel task are chosen so that a task covers at least this many pairs.
    private const long MinPairsPerTask = 16_384;

    // Below this dimension a scalar double loop beats the call overhead of the SIMD distance.
    private const int SimdDistanceMinDim = 32;

    // The median heuristic looks at the pairs of at most this many pooled points (about 5e5 pairs).
    private const int MedianHeuristicMaxPoints = 1000;

    /// <summary>
    /// Székely's energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Székely and Rizzo 2013, eq. 2.1), with
    /// the within-set means as U-statistics over distinct pairs, so that the estimate is unbiased (it is zero
    /// in expectation, and may come out slightly negative, when both sets come from one distribution).
    /// </summary>
    /// <param name="x">First set, <c>n x dim</c> row-major, n at least 2.</param>
    /// <param name="y">Second set, <c>m x dim</c> row-major, m at least 2.</param>
    /// <param name="dim">Dimension of a point.</param>
    /// <exception cref="ArgumentException">Bad sizes, or a NaN or infinite coordinate.</exception>
    public static double EnergyDistance(float[] x, float[] y, int dim)
    {
        var (n, m) = Validate(nameof(EnergyDistance), x, y, dim);
        var distance = new EuclideanDistance();
        double xy = PairSum(x, n, y, m, dim, sameSet: false, distance) / ((double)n * m);
        double xx = PairSum(x, n, x, n, dim, sameSet: true, distance) / ((double)n * (n - 1));
        double yy = PairSum(y, m, y, m, dim, sameSet: true, distance) / ((double)m * (m - 1));
        return 2 * xy - xx - yy;
    }

    /// <summary>
    /// The unbiased squared maximum mean discrepancy MMD^2_u of Gretton et al. (JMLR 2012, eq. 3) under the
    /// Gaussian kernel k(a, b) = exp(-|a - b|^2 / (2 h^2)).
    /// </summary>
    /// <param name="x">First set, <c>n x dim</c> row-major, n at least 2.</param>
    /// <param name="y">Second set, <c>m x dim</c> row-major, m at least 2.</param>
    /// <param name="dim">Dimension of a point.</param>
    /// <param name="bandwidth">The kernel width h; zero or negative picks <see cref="MedianHeuristicBandwidth"/>.</param>
    /// <exception cref="ArgumentException">Bad sizes, a NaN or infinite coordinate, or a zero median distance.</exception>
    public static double Mmd2Rbf(float[] x, float[] y, int dim, double bandwidth = 0)
    {
        var (n, m) = Validate(nameof(Mmd2Rbf), x, y, dim);
        double h = bandwidth > 0 ? bandwidth : MedianHeuristicBandwidth(x, y, dim);
        var kernel = new GaussianKernel(-1.0 / (2 * h * h));
        double xy = PairSum(x, n, y, m, dim, sameSet: false, kernel) / ((double)n * m);
        double xx = PairSum(x, n, x, n, dim, sameSet: true, kernel) / ((double)n * (n - 1));
        double yy = PairSum(y, m, y, m, dim, sameSet: true, kernel) / ((double)m * (m - 1));
        return xx + yy - 2 * xy;
    }

    /// <summary>
    /// The median heuristic kernel width (Gretton et al. 2012, section 8): the median Euclidean distance between
    /// distinct points of the pooled sample. Above 1000 pooled points, 1000 evenly spaced ones are used.
    /// </summary>
    /// <exception cref="ArgumentException">Bad sizes, a NaN or infinite coordinate, or a zero median distance.</exception>
    public static double MedianHeuristicBandwidth(float[] x, float[] y, int dim)
    {
        var (n, m) = Validate(nameof(MedianHeuristicBandwidth), x, y, dim);
        int total = n + m;
        int points = Math.Min(total, MedianHeuristicMaxPoints);
        var pooled = new float[points * dim];
        for (int k = 0; k < points; k++)
        {
            int index = (int)((long)k * total / points);
            ReadOnlySpan<float> row = index < n ? x.AsSpan(index * dim, dim) : y.AsSpan((index - n) * dim, dim);
            row.CopyTo(pooled.AsSpan(k * dim, dim));
        }
        var squared = new double[(long)points * (points - 1) / 2];
        long p = 0;
        for (int i = 0; i < points; i++)
        {
            ReadOnlySpan<float> pi = pooled.AsSpan(i * dim, dim);
            for (int j = i + 1; j < points; j++) squared[p++] = SquaredDistance(pi, pooled.AsSpan(j * dim, dim));
        }
        Array.Sort(squared);
        long mid = squared.Length / 2;
        double median = squared.Length % 2 == 1
            ? Math.Sqrt(squared[mid])
            : 0.5 * (Math.Sqrt(squared[mid - 1]) + Math.Sqrt(squared[mid]));
        if (median == 0)
        {
            throw new ArgumentException(
                $"{nameof(MedianHeuristicBandwidth)}: the median pairwise distance of the {total} pooled points is 0; pass an explicit bandwidth");
        }
        return median;
    }

    // The function of the squared distance summed over pairs; a struct so that PairSum specialises and inlines it.
    private interface IPairTerm
    {
        double Apply(double squaredDistance);
    }

    private readonly struct EuclideanDistance : IPairTerm
    {
        public double Apply(double squaredDistance) => Math.Sqrt(squaredDistance);
    }

    private readonly struct GaussianKernel(double minusHalfInverseSquaredWidth) : IPairTerm
    {
        public double Apply(double squaredDistance) => Math.Exp(minusHalfInverseSquaredWidth * squaredDistance);
    }

    // Sum over pairs (i, j) of f(|a_i - b_j|^2), skipping i == j when a and b are the same set. Per-row sums
    // are stored and added in row order, so the total is identical for any thread count.
    private static double PairSum<TTerm>(float[] a, int na, float[] b, int nb, int dim, bool sameSet, TTerm f)
        where TTerm : struct, IPairTerm
    {
        var rowSums = new double[na];
        long minRows = Math.Max(1, MinPairsPerTask / Math.Max(1, (long)nb * dim));
        CpuParallel.For(na, minRows, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                ReadOnlySpan<float> ai = a.AsSpan((int)i * dim, dim);
                double sum = 0;
                if (dim == 2)
                {
                    // The 2-D toy sets: skip the span slicing and the loop over coordinates.
                    double ax = ai[0], ay = ai[1];
                    for (int j = 0; j < nb; j++)
                    {
                        if (sameSet && j == i) continue;
                        double dx = ax - b[2 * j], dy = ay - b[2 * j + 1];
                        sum += f.Apply(dx * dx + dy * dy);
                    }
                }
                else
                {
                    for (int j = 0; j < nb; j++)
                    {
                        if (sameSet && j == i) continue;
                        sum += f.Apply(SquaredDistance(ai, b.AsSpan(j * dim, dim)));
                    }
                }
                rowSums[i] = sum;
            }
        });
        double total = 0;
        foreach (double s in rowSums) total += s;
        return total;
    }

    private static double SquaredDistance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length >= SimdDistanceMinDim)
        {
            double d = TensorPrimitives.Distance(a, b);
            return d * d;
        }
        double sum = 0;
        for (int k = 0; k < a.Length; k++)
        {
            double diff = (double)a[k] - b[k];
            sum += diff * diff;
        }
        return sum;
    }

    private static (int N, int M) Validate(string op, float[] x, float[] y, int dim)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (dim < 1) throw new ArgumentException($"{op}: dim must be at least 1, got {dim}", nameof(dim));
        if (x.Length % dim != 0 || y.Length % dim != 0)
        {
            throw new ArgumentException($"{op}: set lengths {x.Length} and {y.Length} must be multiples of dim {dim}");
        }
        int n = x.Length / dim, m = y.Length / dim;
        if (n < 2 || m < 2)
        {
            throw new ArgumentException($"{op}: each set needs at least 2 points of dim {dim}, got {n} and {m}");
        }
        CheckFinite(op, x, nameof(x));
        CheckFinite(op, y, nameof(y));
        return (n, m);
    }

    private static void CheckFinite(string op, float[] set, string name)
    {
        int bad = Array.FindIndex(set, v => !float.IsFinite(v));
        if (bad >= 0) throw new ArgumentException($"{op}: {name}[{bad}] is {set[bad]}, not a finite number", name);
    }
}
