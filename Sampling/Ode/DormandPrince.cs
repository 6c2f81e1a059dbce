using DiffusionCore.Engine;

namespace DiffusionCore.Sampling.Ode;

/// <summary>
/// The adaptive Dormand-Prince RK5(4) method, "DOPRI5" (Dormand and Prince 1980; Hairer, Norsett and Wanner,
/// Solving Ordinary Differential Equations I, 2nd ed., section II.5, Table 5.2), the solver behind
/// scipy's RK45 and the probability-flow likelihoods of Song et al. 2021. Seven stages per step, the last one
/// evaluated at the new solution, so it is reused as the first stage of the next step (FSAL: six new
/// evaluations per step). The local error is the difference between the embedded 5th- and 4th-order
/// solutions; steps are accepted when its scaled RMS norm (Hairer et al., eq. II.4.11) is at most 1, and the
/// next step size follows h_new = h min(facmax, max(facmin, fac err^(-1/5))) (eq. II.4.13). Only the current
/// state and first stage are held: memory is flat in the number of steps. Times may decrease (t1 &lt; t0).
/// </summary>
public static class DormandPrince
{
    // Butcher tableau (Hairer et al., Table II.5.2): nodes c_i, coefficients a_ij; the last row of a is the
    // 5th-order weights b_i, so the 7th stage point is the new solution y_{n+1}.
    private static readonly double[] C = [0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1];

    private static readonly double[][] A =
    [
        [],
        [1.0 / 5],
        [3.0 / 40, 9.0 / 40],
        [44.0 / 45, -56.0 / 15, 32.0 / 9],
        [19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729],
        [9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656],
        [35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84],
    ];

    // e_i = b_i - b*_i, with b* the embedded 4th-order weights (5179/57600, 0, 7571/16695, 393/640,
    // -92097/339200, 187/2100, 1/40); the local error estimate is h sum_i e_i k_i.
    private static readonly double[] E =
        [71.0 / 57600, 0, -71.0 / 16695, 71.0 / 1920, -17253.0 / 339200, 22.0 / 525, -1.0 / 40];

    // Step-size control (Hairer et al., section II.4): safety factor fac and the bounds facmin, facmax.
    private const double Safety = 0.9;
    private const double MinFactor = 0.2;
    private const double MaxFactor = 10.0;

    // The error estimate is O(h^5) (order q = 4 of the embedded pair, exponent 1 / (q + 1)).
    private const double ErrorExponent = -1.0 / 5;

