using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Sampling.Ode;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

/// <summary>
/// The ODE solvers against closed-form solutions: a damped rotation y' = A y with A = a I + b J
/// (J = [[0, 1], [-1, 0]], so exp(t A) = e^{a t} (cos(b t) I + sin(b t) J)), its state split over two tensors,
/// and the nonlinear, time-dependent y' = -2 t y^2 with y(t) = 1 / (1 / y0 + t^2).
/// Everything runs in float64 so that round-off (~1e-16) stays far below the truncation errors measured.
/// </summary>
[TestFixture]
public class OdeSolverTests
{
    private const double A = -0.5, B = 2.0, T1 = 2.0;
    private static readonly double[] U0 = [1.0, -0.5, 0.25], V0 = [0.0, 1.5, -2.0];

    private static Tensor[] RotationRhs(double t, Tensor[] y) =>
        [Ops.Add(Ops.Scale(y[0], A), Ops.Scale(y[1], B)), Ops.Add(Ops.Scale(y[0], -B), Ops.Scale(y[1], A))];

    private static (double[] U, double[] V) RotationExact(double t)
    {
        double e = Math.Exp(A * t), c = Math.Cos(B * t), s = Math.Sin(B * t);
        return (U0.Select((u, i) => e * (c * u + s * V0[i])).ToArray(), U0.Select((u, i) => e * (-s * u + c * V0[i])).ToArray());
    }

    private static Tensor[] RotationStart() => [Tensor.FromArray(U0, 3), Tensor.FromArray(V0, 3)];

    private static double RotationError(Tensor[] y, double t)
    {
        var (u, v) = RotationExact(t);
        var gu = y[0].ToDoubleArray();
        var gv = y[1].ToDoubleArray();
        return Enumerable.Range(0, 3).Max(i => Math.Max(Math.Abs(gu[i] - u[i]), Math.Abs(gv[i] - v[i])));
    }

    private static Tensor[] NonlinearRhs(double t, Tensor[] y) => [Ops.Scale(Ops.Square(y[0]), -2 * t)];

    private static double NonlinearExact(double y0, double t) => 1.0 / (1.0 / y0 + t * t);

    private static double NonlinearError(Tensor[] y, double t) => Math.Abs(y[0].ToDoubleArray()[0] - NonlinearExact(1.0, t));

    private static Tensor[] NonlinearStart(double value = 1.0) => [Tensor.FromArray(new[] { value }, 1)];

    // Step counts per method: small enough for the error to stay well above float64 round-off, large enough
    // to be in the asymptotic regime where error ~ C h^p (checked: the measured orders are within 0.1 of p).
    private static int BaseSteps(FixedStepMethod m) => m switch
    {
        FixedStepMethod.Euler => 200,
        FixedStepMethod.Heun => 100,
        _ => 40,
    };

    private static int Order(FixedStepMethod m) => m switch
    {
        FixedStepMethod.Euler => 1,
        FixedStepMethod.Heun => 2,
        _ => 4,
    };

    [TestCase(FixedStepMethod.Euler)]
    [TestCase(FixedStepMethod.Heun)]
    [TestCase(FixedStepMethod.Rk4)]
    public void LinearSystemConvergesAtTheMethodsOrder(FixedStepMethod method)
    {
        int n = BaseSteps(method);
        var coarse = FixedStepOde.Integrate(method, RotationRhs, RotationStart(), 0, T1, n);
        var fine = FixedStepOde.Integrate(method, RotationRhs, RotationStart(), 0, T1, 2 * n);
        double e1 = RotationError(coarse.State, T1), e2 = RotationError(fine.State, T1);
        double order = Math.Log2(e1 / e2);
        TestContext.Out.WriteLine($"{method}: error {e1:E3} ({n} steps), {e2:E3} ({2 * n} steps), order {order:F3}");
        // Halving h divides an O(h^p) global error by 2^p up to O(h^(p+1)) terms; at these step counts the
        // next-order term moves the measured order by well under 0.15 (an order p +- 1 method is far outside).
        Assert.That(order, Is.EqualTo(Order(method)).Within(0.15));
        Assert.That(coarse.Statistics.FunctionEvaluations, Is.EqualTo(n * Order(method)), "Euler, Heun and RK4 evaluate f 1, 2 and 4 times per step, as their orders");
        Assert.That(coarse.Statistics.AcceptedSteps, Is.EqualTo(n));
    }

