using System.Diagnostics;
using System.Globalization;
using DiffusionCore.Engine;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Bench;

/// <summary>
/// The <c>flow-memory</c> mode: memory and time of one training-loss evaluation of a continuous normalizing flow,
/// <see cref="ContinuousFlow.NegativeLogLikelihood"/> plus <see cref="Tensor.Backward(Tensor?, bool)"/>, with the
/// adjoint method against backpropagation through the solver (Chen et al. 2018, section 2: the adjoint's memory
/// does not grow with the number of solver steps, backprop's grows linearly). FFJORD's 2-D toy dynamics
/// (<see cref="CnfDynamics.Toy2d"/>), a batch of 256 two-moons points, fixed-step RK4 at 10 and 100 steps, both
/// divergence estimators. Memory is the peak of the CPU backend's pooled bytes in use
/// (<see cref="CpuBackend.PeakInUseBytes"/>) above what was in use before the call: with pooled buffers the
/// managed allocation counters see only first-time allocations, not the working set.
/// </summary>
public static class FlowMemory
{
    /// <summary>The command-line word that selects this mode.</summary>
    public const string Mode = "flow-memory";

    private const int Batch = 256;
    private const int Repetitions = 3;
    private static readonly int[] StepCounts = [10, 100];
    private static readonly DivergenceMethod[] Divergences = [DivergenceMethod.Exact, DivergenceMethod.HutchinsonRademacher];

    /// <summary>Measures every configuration and prints the table.</summary>
    /// <returns>0, or 1 when the adjoint's and backprop's gradients disagree (the comparison would be meaningless).</returns>
    public static int Run()
    {
        var backend = CpuBackend.Instance;
        var dynamics = CnfDynamics.Toy2d(new Generator(0));
        var parameters = dynamics.Parameters();
        var x = TensorScope.Escape(Toy2d.Batch(Toy2dKind.TwoMoons, Batch, new Generator(1)));
        Console.WriteLine($"flow-memory: CnfDynamics.Toy2d (2-64-64-64-2, {parameters.Sum(p => p.Count)} parameters), batch {Batch}, RK4, "
                          + $"one NegativeLogLikelihood + Backward; peak = CpuBackend.PeakInUseBytes above the bytes in use before; "
                          + $"time = fastest of {Repetitions} on {Environment.ProcessorCount} cores (wall clock: noisy on a shared machine)");
        Console.WriteLine();
        Console.WriteLine("| divergence | steps | adjoint peak MB | backprop peak MB | backprop/adjoint | adjoint ms (per solver step) | backprop ms (per solver step) | grad rel. diff |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        // Untimed warm-up of both gradient paths: the first calls run tier-0 JIT code (measured here: the first row
        // took 3.5 to 4x its per-step time at 100 steps without it).
        foreach (var divergence in Divergences)
        {
            var warmUp = new ContinuousFlow(dynamics, new FlowOptions { Method = OdeMethod.Rk4, Steps = StepCounts[0], Divergence = divergence });
            Measure(warmUp, x, FlowGradient.Adjoint, backend, parameters);
            Measure(warmUp, x, FlowGradient.Backprop, backend, parameters);
        }
        bool ok = true;
        foreach (var divergence in Divergences)
        {
            foreach (int steps in StepCounts)
            {
                var flow = new ContinuousFlow(dynamics, new FlowOptions { Method = OdeMethod.Rk4, Steps = steps, Divergence = divergence });
                var adjoint = Measure(flow, x, FlowGradient.Adjoint, backend, parameters);
                var backprop = Measure(flow, x, FlowGradient.Backprop, backend, parameters);
                double diff = RelativeDifference(adjoint.Gradient, backprop.Gradient);
                // Both differentiate the same RK4 solve up to the adjoint's own RK4 truncation error (h = 1/steps,
                // local error h^5): 1e-2 is far above that and far below the order-1 error of a wrong gradient.
                ok &= diff < 1e-2;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {divergence} | {steps} | {Mb(adjoint.PeakBytes):F2} | {Mb(backprop.PeakBytes):F2} | {(double)backprop.PeakBytes / adjoint.PeakBytes:F1} | "
                    + $"{adjoint.Milliseconds:F0} ({adjoint.Milliseconds / steps:F1}) | {backprop.Milliseconds:F0} ({backprop.Milliseconds / steps:F1}) | {diff:E1} |"));
            }
        }
        if (!ok) Console.WriteLine("FAILED: the adjoint's and backprop's gradients differ by more than 1e-2 (relative)");
        return ok ? 0 : 1;
    }

    private sealed record Measurement(long PeakBytes, double Milliseconds, double[] Gradient);

    private static Measurement Measure(ContinuousFlow flow, Tensor x, FlowGradient gradient, CpuBackend backend, IReadOnlyList<Tensor> parameters)
    {
        long peak = 0;
        double best = double.PositiveInfinity;
        double[] grad = [];
        for (int r = 0; r < Repetitions; r++)
        {
            foreach (var p in parameters)
            {
                p.Grad?.Dispose();
                p.Grad = null;
            }
            long before = backend.InUseBytes;
            backend.ResetPeakInUse();
            var clock = Stopwatch.StartNew();
            using (TensorScope.Begin())
            {
                var loss = flow.NegativeLogLikelihood(x, new Generator(2), gradient);
                loss.Backward();
            }
            best = Math.Min(best, clock.Elapsed.TotalMilliseconds);
            peak = Math.Max(peak, backend.PeakInUseBytes - before);
            grad = parameters.SelectMany(p => p.Grad!.ToDoubleArray()).ToArray();
        }
        return new Measurement(peak, best, grad);
    }

    private static double Mb(long bytes) => bytes / (1024.0 * 1024.0);

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
}
