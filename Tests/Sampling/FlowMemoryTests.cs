using DiffusionCore.Engine;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Training.Data;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

/// <summary>
/// The reason the adjoint method exists (Chen et al. 2018, section 2): its memory does not grow with the number of
/// solver steps, while backpropagation through the solver keeps every step's activations. Measured as the CPU
/// backend's peak pooled bytes in use during one NegativeLogLikelihood + Backward (Bench's flow-memory mode prints
/// the same at FFJORD's toy size).
/// </summary>
public sealed class FlowMemoryTests
{
    private static long PeakBytes(ContinuousFlow flow, Tensor x, FlowGradient gradient)
    {
        foreach (var p in flow.Dynamics.Parameters())
        {
            p.Grad?.Dispose();
            p.Grad = null;
        }
        var backend = CpuBackend.Instance;
        long before = backend.InUseBytes;
        backend.ResetPeakInUse();
        using (TensorScope.Begin())
        {
            var loss = flow.NegativeLogLikelihood(x, new Generator(3), gradient);
            loss.Backward();
        }
        return backend.PeakInUseBytes - before;
    }

    [Test]
    public void AdjointPeakMemoryIsFlatInTheStepsWhileBackpropGrows()
    {
        // RK4 at 4 and 16 steps. The adjoint holds one step's temporaries at a time, so its peak is the same at
        // both (10% slack for the few step-independent buffers of the state and the parameters' adjoints); backprop
        // holds 4x the step activations at 16 steps, and anything below 2.5x would mean the graph is not kept.
        // Measured: adjoint 537,408 bytes at both step counts; backprop 1,957,936 and 7,811,824 (3.99x).
        var dynamics = new CnfDynamics(2, [16, 16], new Generator(1));
        var x = Tensor.FromArray(Toy2d.Sample(Toy2dKind.TwoMoons, 32, 2), 32, 2);
        long Peak(int steps, FlowGradient gradient) =>
            PeakBytes(new ContinuousFlow(dynamics, new FlowOptions { Method = OdeMethod.Rk4, Steps = steps, Divergence = DivergenceMethod.Exact }), x, gradient);
        long adjoint4 = Peak(4, FlowGradient.Adjoint), adjoint16 = Peak(16, FlowGradient.Adjoint);
        long backprop4 = Peak(4, FlowGradient.Backprop), backprop16 = Peak(16, FlowGradient.Backprop);
        TestContext.Out.WriteLine($"peak bytes: adjoint {adjoint4} (4 steps), {adjoint16} (16 steps); backprop {backprop4}, {backprop16}");
        Assert.That(adjoint16, Is.LessThanOrEqualTo(1.1 * adjoint4));
        Assert.That(backprop16, Is.GreaterThan(2.5 * backprop4));
        Assert.That(backprop16, Is.GreaterThan(adjoint16));
    }
}