    [TestCase(FixedStepMethod.Euler)]
    [TestCase(FixedStepMethod.Heun)]
    [TestCase(FixedStepMethod.Rk4)]
    public void NonlinearTimeDependentOdeConvergesAtTheMethodsOrder(FixedStepMethod method)
    {
        int n = BaseSteps(method);
        double e1 = NonlinearError(FixedStepOde.Integrate(method, NonlinearRhs, NonlinearStart(), 0, T1, n).State, T1);
        double e2 = NonlinearError(FixedStepOde.Integrate(method, NonlinearRhs, NonlinearStart(), 0, T1, 2 * n).State, T1);
        double order = Math.Log2(e1 / e2);
        TestContext.Out.WriteLine($"{method}: error {e1:E3}, {e2:E3}, order {order:F3}");
        // As above: the O(h^(p+1)) remainder shifts the measured order by well under 0.15.
        Assert.That(order, Is.EqualTo(Order(method)).Within(0.15));
    }

    [TestCase(FixedStepMethod.Euler)]
    [TestCase(FixedStepMethod.Heun)]
    [TestCase(FixedStepMethod.Rk4)]
    public void IntegratingBackwardsConvergesAtTheMethodsOrder(FixedStepMethod method)
    {
        // From the exact y(2) back to t = 0, where y(0) = 1: the step h is negative.
        int n = BaseSteps(method);
        double y2 = NonlinearExact(1.0, T1);
        double e1 = Math.Abs(FixedStepOde.Integrate(method, NonlinearRhs, NonlinearStart(y2), T1, 0, n).State[0].ToDoubleArray()[0] - 1.0);
        double e2 = Math.Abs(FixedStepOde.Integrate(method, NonlinearRhs, NonlinearStart(y2), T1, 0, 2 * n).State[0].ToDoubleArray()[0] - 1.0);
        double order = Math.Log2(e1 / e2);
        TestContext.Out.WriteLine($"{method} backwards: error {e1:E3}, {e2:E3}, order {order:F3}");
        // As above.
        Assert.That(order, Is.EqualTo(Order(method)).Within(0.15));
    }

    [Test]
    public void NonUniformGridIsFollowedStepByStep()
    {
        // With w = u + i v the rotation is w' = lambda w, lambda = a - i b, and one RK4 step of size h is exactly
        // w <- P(h lambda) w with P(z) = 1 + z + z^2/2 + z^3/6 + z^4/24: the discrete solution on any grid is
        // known in closed form, so the solver must reproduce it to round-off.
        var times = new[] { 0.0, 0.1, 0.3, 0.7, 1.2, 2.0 };
        var seen = new List<double>();
        var r = FixedStepOde.Integrate(FixedStepMethod.Rk4, RotationRhs, RotationStart(), times, onStep: (t, _) => seen.Add(t));
        Assert.That(seen, Is.EqualTo(times.Skip(1)));
        Assert.That(r.Statistics.FunctionEvaluations, Is.EqualTo(4 * 5));
        var lambda = new System.Numerics.Complex(A, -B);
        var gu = r.State[0].ToDoubleArray();
        var gv = r.State[1].ToDoubleArray();
        for (int i = 0; i < U0.Length; i++)
        {
            var w = new System.Numerics.Complex(U0[i], V0[i]);
            for (int s = 0; s + 1 < times.Length; s++)
            {
                var z = (times[s + 1] - times[s]) * lambda;
                w *= 1 + z + z * z / 2 + z * z * z / 6 + z * z * z * z / 24;
            }
            // Five steps of a few float64 operations on O(1) values: round-off is ~1e-15.
            Assert.That(gu[i], Is.EqualTo(w.Real).Within(1e-12));
            Assert.That(gv[i], Is.EqualTo(w.Imaginary).Within(1e-12));
        }
    }

