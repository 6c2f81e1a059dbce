using System.Diagnostics;
using System.Runtime.CompilerServices;
using DiffusionCore.Bench.Workloads;
using DiffusionCore.Models.Processes;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// The libtorch (TorchSharp-cpu) peer of BENCHMARKS.md's end-to-end workloads on <see cref="TorchUNet"/>,
/// with <see cref="LibTorchPeer"/>'s conventions: call <see cref="LibTorchPeer.Initialise"/> first; each
/// factory builds its model and inputs once (float32), runs one repetition and throws if any output (and,
/// for a training step, any gradient or updated parameter) is not finite, then returns a
/// <see cref="WorkloadSide"/> whose <see cref="WorkloadSide.Run"/> performs one repetition inside a dispose
/// scope, whose <see cref="WorkloadSide.Results"/> returns one repetition's outputs (checked finite), whose
/// <see cref="WorkloadSide.ParameterCount"/> is the model's and whose <see cref="WorkloadSide.Release"/> frees
/// the model and inputs. Model weights keep PyTorch's default
/// initialisation (GroupNorm's set to 1 and 0): the cost of a step does not depend on the weights' values.
/// </summary>
public static class PeerEndToEnd
{
    /// <summary>E1's batch (unet-b training step).</summary>
    public const int E1Batch = 32;

    /// <summary>E2's batch (unet-s training step).</summary>
    public const int E2Batch = 64;

    /// <summary>E3's batch (unet-b sampling): images/s = E3Batch * NFE/s.</summary>
    public const int E3Batch = 64;

    /// <summary>K7's batch (Hutchinson divergence of unet-b).</summary>
    public const int K7Batch = 16;

    /// <summary>E5's batch (64 unet-s test images in the probability-flow ODE).</summary>
    public const int E5Batch = 64;

    /// <summary>Steps of the DDPM linear beta schedule (Ho et al. 2020: T = 1000, beta 1e-4 to 0.02).</summary>
    private const int DdpmSteps = 1000;

    /// <summary>Adam's learning rate in the DDPM CIFAR-10 run (Ho et al. 2020, Appendix B).</summary>
    private const double LearningRate = 2e-4;

    /// <summary>
    /// The time at which E5's proxy evaluates the ODE function; the cost of an evaluation does not depend on it
    /// (0.5 keeps sigma(t) well away from 0).
    /// </summary>
    private const double OdeTime = 0.5;

    /// <summary>E1: one DSM training step of unet-b at batch <see cref="E1Batch"/>; see <see cref="TrainingStep"/>.</summary>
    public static WorkloadSide E1TrainingStepUnetB() => TrainingStep("E1", TorchUNetConfig.UnetB, E1Batch);

    /// <summary>E2: one DSM training step of unet-s at batch <see cref="E2Batch"/>; see <see cref="TrainingStep"/>.</summary>
    public static WorkloadSide E2TrainingStepUnetS() => TrainingStep("E2", TorchUNetConfig.UnetS, E2Batch);

    /// <summary>
    /// E3: one network evaluation (one NFE of a DDIM or probability-flow Euler loop) of unet-b on
    /// x[<see cref="E3Batch"/>, 3, 32, 32] at timestep 500, in eval mode under <c>no_grad</c>. A repetition
    /// of s seconds gives 1/s NFE/s and <see cref="E3Batch"/>/s images/s per network evaluation.
    /// </summary>
    public static WorkloadSide E3NetworkEvaluationUnetB()
    {
        var model = Eval(TorchUNetConfig.UnetB);
        Tensor x = torch.randn(E3Batch, 3, 32, 32);
        Tensor t = torch.full(E3Batch, DdpmSteps / 2, ScalarType.Float32);
        return Prepare("E3 unet-b evaluation", model, forwardOnly: true, () => [model.call(x, t)], x, t);
    }

    /// <summary>
    /// K7: one Hutchinson estimate of div_x model(x, t) = E[v^T (d model / d x) v] (Hutchinson 1989) for
    /// unet-b on x[<see cref="K7Batch"/>, 3, 32, 32] with one Rademacher probe v drawn per estimate:
    /// one forward and one vector-Jacobian product <c>torch.autograd.grad(y, x, v)</c>. The parameters
    /// do not require gradients: only the input's is wanted.
    /// </summary>
    public static WorkloadSide K7HutchinsonDivergenceUnetB()
    {
        var model = Eval(TorchUNetConfig.UnetB);
        Tensor x = torch.randn(new long[] { K7Batch, 3, 32, 32 }, requires_grad: true);
        Tensor t = torch.full(K7Batch, DdpmSteps / 2, ScalarType.Float32);
        return Prepare("K7 unet-b Hutchinson divergence", model, forwardOnly: false, () =>
        {
            Tensor v = Rademacher(x.shape);
            Tensor y = model.call(x, t);
            Tensor vjp = torch.autograd.grad([y], [x], [v])[0];
            return [y, (vjp * v).sum([1, 2, 3])];
        }, x, t);
    }

