using DiffusionCore.Engine;

namespace DiffusionCore.Sampling.Ode;

/// <summary>The ODE methods <see cref="OdeSolver"/> dispatches to.</summary>
public enum OdeMethod
{
    /// <summary>Forward Euler, fixed steps (<see cref="FixedStepOde"/>).</summary>
    Euler,

    /// <summary>Heun's second-order method, fixed steps (<see cref="FixedStepOde"/>).</summary>
    Heun,

    /// <summary>Classical fourth-order Runge-Kutta, fixed steps (<see cref="FixedStepOde"/>).</summary>
    Rk4,

    /// <summary>Adaptive Dormand-Prince RK5(4) (<see cref="DormandPrince"/>).</summary>
    Rk45,
}

/// <summary>Which ODE method to use and its settings: a step count for fixed-step methods, tolerances for RK45.</summary>
public sealed record OdeSolverOptions
{
    /// <summary>The method (RK45 by default).</summary>
    public OdeMethod Method { get; init; } = OdeMethod.Rk45;

    /// <summary>Number of equal steps for Euler, Heun and RK4.</summary>
    public int Steps { get; init; } = 100;

    /// <summary>rtol of RK45 (1e-5, as in Song et al. 2021's likelihood evaluation).</summary>
    public double RelativeTolerance { get; init; } = 1e-5;

    /// <summary>atol of RK45 (1e-5, as in Song et al. 2021's likelihood evaluation).</summary>
    public double AbsoluteTolerance { get; init; } = 1e-5;

    /// <summary>First step size of RK45; null picks it automatically.</summary>
    public double? InitialStep { get; init; }

    /// <summary>Limit on RK45's accepted plus rejected steps.</summary>
    public int MaxSteps { get; init; } = 10_000;

    /// <summary>
    /// Record the solve on the autograd tape so its result can be backpropagated through the solver's
    /// operations (memory grows with the steps; the adjoint method avoids that). Off by default.
    /// </summary>
    public bool RecordGraph { get; init; }

    /// <summary>A fixed-step method with <paramref name="steps"/> steps.</summary>
    public static OdeSolverOptions Fixed(OdeMethod method, int steps)
    {
        if (method == OdeMethod.Rk45) throw new ArgumentException("OdeSolverOptions.Fixed: RK45 is adaptive; use Adaptive", nameof(method));
        return new OdeSolverOptions { Method = method, Steps = steps };
    }

    /// <summary>RK45 with the given tolerances.</summary>
    public static OdeSolverOptions Adaptive(double relativeTolerance, double absoluteTolerance) =>
        new() { Method = OdeMethod.Rk45, RelativeTolerance = relativeTolerance, AbsoluteTolerance = absoluteTolerance };
}

/// <summary>One entry point over the fixed-step solvers and adaptive RK45.</summary>
public static class OdeSolver
{
    /// <summary>Integrates dy/dt = f(t, y) from <paramref name="t0"/> to <paramref name="t1"/> (either direction) as <paramref name="options"/> say.</summary>
    /// <param name="f">The right-hand side.</param>
    /// <param name="y0">The state at t0 (not modified).</param>
    /// <param name="t0">Start time.</param>
    /// <param name="t1">End time.</param>
    /// <param name="options">Method and its settings.</param>
    /// <param name="onStep">Called after each accepted step.</param>
    /// <param name="progress">Receives the number of accepted steps.</param>
    /// <param name="cancellationToken">Checked before each step.</param>
    public static OdeResult Solve(OdeFunction f, Tensor[] y0, double t0, double t1, OdeSolverOptions options,
        OdeStepCallback? onStep = null, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Method switch
        {
            OdeMethod.Euler => FixedStepOde.Integrate(FixedStepMethod.Euler, f, y0, t0, t1, options.Steps, onStep, progress, cancellationToken, options.RecordGraph),
            OdeMethod.Heun => FixedStepOde.Integrate(FixedStepMethod.Heun, f, y0, t0, t1, options.Steps, onStep, progress, cancellationToken, options.RecordGraph),
            OdeMethod.Rk4 => FixedStepOde.Integrate(FixedStepMethod.Rk4, f, y0, t0, t1, options.Steps, onStep, progress, cancellationToken, options.RecordGraph),
            OdeMethod.Rk45 => DormandPrince.Integrate(f, y0, t0, t1, options.RelativeTolerance, options.AbsoluteTolerance,
                options.InitialStep, options.MaxSteps, onStep, progress, cancellationToken, options.RecordGraph),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Method, "unknown ODE method"),
        };
    }
}
