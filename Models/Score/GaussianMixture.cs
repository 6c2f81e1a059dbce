using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Models.Score;

/// <summary>
/// A Gaussian mixture p(x) = sum_k w_k N(x; mu_k, Sigma_k) in any dimension, with full covariances, and
/// its exact noised marginals: under x_t = alpha x0 + sigma eps the data mixture becomes the mixture of
/// N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I) with the same weights, so the log density and the score
/// grad log p_t(x) = -sum_k r_k(x) C_k^{-1} (x - alpha mu_k) (r_k the posterior responsibilities, C_k the
/// noised covariances) are known in closed form at every noise level. This is the ground truth that
/// samplers and likelihoods are tested against, and a ready-made <see cref="ScoreModel"/>.
/// Densities and scores are computed in float64, the responsibilities through a log-sum-exp softmax, so
/// far-out points do not underflow to 0 / 0. Outside the autograd tape (or for an x that tracks no gradient)
/// they run as plain loops on the host, one precision-matrix product per point and component (a download
/// and an upload per call on a GPU device); when x tracks a gradient they run as differentiable tensor ops,
/// so that autograd (e.g. a Hutchinson divergence) sees through them. Both paths agree to round-off.
/// </summary>
public sealed class GaussianMixture
{
    private readonly double[] _weights;
    private readonly double[][] _means;
    private readonly double[][,] _covariances;
    private readonly double[][,] _choleskyFactors;
    private volatile LevelFactors? _lastFactors;