    /// <summary>
    /// E5's unit of work (one RK45-free proxy of the likelihood computation): one evaluation of the
    /// probability-flow ODE function with its Hutchinson divergence for unet-s on x[<see cref="E5Batch"/>,
    /// 1, 32, 32] under the VP SDE (beta 0.1 to 20; Song et al. 2021, eq. 13 and Appendix D.2):
    /// dx/dt = f(t) x - g(t)^2/2 * score, score = -eps(x, 999 t) / sigma(t), at t = 0.5, and
    /// div = v^T (d drift / d x) v by one VJP. The Rademacher probe v is fixed, as in a likelihood solve
    /// (score_sde draws it once per solve). One forward + one VJP; the parameters do not require gradients.
    /// </summary>
    public static WorkloadSide E5ProbabilityFlowEvaluationUnetS()
    {
        var model = Eval(TorchUNetConfig.UnetS);
        var sde = new VpSde();
        double sigma = sde.MarginalStd(OdeTime), g = sde.Diffusion(OdeTime);
        Tensor x = torch.randn(new long[] { E5Batch, 1, 32, 32 }, requires_grad: true);
        Tensor t = torch.full(E5Batch, sde.NetworkCondition(OdeTime), ScalarType.Float32);
        Tensor v = Rademacher(x.shape);
        return Prepare("E5 unet-s probability-flow evaluation", model, forwardOnly: false, () =>
        {
            Tensor eps = model.call(x, t);
            Tensor drift = x * sde.DriftScale(OdeTime) + eps * (0.5 * g * g / sigma);
            Tensor vjp = torch.autograd.grad([drift], [x], [v])[0];
            return [drift, (vjp * v).sum([1, 2, 3])];
        }, x, t, v);
    }

    /// <summary>
    /// One DSM training step (Ho et al. 2020, Algorithm 1; the simple epsilon loss of eq. 14) of
    /// <paramref name="config"/>'s network at <paramref name="batch"/> in train mode: draw t uniformly from
    /// 0..999 and the noise, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise with the linear betas,
    /// loss = MSE(model(x_t, t), noise), zero_grad, backward, Adam step (lr 2e-4, betas 0.9 and 0.999).
    /// x0 is one fixed standard-normal batch standing in for the data, since loading data is not timed.
    /// The side's results are the loss, then every parameter's gradient, then every parameter after the step
    /// (each concatenated in <c>parameters()</c> order).
    /// </summary>
    private static WorkloadSide TrainingStep(string id, TorchUNetConfig config, int batch)
    {
        var model = new TorchUNet(config);
        model.train();
        var parameters = model.parameters().ToArray();
        var optimizer = torch.optim.Adam(parameters, lr: LearningRate, beta1: 0.9, beta2: 0.999);
        var schedule = DdpmSchedule.Linear(DdpmSteps);
        Tensor signal = torch.tensor(schedule.AlphaBars.Select(a => (float)Math.Sqrt(a)).ToArray());
        Tensor noiseScale = torch.tensor(schedule.AlphaBars.Select(a => (float)Math.Sqrt(1 - a)).ToArray());
        Tensor x0 = torch.randn(batch, config.InChannels, config.Resolution, config.Resolution);
        string name = $"{id} {config.Name} training step";

        Tensor Step()
        {
            Tensor t = torch.randint(0, DdpmSteps, [batch], ScalarType.Int64);
            Tensor noise = torch.randn_like(x0);
            Tensor xt = signal.index_select(0, t).view(-1, 1, 1, 1) * x0 + noiseScale.index_select(0, t).view(-1, 1, 1, 1) * noise;
            Tensor loss = F.mse_loss(model.call(xt, t.to_type(ScalarType.Float32)), noise);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            return loss;
        }

        using (torch.NewDisposeScope())
        {
            Tensor loss = Step();
            CheckFinite(name, "loss", loss);
            foreach (var (pname, p) in model.named_parameters())
            {
                CheckFinite(name, $"{pname} after the Adam step", p);
                CheckFinite(name, $"grad of {pname}", p.grad ?? throw new InvalidOperationException($"libtorch peer {name}: {pname} got no gradient"));
            }
        }
        float[][] Results()
        {
            using (torch.NewDisposeScope())
            {
                Tensor loss = Step();
                CheckFinite(name, "loss", loss);
                Tensor grads = torch.cat(parameters.Select(p => (p.grad ?? throw new InvalidOperationException($"libtorch peer {name}: a parameter got no gradient")).flatten()).ToArray());
                Tensor updated = torch.cat(parameters.Select(p => p.detach().flatten()).ToArray());
                CheckFinite(name, "gradients", grads);
                CheckFinite(name, "parameters after the Adam step", updated);
                return [HostCopy(loss), HostCopy(grads), HostCopy(updated)];
            }
        }
        return new WorkloadSide("libtorch",
            () =>
            {
                using (torch.NewDisposeScope()) Step();
            },
            Results,
            () =>
            {
                optimizer.Dispose();
                foreach (var d in new IDisposable[] { model, signal, noiseScale, x0 }) d.Dispose();
            },
            model.ParameterCount);
    }

