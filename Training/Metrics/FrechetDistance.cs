using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Factorization;

namespace DiffusionCore.Training.Metrics;

/// <summary>
/// Mean and covariance of a set of feature vectors: what the Fréchet distance compares. The covariance is the
/// unbiased sample covariance (denominator n - 1, as numpy's cov and the reference FID code use), accumulated in
/// double precision.
/// </summary>
public sealed class GaussianStatistics
{
    /// <summary>Statistics from a given mean (length d) and a d x d covariance, stored row-major (copied).</summary>
    /// <exception cref="ArgumentException">The sizes do not match, the covariance is not symmetric, or a value is not finite.</exception>
    public GaussianStatistics(double[] mean, double[] covariance, int count = 0)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(covariance);
        int d = mean.Length;
        if (d == 0) throw new ArgumentException("GaussianStatistics: the dimension must be at least 1", nameof(mean));
        if (covariance.Length != (long)d * d)
            throw new ArgumentException($"GaussianStatistics: a mean of length {d} needs a {d} x {d} covariance ({(long)d * d} values), got {covariance.Length}", nameof(covariance));
        if (mean.Any(v => !double.IsFinite(v)) || covariance.Any(v => !double.IsFinite(v)))
            throw new ArgumentException("GaussianStatistics: the mean and covariance must be finite", nameof(covariance));
        for (int i = 0; i < d; i++)
            for (int j = 0; j < i; j++)
            {
                double a = covariance[i * d + j], b = covariance[j * d + i];
                if (Math.Abs(a - b) > 1e-9 * (Math.Abs(a) + Math.Abs(b)) + 1e-300)
                    throw new ArgumentException($"GaussianStatistics: the covariance is not symmetric at ({i}, {j}): {a} vs {b}", nameof(covariance));
            }
        Mean = (double[])mean.Clone();
        Covariance = (double[])covariance.Clone();
        Count = count;
    }

    /// <summary>Dimension d of the features.</summary>
    public int Dimension => Mean.Length;

    /// <summary>Number of vectors the statistics were estimated from (0 when given directly).</summary>
    public int Count { get; }

    /// <summary>The mean, length d. Do not modify.</summary>
    public double[] Mean { get; }

    /// <summary>The covariance, d x d row-major. Do not modify.</summary>
    public double[] Covariance { get; }

    /// <summary>Mean and unbiased covariance of <paramref name="count"/> vectors of <paramref name="dimension"/> floats stored row-major.</summary>
    /// <exception cref="ArgumentException">Fewer than 2 vectors, a length that is not count x dimension, or a value that is not finite.</exception>
    public static GaussianStatistics FromSamples(ReadOnlySpan<float> vectors, int count, int dimension)
    {
        if (dimension < 1) throw new ArgumentOutOfRangeException(nameof(dimension), dimension, "GaussianStatistics.FromSamples: the dimension must be at least 1");
        if (count < 2) throw new ArgumentException($"GaussianStatistics.FromSamples: a covariance needs at least 2 vectors, got {count}", nameof(count));
        if (vectors.Length != (long)count * dimension)
            throw new ArgumentException($"GaussianStatistics.FromSamples: {vectors.Length} values are not {count} vectors of {dimension}", nameof(vectors));
        int d = dimension;
        var mean = new double[d];
        for (int i = 0; i < count; i++)
        {
            var row = vectors.Slice(i * d, d);
            for (int k = 0; k < d; k++)
            {
                float v = row[k];
                if (!float.IsFinite(v)) throw new ArgumentException($"GaussianStatistics.FromSamples: vector {i} has {v} at coordinate {k}", nameof(vectors));
                mean[k] += v;
            }
        }
        for (int k = 0; k < d; k++) mean[k] /= count;
        // Centred outer products summed over the vectors, the upper triangle only, then mirrored.
        var covariance = new double[d * d];
        var centred = new double[d];
        for (int i = 0; i < count; i++)
        {
            var row = vectors.Slice(i * d, d);
            for (int k = 0; k < d; k++) centred[k] = row[k] - mean[k];
            for (int a = 0; a < d; a++)
            {
                double ca = centred[a];
                if (ca == 0) continue;
                int at = a * d;
                for (int b = a; b < d; b++) covariance[at + b] += ca * centred[b];
            }
        }
        for (int a = 0; a < d; a++)
            for (int b = a; b < d; b++)
            {
                double v = covariance[a * d + b] / (count - 1);
                covariance[a * d + b] = v;
                covariance[b * d + a] = v;
            }
        return new GaussianStatistics(mean, covariance, count);
    }
}