    /// <summary>A mixture with full covariance matrices.</summary>
    /// <param name="weights">Positive component weights (normalised to sum 1).</param>
    /// <param name="means">One mean vector per component, all of the same dimension d.</param>
    /// <param name="covariances">One symmetric positive-definite d x d covariance per component.</param>
    public GaussianMixture(double[] weights, double[][] means, double[][,] covariances)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(means);
        ArgumentNullException.ThrowIfNull(covariances);
        int k = weights.Length;
        if (k == 0) throw new ArgumentException("GaussianMixture: needs at least one component", nameof(weights));
        if (means.Length != k || covariances.Length != k)
            throw new ArgumentException($"GaussianMixture: {k} weights, {means.Length} means and {covariances.Length} covariances; the counts must agree");
        for (int i = 0; i < k; i++)
            if (!(weights[i] > 0) || !double.IsFinite(weights[i])) throw new ArgumentOutOfRangeException(nameof(weights), weights[i], $"GaussianMixture: weight {i} must be positive and finite");
        int d = means[0].Length;
        if (d == 0) throw new ArgumentException("GaussianMixture: the dimension must be at least 1", nameof(means));
        double total = weights.Sum();
        _weights = weights.Select(w => w / total).ToArray();
        _means = new double[k][];
        _covariances = new double[k][,];
        _choleskyFactors = new double[k][,];
        for (int i = 0; i < k; i++)
        {
            if (means[i].Length != d) throw new ArgumentException($"GaussianMixture: mean {i} has dimension {means[i].Length}, mean 0 has {d}", nameof(means));
            if (means[i].Any(v => !double.IsFinite(v))) throw new ArgumentException($"GaussianMixture: mean {i} has a non-finite entry", nameof(means));
            var c = covariances[i];
            if (c.GetLength(0) != d || c.GetLength(1) != d)
                throw new ArgumentException($"GaussianMixture: covariance {i} is {c.GetLength(0)}x{c.GetLength(1)}, expected {d}x{d}", nameof(covariances));
            for (int r = 0; r < d; r++)
                for (int s = 0; s < r; s++)
                    if (Math.Abs(c[r, s] - c[s, r]) > 1e-12 * Math.Max(1.0, Math.Abs(c[r, s])))
                        throw new ArgumentException($"GaussianMixture: covariance {i} is not symmetric at ({r}, {s}): {c[r, s]} vs {c[s, r]}", nameof(covariances));
            _means[i] = (double[])means[i].Clone();
            _covariances[i] = (double[,])c.Clone();
            _choleskyFactors[i] = Cholesky(c, $"covariance {i}");
        }
        Dimension = d;
    }

    /// <summary>A mixture whose components have diagonal covariances diag(<paramref name="variances"/>[k]).</summary>
    public static GaussianMixture WithDiagonalCovariances(double[] weights, double[][] means, double[][] variances)
    {
        ArgumentNullException.ThrowIfNull(variances);
        var covariances = variances.Select(v =>
        {
            var c = new double[v.Length, v.Length];
            for (int i = 0; i < v.Length; i++) c[i, i] = v[i];
            return c;
        }).ToArray();
        return new GaussianMixture(weights, means, covariances);
    }

    /// <summary>A mixture whose components are isotropic, N(mu_k, s_k^2 I).</summary>
    public static GaussianMixture Isotropic(double[] weights, double[][] means, double[] standardDeviations)
    {
        ArgumentNullException.ThrowIfNull(means);
        ArgumentNullException.ThrowIfNull(standardDeviations);
        if (standardDeviations.Length != means.Length)
            throw new ArgumentException($"GaussianMixture.Isotropic: {means.Length} means and {standardDeviations.Length} standard deviations", nameof(standardDeviations));
        return WithDiagonalCovariances(weights, means, means.Select((m, k) => Enumerable.Repeat(standardDeviations[k] * standardDeviations[k], m.Length).ToArray()).ToArray());
    }

    /// <summary>Dimension d of a point.</summary>
    public int Dimension { get; }

    /// <summary>Number of components K.</summary>
    public int Components => _weights.Length;

    /// <summary>The weight of component <paramref name="k"/> (weights sum to 1).</summary>
    public double Weight(int k) => _weights[k];

    /// <summary>A copy of the mean of component <paramref name="k"/>.</summary>
    public double[] ComponentMean(int k) => (double[])_means[k].Clone();

    /// <summary>A copy of the covariance of component <paramref name="k"/>.</summary>
    public double[,] ComponentCovariance(int k) => (double[,])_covariances[k].Clone();

    /// <summary>The mixture's mean sum_k w_k mu_k.</summary>
    public double[] Mean()
    {
        var m = new double[Dimension];
        for (int k = 0; k < Components; k++)
            for (int i = 0; i < Dimension; i++) m[i] += _weights[k] * _means[k][i];
        return m;
    }

    /// <summary>The mixture's covariance sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T (law of total covariance).</summary>
    public double[,] Covariance()
    {
        int d = Dimension;
        var m = Mean();
        var c = new double[d, d];
        for (int k = 0; k < Components; k++)
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++)
                    c[i, j] += _weights[k] * (_covariances[k][i, j] + _means[k][i] * _means[k][j]);
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) c[i, j] -= m[i] * m[j];
        return c;
    }

    /// <summary>
    /// The mixture of the noised data x = alpha x0 + sigma eps: components N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I),
    /// weights unchanged.
    /// </summary>
    public GaussianMixture Noised(NoiseLevel level)
    {
        CheckLevel(level);
        return new GaussianMixture(_weights, _means.Select(m => m.Select(v => level.Alpha * v).ToArray()).ToArray(),
            Enumerable.Range(0, Components).Select(k => NoisedCovariance(k, level)).ToArray());
    }

    /// <summary>
    /// <paramref name="count"/> independent draws as a [count, d] tensor: a component k with probability w_k,
    /// then mu_k + L_k z with L_k L_k^T = Sigma_k and z ~ N(0, I). Uses count uniforms, then count * d normals,
    /// of <paramref name="generator"/>.
    /// </summary>
    public Tensor Sample(int count, Generator generator, DType dtype = DType.Float32, Device? device = null) =>
        SampleWithComponents(count, generator, dtype, device).Samples;

    /// <summary>As <see cref="Sample"/>, also returning the component each draw came from.</summary>
    public (Tensor Samples, int[] Components) SampleWithComponents(int count, Generator generator, DType dtype = DType.Float32, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "GaussianMixture.Sample: needs at least one draw");
        int d = Dimension;
        var u = generator.UniformHost(count);
        var z = generator.NormalHost(count * d);
        var cumulative = new double[Components];
        double acc = 0;
        for (int k = 0; k < Components; k++) cumulative[k] = acc += _weights[k];
        var labels = new int[count];
        var data = new double[count * d];
        for (int n = 0; n < count; n++)
        {
            int k = 0;
            while (k < Components - 1 && u[n] >= cumulative[k]) k++;
            labels[n] = k;
            var l = _choleskyFactors[k];
            for (int i = 0; i < d; i++)
            {
                double v = _means[k][i];
                for (int j = 0; j <= i; j++) v += l[i, j] * z[n * d + j];
                data[n * d + i] = v;
            }
        }
        return (Tensor.FromSpan<double>(data, [count, d], dtype, device), labels);
    }

    /// <summary>log p(x) of the data mixture for a batch x ([B, ...] with d values per sample): a [B] tensor.</summary>
    public Tensor LogDensity(Tensor x) => LogDensity(x, new NoiseLevel(1.0, 0.0, 0.0));

    /// <summary>log p_level(x) of the noised mixture for a batch x ([B, ...] with d values per sample): a [B] tensor in x's dtype.</summary>
    public Tensor LogDensity(Tensor x, NoiseLevel level)
    {
        var factors = Factors("LogDensity", x, level);
        if (Differentiable(x))
        {
            var e = EvaluateWithOps(x, factors);
            return Ops.Cast(Ops.LogSumExp(e.Logits, [0]), x.DType);
        }
        var logDensity = new double[x.Shape[0]];
        EvaluateOnHost(x, factors, null, logDensity, null);
        return Tensor.FromSpan<double>(logDensity, [x.Shape[0]], x.DType, x.Device);
    }

    /// <summary>The posterior responsibilities r_k(x) = P(component k | x) under the noised mixture: [B, K] in x's dtype.</summary>
    public Tensor Responsibilities(Tensor x, NoiseLevel level)
    {
        var factors = Factors("Responsibilities", x, level);
        if (Differentiable(x))
        {
            var e = EvaluateWithOps(x, factors);
            return Ops.Cast(Ops.Transpose(Ops.Softmax(e.Logits, 0), 0, 1), x.DType);
        }
        var r = new double[x.Shape[0] * Components];
        EvaluateOnHost(x, factors, null, null, r);
        return Tensor.FromSpan<double>(r, [x.Shape[0], Components], x.DType, x.Device);
    }

    /// <summary>
    /// The score grad_x log p_level(x) = -sum_k r_k(x) C_k^{-1} (x - alpha mu_k) of the noised mixture, shaped
    /// and typed like x.
    /// </summary>
    public Tensor Score(Tensor x, NoiseLevel level)
    {
        var factors = Factors("Score", x, level);
        if (Differentiable(x))
        {
            var e = EvaluateWithOps(x, factors);
            var r = Ops.Unsqueeze(Ops.Softmax(e.Logits, 0), 2);
            var score = Ops.Neg(Ops.Sum(Ops.Mul(r, e.Whitened), [0]));
            return Ops.Cast(Ops.Reshape(score, x.Shape), x.DType);
        }
        var s = new double[x.Count];
        EvaluateOnHost(x, factors, s, null, null);
        return Tensor.FromSpan<double>(s, x.Shape, x.DType, x.Device);
    }

    /// <summary>The exact score as a <see cref="ScoreModel"/> (parameterisation <see cref="Parameterisation.Score"/>; labels are ignored).</summary>
    public ScoreModel ToScoreModel() => ScoreModel.FromFunction((x, level, _) => Score(x, level), Parameterisation.Score);

    // What every evaluation at one level needs, per component k: the precision P_k = C_k^{-1} of the noised
    // covariance C_k = alpha^2 Sigma_k + sigma^2 I (row-major), the centre alpha mu_k and
    // log w_k - 1/2 log det C_k - d/2 log 2 pi, all from the Cholesky factor of C_k.
    private sealed record LevelFactors(NoiseLevel Level, double[][] Precisions, double[][] Centres, double[] Constants);

    private static bool Differentiable(Tensor x) => Autograd.IsRecording && x.TracksGrad;

    private LevelFactors Factors(string op, Tensor x, NoiseLevel level)
    {
        CheckLevel(level);
        if (x.Rank < 1 || x.Shape[0] == 0 || x.Count / x.Shape[0] != Dimension)
            throw new ArgumentException($"GaussianMixture.{op}: expects a batch [B, ...] with {Dimension} values per sample, got {ShapeUtil.Format(x.Shape)}", nameof(x));
        // Samplers ask for the same level for a whole step (several calls): keep the last one.
        var cached = _lastFactors;
        if (cached is not null && cached.Level == level) return cached;
        int d = Dimension;
        var precisions = new double[Components][];
        var centres = new double[Components][];
        var constants = new double[Components];
        for (int k = 0; k < Components; k++)
        {
            var l = Cholesky(NoisedCovariance(k, level), $"the noised covariance of component {k} at alpha = {level.Alpha}, sigma = {level.Sigma}");
            var p = InverseFromCholesky(l);
            precisions[k] = new double[d * d];
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) precisions[k][i * d + j] = p[i, j];
            double logDet = 0;
            for (int i = 0; i < d; i++) logDet += 2 * Math.Log(l[i, i]);
            constants[k] = Math.Log(_weights[k]) - 0.5 * logDet - 0.5 * d * Math.Log(2 * Math.PI);
            centres[k] = _means[k].Select(v => level.Alpha * v).ToArray();
        }
        var factors = new LevelFactors(level, precisions, centres, constants);
        _lastFactors = factors;
        return factors;
    }

    // Host path, per point and component: w_k = P_k (x - alpha mu_k) with P_k = C_k^{-1} (a dense product, no
    // dependency chain, unlike triangular solves), the log joint constant_k - (x - alpha mu_k)^T w_k / 2, then the
    // log-sum-exp over k and the score -sum_k r_k w_k. Rows are split over threads; each row is written once.
    private void EvaluateOnHost(Tensor x, LevelFactors f, double[]? score, double[]? logDensity, double[]? responsibilities)
    {
        int d = Dimension, kCount = Components, b = x.Shape[0];
        var points = x.ToDoubleArray();
        // A row costs about K d (d + 2) multiply-adds; a task gets at least 65536 of them, so small batches
        // (and every 2-D one of a few thousand points) run inline rather than pay for a fork.
        long rowsPerTask = Math.Max(1, 65_536 / (kCount * d * (d + 2)));
        CpuParallel.For(b, rowsPerTask, (start, end) =>
        {
            var difference = new double[d].AsSpan();
            var whitened = new double[kCount * d];
            // On the stack only while it is small: a mixture of many components must not overflow a worker's stack.
            Span<double> logits = kCount <= 256 ? stackalloc double[kCount] : new double[kCount];
            for (long row = start; row < end; row++)
            {
                var point = points.AsSpan((int)row * d, d);
                double max = double.NegativeInfinity;
                for (int k = 0; k < kCount; k++)
                {
                    var precision = f.Precisions[k].AsSpan();
                    var centre = f.Centres[k].AsSpan();
                    for (int i = 0; i < d; i++) difference[i] = point[i] - centre[i];
                    var w = whitened.AsSpan(k * d, d);
                    for (int i = 0; i < d; i++) w[i] = Dot(precision.Slice(i * d, d), difference);
                    double quadratic = Dot(w, difference);
                    logits[k] = f.Constants[k] - 0.5 * quadratic;
                    max = Math.Max(max, logits[k]);
                }
                double sum = 0;
                for (int k = 0; k < kCount; k++) sum += Math.Exp(logits[k] - max);
                double logSum = max + Math.Log(sum);
                if (logDensity is not null) logDensity[row] = logSum;
                for (int k = 0; k < kCount; k++)
                {
                    double r = Math.Exp(logits[k] - logSum);
                    if (responsibilities is not null) responsibilities[row * kCount + k] = r;
                    if (score is null) continue;
                    var target = score.AsSpan((int)row * d, d);
                    var w = whitened.AsSpan(k * d, d);
                    for (int i = 0; i < d; i++) target[i] -= r * w[i];
                }
            }
        });
    }

    // Four independent accumulators: a single one makes the loop wait on the latency of each addition.
    private static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int j = 0;
        for (; j + 3 < a.Length; j += 4)
        {
            s0 += a[j] * b[j];
            s1 += a[j + 1] * b[j + 1];
            s2 += a[j + 2] * b[j + 2];
            s3 += a[j + 3] * b[j + 3];
        }
        for (; j < a.Length; j++) s0 += a[j] * b[j];
        return (s0 + s1) + (s2 + s3);
    }

    // Tensor path, differentiable in x: C_k^{-1} (x - alpha mu_k) as [K, B, d] and the log joints as [K, B].
    private (Tensor Whitened, Tensor Logits) EvaluateWithOps(Tensor x, LevelFactors f)
    {
        int kCount = Components, d = Dimension, b = x.Shape[0];
        var precisions = f.Precisions.SelectMany(p => p).ToArray();
        var centres = f.Centres.SelectMany(c => c).ToArray();
        var precision = Tensor.FromSpan<double>(precisions, [kCount, d, d], DType.Float64, x.Device);
        var centre = Tensor.FromSpan<double>(centres, [kCount, 1, d], DType.Float64, x.Device);
        var constant = Tensor.FromSpan<double>(f.Constants, [kCount, 1], DType.Float64, x.Device);
        var points = Ops.Reshape(Ops.Cast(x, DType.Float64), 1, b, d);
        var difference = Ops.Sub(points, centre);
        var whitened = Ops.MatMul(difference, precision);
        var quadratic = Ops.Sum(Ops.Mul(difference, whitened), [2]);
        var logits = Ops.Add(Ops.Scale(quadratic, -0.5), constant);
        return (whitened, logits);
    }

    private double[,] NoisedCovariance(int k, NoiseLevel level)
    {
        int d = Dimension;
        double a2 = level.Alpha * level.Alpha, s2 = level.Sigma * level.Sigma;
        var c = new double[d, d];
        for (int i = 0; i < d; i++)
        {
            for (int j = 0; j < d; j++) c[i, j] = a2 * _covariances[k][i, j];
            c[i, i] += s2;
        }
        return c;
    }

    private static void CheckLevel(NoiseLevel level)
    {
        if (!double.IsFinite(level.Alpha) || !(level.Sigma >= 0) || !double.IsFinite(level.Sigma))
            throw new ArgumentOutOfRangeException(nameof(level), level, "GaussianMixture: a noise level needs a finite alpha and a finite sigma >= 0");
    }

    // The lower-triangular L with L L^T = a (Cholesky-Banachiewicz).
    private static double[,] Cholesky(double[,] a, string what)
    {
        int n = a.GetLength(0);
        var l = new double[n, n];
        for (int j = 0; j < n; j++)
        {
            double diagonal = a[j, j];
            for (int k = 0; k < j; k++) diagonal -= l[j, k] * l[j, k];
            if (!(diagonal > 0) || !double.IsFinite(diagonal))
                throw new ArgumentException($"GaussianMixture: {what} is not positive definite (Cholesky pivot {j} is {diagonal})");
            l[j, j] = Math.Sqrt(diagonal);
            for (int i = j + 1; i < n; i++)
            {
                double v = a[i, j];
                for (int k = 0; k < j; k++) v -= l[i, k] * l[j, k];
                l[i, j] = v / l[j, j];
            }
        }
        return l;
    }

    // (L L^T)^{-1} column by column: forward substitution L y = e_c, then back substitution L^T x = y.
    private static double[,] InverseFromCholesky(double[,] l)
    {
        int n = l.GetLength(0);
        var inverse = new double[n, n];
        var y = new double[n];
        for (int c = 0; c < n; c++)
        {
            for (int i = 0; i < n; i++)
            {
                double v = i == c ? 1.0 : 0.0;
                for (int k = 0; k < i; k++) v -= l[i, k] * y[k];
                y[i] = v / l[i, i];
            }
            for (int i = n - 1; i >= 0; i--)
            {
                double v = y[i];
                for (int k = i + 1; k < n; k++) v -= l[k, i] * inverse[k, c];
                inverse[i, c] = v / l[i, i];
            }
        }
        return inverse;
    }
}