    /// <summary>
    /// Prints the three U-Nets' parameter counts against BENCHMARKS.md's, throwing on any mismatch; checks
    /// unet-s's float32 gradients against float64 (<see cref="CheckGradientsAgainstFloat64"/>); then builds
    /// E1, E2, E3, K7 and E5 (each checks its outputs are finite) and prints one repetition's time of each.
    /// Those times are single, unwarmed-up-to-steady-state samples, only a sign of life: the peer table
    /// (<see cref="PeerSummary"/>) gives the medians to report.
    /// </summary>
    /// <exception cref="InvalidOperationException">A parameter count differs from BENCHMARKS.md's, a gradient
    /// differs from its float64 value, or an output is not finite.</exception>
    public static void SelfCheck()
    {
        Console.WriteLine(LibTorchPeer.Initialise());
        CheckParameterCounts();
        CheckGradientsAgainstFloat64();
        TimeEachOnce();
    }

    /// <summary>Builds each end-to-end workload (its untimed first run checks finiteness) and times one repetition.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void TimeEachOnce()
    {
        Console.WriteLine("one repetition each after one untimed run (noisy; not a benchmark figure):");
        TimeOnce("E1 unet-b train step, batch 32", E1TrainingStepUnetB(), "steps/s");
        TimeOnce("E2 unet-s train step, batch 64", E2TrainingStepUnetS(), "steps/s");
        TimeOnce("E3 unet-b NFE, batch 64", E3NetworkEvaluationUnetB(), "NFE/s", E3Batch, "images/s");
        TimeOnce("K7 unet-b Hutchinson div, batch 16", K7HutchinsonDivergenceUnetB(), "estimates/s");
        TimeOnce("E5 unet-s PF-ODE eval + div, batch 64", E5ProbabilityFlowEvaluationUnetS(), "evaluations/s");
    }

    /// <summary>Builds each configuration, prints its count and a few parameter names, and compares with BENCHMARKS.md.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void CheckParameterCounts()
    {
        // BENCHMARKS.md "Facts": the peer counts every implementation of the same row must equal.
        var expected = new Dictionary<string, long>
        {
            ["unet-s"] = 1_112_801,
            ["unet-b"] = 6_472_195,
            ["ddpm-cifar10"] = 35_746_307,
        };
        foreach (var config in TorchUNetConfig.All)
        {
            using var model = new TorchUNet(config);
            long count = model.ParameterCount;
            var names = model.named_parameters().Select(p => p.name).ToList();
            Console.WriteLine($"{config.Name,-13} parameters {count,12:N0} (BENCHMARKS.md {expected[config.Name],12:N0}) {(count == expected[config.Name] ? "match" : "MISMATCH")}; {names.Count} tensors, e.g. {names[0]}, {names[4]}, {names[^1]}");
            if (count != expected[config.Name])
                throw new InvalidOperationException($"TorchUNet {config.Name}: {count} parameters, BENCHMARKS.md says {expected[config.Name]}");
        }
    }