/// <summary>
/// The Fréchet (2-Wasserstein) distance between Gaussians, the statistic of FID (Heusel et al. 2017, eq. 6; the
/// closed form is Dowson and Landau 1982): d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). It is reported
/// squared, as FID is.
/// </summary>
public static class FrechetDistance
{
    /// <summary>
    /// d^2 between the Gaussians of <paramref name="first"/> and <paramref name="second"/>. The trace of (S1 S2)^(1/2) is
    /// taken through the symmetric form tr((S1^(1/2) S2 S1^(1/2))^(1/2)), which has the same eigenvalues as S1 S2 (they
    /// are similar matrices) but is symmetric positive semi-definite, so both square roots come from symmetric
    /// eigen-decompositions (real eigenvalues, orthogonal eigenvectors) rather than from a general matrix square root
    /// of the non-symmetric S1 S2, which is unstable when the covariances are near-singular. Eigenvalues that come out
    /// below zero by rounding are set to zero. The result is clamped at 0 (rounding can push an exact 0 below it).
    /// </summary>
    /// <exception cref="ArgumentException">The dimensions differ.</exception>
    public static double Compute(GaussianStatistics first, GaussianStatistics second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        if (first.Dimension != second.Dimension)
            throw new ArgumentException($"FrechetDistance: the statistics have dimensions {first.Dimension} and {second.Dimension}", nameof(second));
        int d = first.Dimension;
        double meanTerm = 0;
        for (int k = 0; k < d; k++)
        {
            double delta = first.Mean[k] - second.Mean[k];
            meanTerm += delta * delta;
        }
        var s1 = Matrix<double>.Build.Dense(d, d, (i, j) => first.Covariance[i * d + j]);
        var s2 = Matrix<double>.Build.Dense(d, d, (i, j) => second.Covariance[i * d + j]);
        double traceTerm = s1.Trace() + s2.Trace() - 2 * TraceOfSquareRootProduct(s1, s2);
        return Math.Max(0, meanTerm + traceTerm);
    }

    /// <summary>tr((S1 S2)^(1/2)) for symmetric positive semi-definite S1, S2, through tr((S1^(1/2) S2 S1^(1/2))^(1/2)).</summary>
    private static double TraceOfSquareRootProduct(Matrix<double> s1, Matrix<double> s2)
    {
        var root = SymmetricSquareRoot(s1);
        var m = root * s2 * root;
        // Rounding leaves m a hair from symmetric; the symmetric solver reads one triangle, so average the two.
        m = (m + m.Transpose()) * 0.5;
        var eigenvalues = m.Evd(Symmetricity.Symmetric).EigenValues;
        double trace = 0;
        foreach (var lambda in eigenvalues) trace += Math.Sqrt(Math.Max(0, lambda.Real));
        return trace;
    }

    /// <summary>S^(1/2) = V diag(sqrt(max(lambda, 0))) V^T from the symmetric eigen-decomposition S = V diag(lambda) V^T.</summary>
    private static Matrix<double> SymmetricSquareRoot(Matrix<double> s)
    {
        var evd = s.Evd(Symmetricity.Symmetric);
        var v = evd.EigenVectors;
        var roots = Vector<double>.Build.Dense(s.RowCount, i => Math.Sqrt(Math.Max(0, evd.EigenValues[i].Real)));
        return v * Matrix<double>.Build.DiagonalOfDiagonalVector(roots) * v.Transpose();
    }
}
