using DiffusionCore.Engine;

namespace DiffusionCore.Sampling.Ode;

/// <summary>
/// The right-hand side f of dy/dt = f(t, y) for a state made of several tensors (e.g. a sample and its
/// accumulated log-density change). It returns one tensor per state tensor, each shaped like it, and must
/// not modify <paramref name="y"/>. Solvers call it inside a per-step <see cref="TensorScope"/>, so what it
/// allocates is freed after the step.
/// </summary>
/// <param name="t">The time.</param>
/// <param name="y">The state at <paramref name="t"/>.</param>
public delegate Tensor[] OdeFunction(double t, Tensor[] y);

/// <summary>
/// Called after each accepted step with the time reached and the state there. The tensors are the solver's
/// own and change at the next step: read them (ToArray) or clone them inside the call, never keep them.
/// </summary>
/// <param name="t">The time reached.</param>
/// <param name="y">The state at <paramref name="t"/>.</param>
public delegate void OdeStepCallback(double t, Tensor[] y);

/// <summary>Work done by an ODE solve.</summary>
/// <param name="FunctionEvaluations">Calls of the right-hand side (NFE).</param>
/// <param name="AcceptedSteps">Steps taken.</param>
/// <param name="RejectedSteps">Steps tried and refused by the error control (0 for fixed-step methods).</param>
public readonly record struct OdeStatistics(int FunctionEvaluations, int AcceptedSteps, int RejectedSteps);

/// <summary>The state at the end time of an ODE solve, with the work it took.</summary>
/// <param name="State">The final state, one tensor per state tensor (new tensors; the caller owns them).</param>
/// <param name="Statistics">NFE and step counts.</param>
public sealed record OdeResult(Tensor[] State, OdeStatistics Statistics);

/// <summary>An ODE solve that cannot finish: the step limit was reached or the step size underflowed.</summary>
public sealed class OdeSolverException(string message) : Exception(message);