    /// <summary>
    /// Compares unet-s's float32 vector-Jacobian products (input, conv_in.weight, conv_out.weight, the last
    /// GroupNorm's weight) with the same network's in float64, whose convolutions take libtorch's reference
    /// (non-oneDNN) path, and throws where the largest error exceeds 1e-3 of the largest float64 value. Float32
    /// rounding through the net's ~40 layers stays near 1e-6 relative; the oneDNN backward-data defect that
    /// <c>conv_out</c> works around gives errors of the size of the values themselves (or NaN).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void CheckGradientsAgainstFloat64()
    {
        const double tolerance = 1e-3;
        string[] names = ["conv_in.weight", "conv_out.weight", "norm_out.weight"];
        using var model = new TorchUNet(TorchUNetConfig.UnetS);
        model.eval();
        Tensor x = torch.randn(2, 1, 32, 32), t = torch.tensor(new float[] { 10, 700 }), v = torch.randn(2, 1, 32, 32);
        Tensor[] Vjp(ScalarType dtype)
        {
            model.to(dtype);
            var parameters = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
            Tensor xd = x.to_type(dtype).requires_grad_(true);
            Tensor y = model.call(xd, t.to_type(dtype));
            return [.. torch.autograd.grad([y], [xd, .. names.Select(n => parameters[n])], [v.to_type(dtype)]).Select(g => g.to_type(ScalarType.Float64))];
        }
        Tensor[] single = Vjp(ScalarType.Float32), reference = Vjp(ScalarType.Float64);
        string[] labels = ["input", .. names];
        for (int i = 0; i < labels.Length; i++)
        {
            double scale = reference[i].abs().max().item<double>();
            double err = (single[i] - reference[i]).abs().nan_to_num(double.PositiveInfinity).max().item<double>() / scale;
            Console.WriteLine($"unet-s VJP wrt {labels[i],-16} float32 vs float64: max error / max value {err:E1} (limit {tolerance:E0})");
            if (!(err <= tolerance))
                throw new InvalidOperationException($"TorchUNet unet-s: float32 gradient wrt {labels[i]} is off by {err:E2} of its scale against float64");
        }
    }

    /// <summary>Times one repetition of <paramref name="side"/>, then releases it; prints ms, repetitions/s and, if given, items/s.</summary>
    private static void TimeOnce(string label, WorkloadSide side, string unit, double? itemsPerRep = null, string? itemUnit = null)
    {
        long start = Stopwatch.GetTimestamp();
        side.Run();
        double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
        side.Release?.Invoke();
        string items = itemsPerRep is null ? "" : $", {itemsPerRep.Value / s:F1} {itemUnit}";
        Console.WriteLine($"  {label,-40} {s * 1e3,10:F1} ms  ({1 / s:F2} {unit}{items})");
    }

    /// <summary>A unet in eval mode whose parameters do not require gradients (inference and input-gradient workloads).</summary>
    private static TorchUNet Eval(TorchUNetConfig config)
    {
        var model = new TorchUNet(config);
        model.eval();
        foreach (var p in model.parameters()) p.requires_grad_(false);
        return model;
    }

    /// <summary>A Rademacher tensor: independent +1 or -1 with probability 1/2 each.</summary>
    private static Tensor Rademacher(long[] shape)
        => torch.randint(0, 2, shape, ScalarType.Float32) * 2 - 1;

    /// <summary>
    /// Runs <paramref name="body"/> once, throws if any tensor it returns holds a non-finite value, and returns
    /// the side: one repetition is a dispose scope (and <c>no_grad</c> when <paramref name="forwardOnly"/>)
    /// around the body; its release disposes <paramref name="model"/> and <paramref name="inputs"/>.
    /// </summary>
    private static WorkloadSide Prepare(string name, TorchUNet model, bool forwardOnly, Func<Tensor[]> body, params Tensor[] inputs)
    {
        Tensor[] Run()
        {
            if (!forwardOnly) return body();
            using (torch.no_grad()) return body();
        }
        using (torch.NewDisposeScope())
        {
            Tensor[] outputs = Run();
            for (int i = 0; i < outputs.Length; i++) CheckFinite(name, $"output {i}", outputs[i]);
        }
        float[][] Results()
        {
            using (torch.NewDisposeScope())
            {
                Tensor[] outputs = Run();
                for (int i = 0; i < outputs.Length; i++) CheckFinite(name, $"output {i}", outputs[i]);
                return outputs.Select(HostCopy).ToArray();
            }
        }
        return new WorkloadSide("libtorch",
            () =>
            {
                using (torch.NewDisposeScope()) Run();
            },
            Results,
            () =>
            {
                model.Dispose();
                foreach (var t in inputs) t.Dispose();
            },
            model.ParameterCount);
    }

    /// <summary>The values of <paramref name="t"/> in a host array (row-major).</summary>
    private static float[] HostCopy(Tensor t) => t.contiguous().data<float>().ToArray();

    private static void CheckFinite(string name, string what, Tensor t)
    {
        if (!t.isfinite().all().item<bool>())
            throw new InvalidOperationException($"libtorch peer {name}: {what} [{string.Join(",", t.shape)}] has non-finite values");
    }
}