    /// <summary>
    /// Integrates dy/dt = f(t, y) from <paramref name="t0"/> to <paramref name="t1"/> with adaptive steps,
    /// keeping each step's local error below atol + rtol max(|y_n|, |y_{n+1}|) in the scaled RMS norm.
    /// </summary>
    /// <param name="f">The right-hand side.</param>
    /// <param name="y0">The state at t0 (not modified).</param>
    /// <param name="t0">Start time.</param>
    /// <param name="t1">End time; may be below t0.</param>
    /// <param name="relativeTolerance">rtol, positive.</param>
    /// <param name="absoluteTolerance">atol, positive.</param>
    /// <param name="initialStep">First step size |h|; null picks it by Hairer et al.'s starting-step algorithm (one extra evaluation).</param>
    /// <param name="maxSteps">Limit on accepted plus rejected steps.</param>
    /// <param name="onStep">Called after each accepted step with the time reached and the state there.</param>
    /// <param name="progress">Receives the number of accepted steps after each one.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    /// <param name="recordGraph">Record the accepted steps on the autograd tape (no per-step scope, no in-place
    /// update), so the result can be backpropagated through the solver; the step-size control is not differentiated.</param>
    /// <exception cref="OdeSolverException">The step limit is reached or the step size underflows.</exception>
    public static OdeResult Integrate(OdeFunction f, Tensor[] y0, double t0, double t1,
        double relativeTolerance = 1e-5, double absoluteTolerance = 1e-5, double? initialStep = null, int maxSteps = 10_000,
        OdeStepCallback? onStep = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, bool recordGraph = false)
    {
        const string name = "DormandPrince";
        ArgumentNullException.ThrowIfNull(f);
        OdeState.CheckInitial(name, y0);
        if (!double.IsFinite(t0) || !double.IsFinite(t1)) throw new ArgumentException($"{name}: times must be finite, got t0 = {t0}, t1 = {t1}");
        if (!(relativeTolerance > 0)) throw new ArgumentOutOfRangeException(nameof(relativeTolerance), relativeTolerance, $"{name}: rtol must be positive");
        if (!(absoluteTolerance > 0)) throw new ArgumentOutOfRangeException(nameof(absoluteTolerance), absoluteTolerance, $"{name}: atol must be positive");
        if (initialStep is { } h0 && !(h0 > 0 && double.IsFinite(h0))) throw new ArgumentOutOfRangeException(nameof(initialStep), h0, $"{name}: the initial step must be positive");
        if (maxSteps < 1) throw new ArgumentOutOfRangeException(nameof(maxSteps), maxSteps, $"{name}: must be at least 1");

        using var noGrad = recordGraph ? null : Autograd.NoGrad();
        var y = recordGraph ? y0 : OdeState.Copy(y0);
        if (t1 == t0) return new OdeResult(y, new OdeStatistics(0, 0, 0));
        double direction = Math.Sign(t1 - t0);
        int nfe = 0, accepted = 0, rejected = 0;

        // k1 = f(t0, y0), then carried from step to step (FSAL).
        Tensor[] k1;
        double h;
        using (var scope = recordGraph ? null : TensorScope.Begin())
        {
            var f0 = OdeState.Evaluate(name, f, t0, y);
            nfe++;
            k1 = scope is null ? f0 : OdeState.Copy(f0).Select(scope.Keep).ToArray();
            h = initialStep ?? StartingStep(name, f, y, k1, t0, t1, relativeTolerance, absoluteTolerance, ref nfe);
        }

        double t = t0;
        bool rejectedLast = false;
        var k = new Tensor[7][];
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (accepted + rejected >= maxSteps)
                throw new OdeSolverException($"{name}: {maxSteps} steps ({accepted} accepted, {rejected} rejected) did not reach t1 = {t1} from t0 = {t0}; stopped at t = {t}");
            double remaining = Math.Abs(t1 - t);
            bool last = h >= remaining;
            if (last) h = remaining;
            if (h <= 1e-14 * Math.Max(1.0, Math.Abs(t)))
                throw new OdeSolverException($"{name}: step size underflow (|h| = {h:G3}) at t = {t} integrating from {t0} to {t1}");
            double hs = direction * h;

            using var scope = recordGraph ? null : TensorScope.Begin();
            k[0] = k1;
            Tensor[] yNew = y;
            for (int s = 1; s < 7; s++)
            {
                yNew = OdeState.Combine(y, hs, A[s], k);
                k[s] = OdeState.Evaluate(name, f, t + C[s] * hs, yNew);
                nfe++;
            }
            double err = ErrorNorm(OdeState.WeightedSum(hs, E, k), y, yNew, relativeTolerance, absoluteTolerance);

            if (err <= 1.0)
            {
                t = last ? t1 : t + hs;
                if (recordGraph)
                {
                    y = yNew;
                    k1 = k[6];
                }
                else
                {
                    OdeState.Assign(y, yNew);
                    OdeState.Assign(k1, k[6]);
                }
                accepted++;
                onStep?.Invoke(t, y);
                progress?.Report(accepted);
                if (last) break;
                // After a rejection the step may not grow at once (Hairer et al., section II.4).
                double grow = err == 0 ? MaxFactor : Math.Min(MaxFactor, Math.Max(MinFactor, Safety * Math.Pow(err, ErrorExponent)));
                h *= rejectedLast ? Math.Min(1.0, grow) : grow;
                rejectedLast = false;
            }
            else
            {
                // A NaN or infinite error (an overflowing stage) is a rejection with the largest cut.
                double shrink = double.IsFinite(err) ? Math.Max(MinFactor, Safety * Math.Pow(err, ErrorExponent)) : MinFactor;
                h *= shrink;
                rejected++;
                rejectedLast = true;
            }
        }
        foreach (var tensor in k1) tensor.Dispose();
        return new OdeResult(y, new OdeStatistics(nfe, accepted, rejected));
    }

    // Hairer et al., section II.4, "Starting step size": h0 from |y0| and |f0|, one explicit Euler step to
    // estimate the second derivative, h1 = (0.01 / max(d1, d2))^(1/5), h = min(100 h0, h1), all in the
    // scaled RMS norm with sc_i = atol + rtol |y0_i|.
    private static double StartingStep(string name, OdeFunction f, Tensor[] y0, Tensor[] f0, double t0, double t1,
        double rtol, double atol, ref int nfe)
    {
        double span = Math.Abs(t1 - t0);
        double direction = Math.Sign(t1 - t0);
        var scale = y0.Select(y => Ops.AddScalar(Ops.Scale(Ops.Abs(y), rtol), atol)).ToArray();
        double d0 = OdeState.Rms(Divide(y0, scale));
        double d1 = OdeState.Rms(Divide(f0, scale));
        double h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
        h0 = Math.Min(h0, span);
        var y1 = OdeState.Combine(y0, direction * h0, [1.0], [f0]);
        var f1 = OdeState.Evaluate(name, f, t0 + direction * h0, y1);
        nfe++;
        var difference = f1.Select((v, i) => Ops.Sub(v, f0[i])).ToArray();
        double d2 = OdeState.Rms(Divide(difference, scale)) / h0;
        double dMax = Math.Max(d1, d2);
        double h1 = dMax <= 1e-15 ? Math.Max(1e-6, h0 * 1e-3) : Math.Pow(0.01 / dMax, 1.0 / 5);
        double h = Math.Min(Math.Min(100 * h0, h1), span);
        if (!(h > 0) || !double.IsFinite(h))
            throw new OdeSolverException($"{name}: the starting-step estimate is {h} (d0 = {d0}, d1 = {d1}, d2 = {d2}); pass an initial step");
        return h;
    }

    // Hairer et al., eq. II.4.11: err = sqrt(1/n sum_i (e_i / sc_i)^2), sc_i = atol + rtol max(|y_n,i|, |y_{n+1},i|).
    private static double ErrorNorm(Tensor[] error, Tensor[] y, Tensor[] yNew, double rtol, double atol)
    {
        var scaled = new Tensor[error.Length];
        for (int c = 0; c < error.Length; c++)
        {
            var sc = Ops.AddScalar(Ops.Scale(Ops.Maximum(Ops.Abs(y[c]), Ops.Abs(yNew[c])), rtol), atol);
            scaled[c] = Ops.Div(error[c], sc);
        }
        return OdeState.Rms(scaled);
    }

    private static Tensor[] Divide(Tensor[] a, Tensor[] b) => a.Select((v, i) => Ops.Div(v, b[i])).ToArray();
}