    [TestCase(1e-3)]
    [TestCase(1e-5)]
    [TestCase(1e-7)]
    [TestCase(1e-9)]
    public void DormandPrinceMeetsTheTolerance(double tolerance)
    {
        var lin = DormandPrince.Integrate(RotationRhs, RotationStart(), 0, T1, tolerance, tolerance);
        var non = DormandPrince.Integrate(NonlinearRhs, NonlinearStart(), 0, T1, tolerance, tolerance);
        double eLin = RotationError(lin.State, T1), eNon = NonlinearError(non.State, T1);
        TestContext.Out.WriteLine($"tol {tolerance:E0}: rotation error {eLin:E2} ({lin.Statistics}), nonlinear error {eNon:E2} ({non.Statistics})");
        // The controller bounds each step's local error by tol (scaled by atol + rtol |y| <= 2 tol here, as
        // |y| <= 1.1); over a contracting (a < 0) or damped problem the global error stays within a small
        // multiple of that. 10 tol leaves room for the accumulation over ~10-100 steps, while a solver
        // ignoring its tolerance (or a wrong tableau, error O(h^2..h^4) at these step sizes) misses it.
        Assert.That(eLin, Is.LessThan(10 * tolerance));
        Assert.That(eNon, Is.LessThan(10 * tolerance));
        foreach (var s in new[] { lin.Statistics, non.Statistics })
        {
            // FSAL: one evaluation for k1 at t0, one for the starting-step estimate, then six per tried step.
            Assert.That(s.FunctionEvaluations, Is.EqualTo(2 + 6 * (s.AcceptedSteps + s.RejectedSteps)));
        }
    }

    [Test]
    public void DormandPrinceWorkGrowsAsTheToleranceTightens()
    {
        var nfe = new[] { 1e-3, 1e-5, 1e-7, 1e-9 }
            .Select(tol => DormandPrince.Integrate(RotationRhs, RotationStart(), 0, T1, tol, tol).Statistics.FunctionEvaluations)
            .ToArray();
        TestContext.Out.WriteLine($"NFE at tol 1e-3, 1e-5, 1e-7, 1e-9: {string.Join(", ", nfe)}");
        // A 5th-order method needs about 100^(1/5) = 2.5 times as many steps per factor 100 in tolerance.
        for (int i = 1; i < nfe.Length; i++) Assert.That(nfe[i], Is.GreaterThan(nfe[i - 1]));
        Assert.That(nfe[^1], Is.GreaterThan(4 * nfe[0]));
    }

    [Test]
    public void DormandPrinceIntegratesBackwards()
    {
        double tol = 1e-8;
        var (u, v) = RotationExact(T1);
        var r = DormandPrince.Integrate(RotationRhs, [Tensor.FromArray(u, 3), Tensor.FromArray(v, 3)], T1, 0, tol, tol);
        double err = Math.Max(r.State[0].ToDoubleArray().Select((x, i) => Math.Abs(x - U0[i])).Max(),
            r.State[1].ToDoubleArray().Select((x, i) => Math.Abs(x - V0[i])).Max());
        TestContext.Out.WriteLine($"backwards rotation error {err:E2} ({r.Statistics})");
        // Backwards the rotation grows as e^{0.5 (2 - t)} (up to e = 2.7 times), so local errors are amplified
        // by at most that factor on top of the 10 tol allowance of the forward test.
        Assert.That(err, Is.LessThan(30 * tol));
        var times = new List<double>();
        DormandPrince.Integrate(NonlinearRhs, NonlinearStart(0.2), T1, 0, tol, tol, onStep: (t, _) => times.Add(t));
        Assert.That(times, Is.Ordered.Descending);
        Assert.That(times[^1], Is.EqualTo(0.0), "the last accepted step lands exactly on t1");
    }

    [Test]
    public void CallbackSeesEveryAcceptedStepAndTheSolverReportsProgress()
    {
        var times = new List<double>();
        var reported = new List<int>();
        var r = DormandPrince.Integrate(RotationRhs, RotationStart(), 0, T1, 1e-6, 1e-6,
            onStep: (t, y) => times.Add(t), progress: new InlineProgress(reported.Add));
        Assert.That(times, Has.Count.EqualTo(r.Statistics.AcceptedSteps));
        Assert.That(times, Is.Ordered.Ascending);
        Assert.That(times[^1], Is.EqualTo(T1));
        Assert.That(reported, Is.EqualTo(Enumerable.Range(1, r.Statistics.AcceptedSteps)));
    }

