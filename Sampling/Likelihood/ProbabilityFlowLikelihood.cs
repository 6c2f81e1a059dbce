using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Sampling.Samplers;

namespace DiffusionCore.Sampling.Likelihood;

/// <summary>Settings of a probability-flow likelihood computation.</summary>
public sealed record LikelihoodOptions
{
    /// <summary>Start time eta of the integration (the data end); the SDE's marginals are singular at 0.</summary>
    public double StartTime { get; init; } = 1e-5;

    /// <summary>ODE solver (adaptive RK45 by default, as Song et al. 2021).</summary>
    public OdeMethod Method { get; init; } = OdeMethod.Rk45;

    /// <summary>Relative tolerance of the adaptive solver.</summary>
    public double RelativeTolerance { get; init; } = 1e-5;

    /// <summary>Absolute tolerance of the adaptive solver.</summary>
    public double AbsoluteTolerance { get; init; } = 1e-5;

    /// <summary>Steps of a fixed-step solver.</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Exact divergence (d VJPs per evaluation, small d) or Hutchinson's estimator.</summary>
    public DivergenceMethod Divergence { get; init; } = DivergenceMethod.HutchinsonRademacher;

    /// <summary>Number of Hutchinson probes K; each is one full ODE solve with its probe held fixed.</summary>
    public int Probes { get; init; } = 1;
}

/// <summary>The result of a likelihood computation for a batch.</summary>
/// <param name="LogLikelihood">log p(x) in nats per sample ([B], float64 on the host), the mean over probes.</param>
/// <param name="StandardError">Standard error over the K probes per sample (0 with one probe or the exact divergence).</param>
/// <param name="Latent">x mapped to time T by the probability-flow ODE (from the first solve).</param>
/// <param name="FunctionEvaluations">Network evaluations used by all solves (each evaluation also takes one VJP per probe or per dimension).</param>
public sealed record LikelihoodResult(double[] LogLikelihood, double[] StandardError, Tensor Latent, long FunctionEvaluations);

/// <summary>
/// Exact likelihoods through the probability-flow ODE (Song et al. 2021, section 4.3 and appendix D.2):
/// dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t) is deterministic with the same marginals as the SDE, so by the
/// instantaneous change of variables log p_eta(x(eta)) = log p_T(x(T)) + int_eta^T div f~(x(t), t) dt.
/// The divergence is exact or estimated with Hutchinson's trace estimator.
/// </summary>
public static class ProbabilityFlowLikelihood
{
    /// <summary>The probability-flow drift f~(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t) (eq. 13); see <see cref="ProbabilityFlow.Drift"/>.</summary>
    public static Tensor Drift(ScoreModel model, Sde sde, Tensor x, double t, int[]? labels = null) => ProbabilityFlow.Drift(model, sde, x, t, labels);

    /// <summary>log p(x) per sample with K probes (or the exact divergence), and its standard error over probes.</summary>
    public static LikelihoodResult LogLikelihood(ScoreModel model, Sde sde, Tensor x, Generator generator, LikelihoodOptions? options = null,
        int[]? labels = null, CancellationToken cancellationToken = default)
    {
        options ??= new LikelihoodOptions();
        if (options.Probes < 1) throw new ArgumentOutOfRangeException(nameof(options), options.Probes, "at least one probe is needed");
        if (x.Rank < 1) throw new TensorException("LogLikelihood", $"expects a batch [B, ...], got {ShapeUtil.Format(x.Shape)}");
        int batch = x.Shape[0];
        int solves = options.Divergence == DivergenceMethod.Exact ? 1 : options.Probes;
        var estimates = new double[solves][];
        Tensor? latent = null;
        long nfe = 0;
        for (int k = 0; k < solves; k++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var probe = Divergence.Probe(options.Divergence, x, generator);
            using var noGrad = Autograd.NoGrad();
            var y0 = new[] { x, Tensor.Zeros([batch], x.DType, x.Device) };
            var result = OdeSolver.Solve((t, s) => AugmentedDrift(model, sde, s[0], t, options.Divergence, probe, labels),
                y0, options.StartTime, sde.T, SolverOptions(options), cancellationToken: cancellationToken);
            nfe += result.Statistics.FunctionEvaluations;
            var logPrior = sde.PriorLogDensity(result.State[0]).ToDoubleArray();
            var integral = result.State[1].ToDoubleArray();
            estimates[k] = logPrior.Zip(integral, (a, b) => a + b).ToArray();
            if (latent is null) latent = result.State[0];
        }
        var mean = new double[batch];
        var se = new double[batch];
        for (int b = 0; b < batch; b++)
        {
            double m = 0;
            for (int k = 0; k < solves; k++) m += estimates[k][b];
            m /= solves;
            mean[b] = m;
            if (solves > 1)
            {
                double v = 0;
                for (int k = 0; k < solves; k++) v += (estimates[k][b] - m) * (estimates[k][b] - m);
                se[b] = Math.Sqrt(v / (solves - 1) / solves);
            }
        }
        return new LikelihoodResult(mean, se, latent!, nfe);
    }

