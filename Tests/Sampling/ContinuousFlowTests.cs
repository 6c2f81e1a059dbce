using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Training.Data;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

public sealed class ContinuousFlowTests
{
    /// <summary>f(z, t) = z A^T with a trainable A: a field whose flow and log-density change are closed-form.</summary>
    private sealed class LinearField(double[,] a, DType dtype) : IFlowDynamics
    {
        public Tensor A { get; } = MakeParameter(a, dtype);

        public int Dim => A.Shape[0];

        public Tensor Forward(Tensor z, double t) => Ops.MatMul(z, A, transposeB: true);

        public IReadOnlyList<Tensor> Parameters() => [A];

        private static Tensor MakeParameter(double[,] a, DType dtype)
        {
            int n = a.GetLength(0);
            var flat = new double[n * n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) flat[i * n + j] = a[i, j];
            var p = TensorScope.Escape(Tensor.FromSpan<double>(flat, [n, n], dtype, null));
            p.RequiresGrad = true;
            return p;
        }
    }

    private static double[,] MatrixExponential(double[,] a, double t)
    {
        int n = a.GetLength(0);
        var result = new double[n, n];
        var term = new double[n, n];
        for (int i = 0; i < n; i++) result[i, i] = term[i, i] = 1;
        for (int k = 1; k < 40; k++)
        {
            var next = new double[n, n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int m = 0; m < n; m++) s += term[i, m] * a[m, j];
                    next[i, j] = s * t / k;
                }
            term = next;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) result[i, j] += term[i, j];
        }
        return result;
    }

    [Test]
    public void LinearField_LogLikelihood_MatchesClosedForm()
    {
        // z(T) = x exp(A T)^T and log p(x) = log N(z(T); 0, I) + T tr(A): the instantaneous change of
        // variables for a constant linear field. float64 and RK45 at 1e-9: agreement to 1e-6 nats is far
        // above the solver's error and far below any modelling mistake (a missing T tr(A) is 0.3 nats here).
        double[,] a = { { -0.4, 0.3 }, { -0.2, 0.1 } };
        var field = new LinearField(a, DType.Float64);
        var flow = new ContinuousFlow(field, new FlowOptions { EndTime = 1.5, Divergence = DivergenceMethod.Exact, RelativeTolerance = 1e-9, AbsoluteTolerance = 1e-9 });
        double[] xs = [0.5, -1.0, 2.0, 0.25, -0.7, 0.0];
        var x = Tensor.FromArray(xs, 3, 2);
        var logp = flow.LogLikelihood(x, new Generator(1)).ToDoubleArray();
        var e = MatrixExponential(a, 1.5);
        double trace = a[0, 0] + a[1, 1];
        for (int b = 0; b < 3; b++)
        {
            double z0 = e[0, 0] * xs[2 * b] + e[0, 1] * xs[2 * b + 1];
            double z1 = e[1, 0] * xs[2 * b] + e[1, 1] * xs[2 * b + 1];
            double expected = -0.5 * (z0 * z0 + z1 * z1) - Math.Log(2 * Math.PI) + 1.5 * trace;
            Assert.That(logp[b], Is.EqualTo(expected).Within(1e-6), $"sample {b}");
        }
    }

    [Test]
    public void LinearField_DecodeInvertsEncode()
    {
        // The flow is a bijection: decoding the encoded latent returns x to the solver's tolerance (1e-9 here).
        var field = new LinearField(new double[,] { { -0.4, 0.3 }, { -0.2, 0.1 } }, DType.Float64);
        var flow = new ContinuousFlow(field, new FlowOptions { Divergence = DivergenceMethod.Exact, RelativeTolerance = 1e-9, AbsoluteTolerance = 1e-9 });
        var x = Tensor.FromArray(new double[] { 0.5, -1.0, 2.0, 0.25 }, 2, 2);
        var (z, _) = flow.Encode(x, new Generator(2));
        var back = flow.Decode(z).ToDoubleArray();
        Assert.That(back, Is.EqualTo(x.ToDoubleArray()).Within(1e-7));
    }

    private static double[] GradientOf(ContinuousFlow flow, Tensor x, ulong probeSeed, FlowGradient mode)
    {
        var parameters = flow.Dynamics.Parameters();
        foreach (var p in parameters) p.Grad = null;
        using (TensorScope.Begin())
        {
            var loss = flow.NegativeLogLikelihood(x, new Generator(probeSeed), mode);
            loss.Backward();
        }
        return parameters.SelectMany(p => p.Grad!.ToDoubleArray()).ToArray();
    }

    private static double RelativeDifference(double[] a, double[] b)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            diff += (a[i] - b[i]) * (a[i] - b[i]);
            norm += b[i] * b[i];
        }
        return Math.Sqrt(diff / norm);
    }

    [TestCase(OdeMethod.Rk4, DivergenceMethod.Exact)]
    [TestCase(OdeMethod.Rk45, DivergenceMethod.Exact)]
    [TestCase(OdeMethod.Rk45, DivergenceMethod.HutchinsonRademacher)]
    public void AdjointGradients_EqualBackpropThroughTheSolver(OdeMethod method, DivergenceMethod divergence)
    {
        // Backprop differentiates the discrete forward solve; the adjoint solves the continuous adjoint ODE
        // backwards. They agree up to the solvers' truncation error: RK4 with 40 steps (h = 1/40, local error
        // ~h^5) and RK45 at 1e-7 both leave differences far below 1e-3 of the gradient's norm, while float32
        // rounding is ~1e-6. A wrong sign or a missing divergence term gives differences of order 1.
        var dynamics = new CnfDynamics(2, [16, 16], new Generator(7));
        var flow = new ContinuousFlow(dynamics, new FlowOptions { Method = method, Steps = 40, Divergence = divergence, RelativeTolerance = 1e-7, AbsoluteTolerance = 1e-7 });
        var x = Tensor.FromArray(Toy2d.Sample(Toy2dKind.TwoMoons, 16, 3), 16, 2);
        var adjoint = GradientOf(flow, x, 11, FlowGradient.Adjoint);
        var backprop = GradientOf(flow, x, 11, FlowGradient.Backprop);
        Assert.That(backprop.Select(Math.Abs).Max(), Is.GreaterThan(1e-4), "the gradient must not vanish for the comparison to mean anything");
        Assert.That(RelativeDifference(adjoint, backprop), Is.LessThan(1e-3));
    }

    [Test]
    public void LinearField_AdjointGradient_MatchesClosedForm()
    {
        // For f = z A^T with x fixed: loss(A) = -mean_b log N(x_b exp(A T)^T) - T tr(A). Its gradient in A is
        // checked by central differences of the closed form (float64, step 1e-5: error ~1e-10), against the
        // adjoint's float64 gradient at tolerance 1e-9 of the solver: agreement to 1e-6.
        double[,] a = { { -0.4, 0.3 }, { -0.2, 0.1 } };
        double[] xs = [0.5, -1.0, 2.0, 0.25, -0.7, 0.3];
        double Loss(double[,] m)
        {
            var e = MatrixExponential(m, 1.0);
            double total = 0;
            for (int b = 0; b < 3; b++)
            {
                double z0 = e[0, 0] * xs[2 * b] + e[0, 1] * xs[2 * b + 1];
                double z1 = e[1, 0] * xs[2 * b] + e[1, 1] * xs[2 * b + 1];
                total += -0.5 * (z0 * z0 + z1 * z1) - Math.Log(2 * Math.PI) + (m[0, 0] + m[1, 1]);
            }
            return -total / 3;
        }
        var field = new LinearField(a, DType.Float64);
        var flow = new ContinuousFlow(field, new FlowOptions { Divergence = DivergenceMethod.Exact, RelativeTolerance = 1e-10, AbsoluteTolerance = 1e-10 });
        var grad = GradientOf(flow, Tensor.FromArray(xs, 3, 2), 1, FlowGradient.Adjoint);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
            {
                var plus = (double[,])a.Clone();
                var minus = (double[,])a.Clone();
                plus[i, j] += 1e-5;
                minus[i, j] -= 1e-5;
                double expected = (Loss(plus) - Loss(minus)) / 2e-5;
                Assert.That(grad[i * 2 + j], Is.EqualTo(expected).Within(1e-6), $"dL/dA[{i},{j}]");
            }
    }
}
