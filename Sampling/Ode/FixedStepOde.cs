using DiffusionCore.Engine;

namespace DiffusionCore.Sampling.Ode;

/// <summary>The explicit fixed-step Runge-Kutta methods of <see cref="FixedStepOde"/>.</summary>
public enum FixedStepMethod
{
    /// <summary>Forward Euler, order 1, one evaluation per step.</summary>
    Euler,

    /// <summary>Heun's method (explicit trapezoidal rule), order 2, two evaluations per step.</summary>
    Heun,

    /// <summary>The classical Runge-Kutta method, order 4, four evaluations per step.</summary>
    Rk4,
}

/// <summary>
/// Explicit Runge-Kutta methods with fixed steps (Hairer, Norsett and Wanner, Solving Ordinary Differential
/// Equations I, 2nd ed., section II.1): Euler (order 1), Heun (order 2) and the classical RK4 (order 4).
/// The state is a list of tensors; only the current state is held (memory is flat in the number of steps),
/// each step runs in its own <see cref="TensorScope"/> and outside the autograd tape (the right-hand side
/// may open <see cref="Autograd.EnableGrad"/> itself, e.g. for a divergence estimate). Times may decrease
/// (t1 &lt; t0 integrates backwards: the step h is then negative).
/// </summary>
public static class FixedStepOde
{
    /// <summary>
    /// Integrates dy/dt = f(t, y) from <paramref name="t0"/> to <paramref name="t1"/> in <paramref name="steps"/>
    /// equal steps h = (t1 - t0) / steps.
    /// </summary>
    /// <param name="method">Euler, Heun or RK4.</param>
    /// <param name="f">The right-hand side.</param>
    /// <param name="y0">The state at t0 (not modified).</param>
    /// <param name="t0">Start time.</param>
    /// <param name="t1">End time; may be below t0.</param>
    /// <param name="steps">Number of steps, at least 1.</param>
    /// <param name="onStep">Called after each step with the time reached and the state there.</param>
    /// <param name="progress">Receives the number of steps done after each step.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    /// <param name="recordGraph">Record every step on the autograd tape (no per-step scope, no in-place update), so
    /// the result can be backpropagated through the solver; memory then grows with the number of steps.</param>
    public static OdeResult Integrate(FixedStepMethod method, OdeFunction f, Tensor[] y0, double t0, double t1, int steps,
        OdeStepCallback? onStep = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, bool recordGraph = false)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, $"FixedStepOde.{method}: needs at least one step");
        var times = new double[steps + 1];
        for (int i = 0; i < steps; i++) times[i] = t0 + (t1 - t0) * i / steps;
        times[steps] = t1;
        return Integrate(method, f, y0, times, onStep, progress, cancellationToken, recordGraph);
    }

    /// <summary>
    /// Integrates dy/dt = f(t, y) through the given strictly monotone time grid, one step per interval
    /// (from times[0] to times[^1]).
    /// </summary>
    /// <param name="method">Euler, Heun or RK4.</param>
    /// <param name="f">The right-hand side.</param>
    /// <param name="y0">The state at times[0] (not modified).</param>
    /// <param name="times">At least two times, strictly increasing or strictly decreasing.</param>
    /// <param name="onStep">Called after each step with the time reached and the state there.</param>
    /// <param name="progress">Receives the number of steps done after each step.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    /// <param name="recordGraph">Record every step on the autograd tape (see the other overload).</param>
    public static OdeResult Integrate(FixedStepMethod method, OdeFunction f, Tensor[] y0, IReadOnlyList<double> times,
        OdeStepCallback? onStep = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default, bool recordGraph = false)
    {
        string name = $"FixedStepOde.{method}";
        ArgumentNullException.ThrowIfNull(f);
        OdeState.CheckInitial(name, y0);
        CheckGrid(name, times);
        using var noGrad = recordGraph ? null : Autograd.NoGrad();
        var y = recordGraph ? y0 : OdeState.Copy(y0);
        int perStep = method switch
        {
            FixedStepMethod.Euler => 1,
            FixedStepMethod.Heun => 2,
            FixedStepMethod.Rk4 => 4,
            _ => throw new ArgumentOutOfRangeException(nameof(method), method, null),
        };
        int steps = times.Count - 1;
        for (int i = 0; i < steps; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = recordGraph ? null : TensorScope.Begin();
            double t = times[i], h = times[i + 1] - t;
            var next = method switch
            {
                FixedStepMethod.Euler => EulerStep(name, f, t, h, y),
                FixedStepMethod.Heun => HeunStep(name, f, t, h, y),
                _ => Rk4Step(name, f, t, h, y),
            };
            if (recordGraph) y = next;
            else OdeState.Assign(y, next);
            onStep?.Invoke(times[i + 1], y);
            progress?.Report(i + 1);
        }
        return new OdeResult(y, new OdeStatistics(perStep * steps, steps, 0));
    }

    // y_{n+1} = y_n + h f(t_n, y_n).
    private static Tensor[] EulerStep(string name, OdeFunction f, double t, double h, Tensor[] y)
    {
        var k1 = OdeState.Evaluate(name, f, t, y);
        return OdeState.Combine(y, h, [1.0], [k1]);
    }

    // k1 = f(t_n, y_n), k2 = f(t_n + h, y_n + h k1), y_{n+1} = y_n + h/2 (k1 + k2).
    private static Tensor[] HeunStep(string name, OdeFunction f, double t, double h, Tensor[] y)
    {
        var k1 = OdeState.Evaluate(name, f, t, y);
        var k2 = OdeState.Evaluate(name, f, t + h, OdeState.Combine(y, h, [1.0], [k1]));
        return OdeState.Combine(y, h, [0.5, 0.5], [k1, k2]);
    }

    // k1 = f(t_n, y_n), k2 = f(t_n + h/2, y_n + h/2 k1), k3 = f(t_n + h/2, y_n + h/2 k2), k4 = f(t_n + h, y_n + h k3),
    // y_{n+1} = y_n + h/6 (k1 + 2 k2 + 2 k3 + k4).
    private static Tensor[] Rk4Step(string name, OdeFunction f, double t, double h, Tensor[] y)
    {
        var k1 = OdeState.Evaluate(name, f, t, y);
        var k2 = OdeState.Evaluate(name, f, t + 0.5 * h, OdeState.Combine(y, h, [0.5], [k1]));
        var k3 = OdeState.Evaluate(name, f, t + 0.5 * h, OdeState.Combine(y, h, [0.5], [k2]));
        var k4 = OdeState.Evaluate(name, f, t + h, OdeState.Combine(y, h, [1.0], [k3]));
        return OdeState.Combine(y, h, [1.0 / 6, 1.0 / 3, 1.0 / 3, 1.0 / 6], [k1, k2, k3, k4]);
    }

    private static void CheckGrid(string name, IReadOnlyList<double> times)
    {
        ArgumentNullException.ThrowIfNull(times);
        if (times.Count < 2) throw new ArgumentException($"{name}: a time grid needs at least two times, got {times.Count}", nameof(times));
        double direction = Math.Sign(times[1] - times[0]);
        for (int i = 0; i + 1 < times.Count; i++)
        {
            double step = times[i + 1] - times[i];
            if (!double.IsFinite(times[i]) || !double.IsFinite(times[i + 1]) || direction == 0 || Math.Sign(step) != direction)
                throw new ArgumentException($"{name}: times must be finite and strictly monotone; times[{i}] = {times[i]}, times[{i + 1}] = {times[i + 1]}", nameof(times));
        }
    }
}