    /// <summary>
    /// Negative log-likelihood in bits per dimension of 8-bit data scaled to [-1, 1] as x = 2 (k + u) / 256 - 1
    /// with uniform dequantisation noise u (Theis et al. 2016): the density of the discrete k is bounded by
    /// p_x(x) (2/256)^d, so bits/dim = -(log p_x(x) + d log(2/256)) / (d ln 2) = -log p_x(x) / (d ln 2) + 7.
    /// </summary>
    public static double BitsPerDim(double logLikelihood, long dimensions) =>
        -(logLikelihood + dimensions * Math.Log(2.0 / 256.0)) / (dimensions * Math.Log(2));

    /// <summary>
    /// Uniform dequantisation of 8-bit data stored in [-1, 1] as k / 127.5 - 1 (k = 0..255, as the MNIST loader
    /// scales it): x = 2 (k + u) / 256 - 1 with u ~ U[0, 1), so x fills [-1, 1) and the discrete bound of
    /// <see cref="BitsPerDim"/> applies.
    /// </summary>
    public static Tensor Dequantize(Tensor images, Generator generator)
    {
        using var noGrad = Autograd.NoGrad();
        var k = Ops.Affine(images, 127.5, 127.5);
        var u = generator.Uniform(images.Shape, images.DType, images.Device);
        return Ops.Affine(Ops.Add(k, u), 2.0 / 256.0, -1.0);
    }

    /// <summary>Encodes data to latents: the probability-flow ODE from <see cref="LikelihoodOptions.StartTime"/> to T.</summary>
    public static Tensor Encode(ScoreModel model, Sde sde, Tensor x, LikelihoodOptions? options = null, int[]? labels = null)
    {
        options ??= new LikelihoodOptions();
        using var noGrad = Autograd.NoGrad();
        return OdeSolver.Solve((t, s) => [Drift(model, sde, s[0], t, labels)], [x], options.StartTime, sde.T, SolverOptions(options)).State[0];
    }

    /// <summary>Decodes latents to data: the probability-flow ODE from T back to <see cref="LikelihoodOptions.StartTime"/>.</summary>
    public static Tensor Decode(ScoreModel model, Sde sde, Tensor z, LikelihoodOptions? options = null, int[]? labels = null)
    {
        options ??= new LikelihoodOptions();
        using var noGrad = Autograd.NoGrad();
        return OdeSolver.Solve((t, s) => [Drift(model, sde, s[0], t, labels)], [z], sde.T, options.StartTime, SolverOptions(options)).State[0];
    }

    /// <summary>
    /// Latent interpolation: encodes a and b (each [1, ...]), interpolates spherically in latent space
    /// (the latent is near-Gaussian, so slerp keeps the norm typical), and decodes <paramref name="count"/> points.
    /// </summary>
    public static Tensor Interpolate(ScoreModel model, Sde sde, Tensor a, Tensor b, int count, LikelihoodOptions? options = null)
    {
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "an interpolation needs at least 2 points");
        if (a.Shape[0] != 1 || !ShapeUtil.Same(a.Shape, b.Shape))
            throw new TensorException("Interpolate", $"endpoints must both be [1, ...] with equal shapes, got {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)}");
        var za = Encode(model, sde, a, options).ToDoubleArray();
        var zb = Encode(model, sde, b, options).ToDoubleArray();
        double na = Math.Sqrt(za.Sum(v => v * v)), nb = Math.Sqrt(zb.Sum(v => v * v));
        double cos = Math.Clamp(za.Zip(zb, (p, q) => p * q).Sum() / (na * nb), -1, 1);
        double omega = Math.Acos(cos);
        int d = za.Length;
        var path = new double[count * d];
        for (int i = 0; i < count; i++)
        {
            double s = (double)i / (count - 1);
            double wa = omega < 1e-6 ? 1 - s : Math.Sin((1 - s) * omega) / Math.Sin(omega);
            double wb = omega < 1e-6 ? s : Math.Sin(s * omega) / Math.Sin(omega);
            for (int j = 0; j < d; j++) path[i * d + j] = wa * za[j] + wb * zb[j];
        }
        var shape = (int[])a.Shape.Clone();
        shape[0] = count;
        return Decode(model, sde, Tensor.FromSpan<double>(path, shape, a.DType, a.Device), options);
    }

    private static Tensor[] AugmentedDrift(ScoreModel model, Sde sde, Tensor state, double t, DivergenceMethod method, Tensor? probe, int[]? labels)
    {
        using var grad = Autograd.EnableGrad();
        var x = state.Detach();
        x.RequiresGrad = true;
        var drift = Drift(model, sde, x, t, labels);
        var div = Divergence.Compute(method, drift, x, probe);
        return [drift.Detach(), div.Detach()];
    }

    private static OdeSolverOptions SolverOptions(LikelihoodOptions o) => new()
    {
        Method = o.Method,
        Steps = o.Steps,
        RelativeTolerance = o.RelativeTolerance,
        AbsoluteTolerance = o.AbsoluteTolerance,
    };
}