    [Test]
    public void MemoryIsFlatInTheNumberOfSteps()
    {
        // A solver holding the trajectory (or leaking temporaries) would allocate fresh buffers every step;
        // after one warm-up solve, a ten times longer solve must be served entirely from the pool.
        var y0 = new[] { Tensor.Zeros([64, 16]), Tensor.Ones([64, 16]) };
        OdeFunction f = (t, y) => [Ops.Scale(y[1], 0.5), Ops.Scale(y[0], -0.5)];
        FixedStepOde.Integrate(FixedStepMethod.Rk4, f, y0, 0, 1, 5).State.ToList().ForEach(t => t.Dispose());
        var warmUp = DormandPrince.Integrate(f, y0, 0, 1, 1e-3, 1e-3);
        warmUp.State.ToList().ForEach(t => t.Dispose());
        long before = CpuBackend.Instance.AllocatedElements;
        FixedStepOde.Integrate(FixedStepMethod.Rk4, f, y0, 0, 1, 50).State.ToList().ForEach(t => t.Dispose());
        var adaptive = DormandPrince.Integrate(f, y0, 0, 10, 1e-6, 1e-6, onStep: (_, y) => Ops.Sum(y[0]));
        adaptive.State.ToList().ForEach(t => t.Dispose());
        Assert.That(adaptive.Statistics.AcceptedSteps, Is.GreaterThan(4 * warmUp.Statistics.AcceptedSteps));
        Assert.That(CpuBackend.Instance.AllocatedElements, Is.EqualTo(before));
    }

    [Test]
    public void Float32StatesWork()
    {
        var r = DormandPrince.Integrate(RotationRhs, [Tensor.FromArray(U0.Select(x => (float)x).ToArray(), 3), Tensor.FromArray(V0.Select(x => (float)x).ToArray(), 3)], 0, T1, 1e-5, 1e-5);
        Assert.That(r.State[0].DType, Is.EqualTo(DType.Float32));
        // 10 tol as in the float64 test, float32 round-off (~1e-7 per step) adds far less.
        Assert.That(RotationError(r.State, T1), Is.LessThan(1e-4));
    }

    [Test]
    public void SolverDispatchesOnItsOptions()
    {
        var fixedRun = OdeSolver.Solve(RotationRhs, RotationStart(), 0, T1, OdeSolverOptions.Fixed(OdeMethod.Heun, 10));
        Assert.That(fixedRun.Statistics, Is.EqualTo(new OdeStatistics(20, 10, 0)));
        var adaptive = OdeSolver.Solve(RotationRhs, RotationStart(), 0, T1, OdeSolverOptions.Adaptive(1e-6, 1e-6));
        Assert.That(RotationError(adaptive.State, T1), Is.LessThan(1e-5));
    }

    [Test]
    public void BadInputsThrowDescriptiveErrors()
    {
        OdeFunction wrongShape = (t, y) => [Tensor.Zeros([2])];
        var ex = Assert.Throws<ArgumentException>(() => FixedStepOde.Integrate(FixedStepMethod.Euler, wrongShape, NonlinearStart(), 0, 1, 3));
        Assert.That(ex!.Message, Does.Contain("[2]").And.Contain("[1]"));
        Assert.Throws<ArgumentException>(() => FixedStepOde.Integrate(FixedStepMethod.Euler, NonlinearRhs, NonlinearStart(), [0.0, 0.5, 0.4]));
        Assert.Throws<OdeSolverException>(() => DormandPrince.Integrate(RotationRhs, RotationStart(), 0, 100, 1e-10, 1e-10, maxSteps: 20));
        Assert.Throws<OperationCanceledException>(() => DormandPrince.Integrate(RotationRhs, RotationStart(), 0, 1, cancellationToken: new CancellationToken(true)));
    }

    private sealed class InlineProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}
