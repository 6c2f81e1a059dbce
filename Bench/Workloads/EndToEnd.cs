using DiffusionCore.Bench.Peer;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Nn;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Training.Objectives;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// BENCHMARKS.md's end-to-end workloads (E1, E2, E3, E5) and K7, which runs a whole U-Net: ours through
/// DiffusionCore's library (<see cref="UNet"/>, <see cref="DdpmObjective"/>, <see cref="Adam"/>,
/// <see cref="Divergence"/>, <see cref="ProbabilityFlowLikelihood"/>), libtorch's through
/// <see cref="PeerEndToEnd"/> on <see cref="TorchUNet"/>. Each side initialises its model its own way (ours from
/// a seeded <see cref="Generator"/>, libtorch's with PyTorch's defaults) and draws its own inputs, so the values
/// cannot agree: the validation checks equal parameter counts, equal output lengths and finite outputs
/// (<see cref="WorkloadSides.ValuesComparable"/>). The cost of a step does not depend on the weights' values.
/// Each repetition runs inside a <see cref="TensorScope"/>, so nothing it allocates outlives it (the optimizer's
/// moments and the gradients, which live outside every scope, are reused from one step to the next).
/// </summary>
/// <param name="seed">Seed of our weights and inputs.</param>
public abstract class EndToEndBenchmark(ulong seed) : PeerBenchmark
{
    /// <summary>Steps of the DDPM linear beta schedule (Ho et al. 2020: T = 1000, beta 1e-4 to 0.02), as the peer's.</summary>
    protected const int DdpmSteps = 1000;

    /// <summary>The one pass this workload runs.</summary>
    protected abstract Pass Only { get; }

    /// <inheritdoc />
    public override IEnumerable<Pass> Passes => [Only];

    /// <summary>Generator of our weights and inputs, fresh for every <see cref="PeerBenchmark.Setup"/>.</summary>
    protected Generator NewGenerator() => new(seed);

    /// <summary>
    /// Our side: one repetition is <paramref name="step"/> inside a <see cref="TensorScope"/>; the results run
    /// <paramref name="results"/> (one repetition and whatever it reports) in a scope and copy its tensors to the
    /// host; the release disposes the model's parameters and gradients and <paramref name="owned"/>.
    /// </summary>
    protected static WorkloadSide Ours(Module model, Action step, Func<Tensor[]> results, params IEnumerable<Tensor> owned) => new("ours",
        () =>
        {
            using var scope = TensorScope.Begin();
            step();
        },
        () =>
        {
            using var scope = TensorScope.Begin();
            return results().Select(t => t.ToArray()).ToArray();
        },
        () =>
        {
            foreach (var p in model.Parameters())
            {
                p.Grad?.Dispose();
                p.Dispose();
            }
            foreach (var t in owned) t.Dispose();
        },
        model.ParameterCount);

    /// <summary><see cref="Ours(Module, Action, Func{Tensor[]}, IEnumerable{Tensor})"/> whose repetition and results are both <paramref name="body"/>.</summary>
    protected static WorkloadSide Ours(Module model, Func<Tensor[]> body, params IEnumerable<Tensor> owned)
        => Ours(model, () => body(), body, owned);

    /// <summary>A seeded standard-normal tensor outside every scope.</summary>
    protected static Tensor Input(Generator generator, int[] shape, bool requiresGrad)
        => OursSides.Leaf(OursSides.Normal(generator, shape.Aggregate(1, (a, b) => a * b)), shape, requiresGrad);

    /// <summary>
    /// <paramref name="config"/>'s U-Net in evaluation mode with parameters that do not require gradients, as the
    /// peer's for inference and input-gradient workloads: autograd then records only the path to the input.
    /// </summary>
    protected static UNet Frozen(UNetConfig config, Generator generator)
    {
        var net = new UNet(config, generator);
        net.SetTraining(false);
        foreach (var p in net.Parameters()) p.RequiresGrad = false;
        return net;
    }

    /// <summary>
    /// One DSM training step (Ho et al. 2020, Algorithm 1) of <paramref name="config"/>'s U-Net at
    /// <paramref name="batch"/>: zero the gradients, <see cref="DdpmObjective.SimpleLoss"/> (t uniform on the 1000
    /// steps of the linear schedule, noise, x_t, the epsilon MSE of eq. 14), backward, an <see cref="Adam"/> step
    /// with the DDPM paper's CIFAR-10 settings (lr 2e-4, betas 0.9 and 0.999). x0 is one fixed standard-normal
    /// batch standing in for the data (loading data is not timed), as on the peer's side. Results: the loss,
    /// every parameter's gradient and every parameter after the step (each concatenated), as the peer's.
    /// </summary>
    protected WorkloadSides TrainingStep(UNetConfig config, int batch, WorkloadSide peer)
    {
        var generator = NewGenerator();
        var net = new UNet(config, generator);
        var parameters = net.Parameters();
        var adam = new Adam(parameters, learningRate: 2e-4, beta1: 0.9, beta2: 0.999);
        var schedule = DdpmSchedule.Linear(DdpmSteps);
        var x0 = Input(generator, [batch, config.InChannels, config.ImageSize, config.ImageSize], false);
        Tensor Step()
        {
            adam.ZeroGrad();
            var loss = DdpmObjective.SimpleLoss(net, schedule, x0, generator);
            loss.Backward();
            adam.Step();
            return loss;
        }
        Tensor Concat(IEnumerable<Tensor> tensors) => Ops.Concat(tensors.Select(t => t.Reshape((int)t.Count)).ToArray(), 0);
        Tensor[] Results()
        {
            var loss = Step();
            using (Autograd.NoGrad())
                return [loss, Concat(parameters.Select(p => p.Grad ?? throw new InvalidOperationException($"ours {config.Name} training step: {p.Name} got no gradient"))), Concat(parameters)];
        }
        // The timed repetition is the step alone; the concatenations are for the validation's results only.
        var ours = Ours(net, () => Step(), Results, [x0, .. adam.State().Values]);
        return new WorkloadSides(ours, peer, ValuesComparable: false);
    }
}

/// <summary>E1 of BENCHMARKS.md: one DSM training step of unet-b (3x32x32, 6,472,195 parameters) at batch 32.</summary>
[Workload("E1", "unet-b train step (DSM loss, backward, Adam), batch 32", RateUnit = "steps/s")]
public class E1UnetBTrainingStep() : EndToEndBenchmark(seed: 101)
{
    /// <inheritdoc />
    protected override Pass Only => Pass.ForwardBackward;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
        => TrainingStep(UNetConfig.UnetB, PeerEndToEnd.E1Batch, PeerEndToEnd.E1TrainingStepUnetB());
}

/// <summary>E2 of BENCHMARKS.md: one DSM training step of unet-s (1x32x32, 1,112,801 parameters) at batch 64.</summary>
[Workload("E2", "unet-s train step (DSM loss, backward, Adam), batch 64", RateUnit = "steps/s")]
public class E2UnetSTrainingStep() : EndToEndBenchmark(seed: 102)
{
    /// <inheritdoc />
    protected override Pass Only => Pass.ForwardBackward;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
        => TrainingStep(UNetConfig.UnetS, PeerEndToEnd.E2Batch, PeerEndToEnd.E2TrainingStepUnetS());
}

/// <summary>
/// E3 of BENCHMARKS.md, its unit of work: one network evaluation (one NFE of a 100-step DDIM or probability-flow
/// Euler loop) of unet-b on x[64, 3, 32, 32] at timestep 500 under <see cref="Autograd.NoGrad"/>. A repetition of
/// s seconds is 1/s NFE/s and 64/s images/s per network evaluation (a 100-step sampler makes 64 images in 100 s).
/// </summary>
[Workload("E3", "unet-b network evaluation (1 NFE), batch 64", RateUnit = "NFE/s", ItemsPerRepetition = PeerEndToEnd.E3Batch, ItemUnit = "images/s per NFE")]
public class E3UnetBEvaluation() : EndToEndBenchmark(seed: 103)
{
    /// <inheritdoc />
    protected override Pass Only => Pass.Forward;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        var generator = NewGenerator();
        var net = Frozen(UNetConfig.UnetB, generator);
        var x = Input(generator, [PeerEndToEnd.E3Batch, 3, 32, 32], false);
        var t = TensorScope.Escape(Tensor.Full([PeerEndToEnd.E3Batch], DdpmSteps / 2));
        var ours = Ours(net, () =>
        {
            using (Autograd.NoGrad()) return [net.Forward(x, t)];
        }, x, t);
        return new WorkloadSides(ours, PeerEndToEnd.E3NetworkEvaluationUnetB(), ValuesComparable: false);
    }
}

/// <summary>
/// K7 of BENCHMARKS.md: one Hutchinson estimate (Hutchinson 1989) of div_x unet-b(x, t) on x[16, 3, 32, 32] at
/// timestep 500, with one Rademacher probe v drawn per estimate: <see cref="Divergence.Hutchinson"/>, one forward
/// and one vector-Jacobian product v^T (d y / d x), then its dot product with v per sample. Results: y and the
/// 16 estimates.
/// </summary>
[Workload("K7", "unet-b Hutchinson divergence (fwd + 1 VJP, 1 Rademacher probe), batch 16", RateUnit = "estimates/s")]
public class K7UnetBHutchinson() : EndToEndBenchmark(seed: 107)
{
    /// <inheritdoc />
    protected override Pass Only => Pass.ForwardBackward;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        var generator = NewGenerator();
        var net = Frozen(UNetConfig.UnetB, generator);
        var x = Input(generator, [PeerEndToEnd.K7Batch, 3, 32, 32], true);
        var t = TensorScope.Escape(Tensor.Full([PeerEndToEnd.K7Batch], DdpmSteps / 2));
        var ours = Ours(net, () =>
        {
            var probe = generator.Rademacher(x.Shape);
            var y = net.Forward(x, t);
            return [y, Divergence.Hutchinson(y, x, probe)];
        }, x, t);
        return new WorkloadSides(ours, PeerEndToEnd.K7HutchinsonDivergenceUnetB(), ValuesComparable: false);
    }
}

/// <summary>
/// E5 of BENCHMARKS.md, its unit of work (an RK45 likelihood solve is many of these): one evaluation of the
/// probability-flow ODE's right-hand side with its Hutchinson divergence for unet-s on x[64, 1, 32, 32] under the
/// VP SDE (beta 0.1 to 20; Song et al. 2021, eq. 13 and Appendix D.2) at t = 0.5, as the peer's:
/// <see cref="ProbabilityFlowLikelihood.Drift"/> of the epsilon-parameterised network
/// (score = -eps(x, 999 t) / sigma(t)), then <see cref="Divergence.Hutchinson"/> with a fixed Rademacher probe (held
/// fixed through a solve, as score_sde does). One forward and one VJP. Results: the drift and the 64 estimates.
/// </summary>
[Workload("E5", "unet-s probability-flow ODE evaluation + Hutchinson divergence, batch 64", RateUnit = "evaluations/s")]
public class E5UnetSProbabilityFlow() : EndToEndBenchmark(seed: 105)
{
    /// <summary>The ODE time of the evaluation, the peer's; the cost does not depend on it.</summary>
    private const double OdeTime = 0.5;

    /// <inheritdoc />
    protected override Pass Only => Pass.ForwardBackward;

    /// <inheritdoc />
    protected override WorkloadSides Build(Pass pass)
    {
        var generator = NewGenerator();
        var net = Frozen(UNetConfig.UnetS, generator);
        var model = ScoreModel.FromNetwork(net, Parameterisation.Epsilon);
        var sde = new VpSde();
        var x = Input(generator, [PeerEndToEnd.E5Batch, 1, 32, 32], true);
        var probe = TensorScope.Escape(generator.Rademacher(x.Shape));
        var ours = Ours(net, () =>
        {
            var drift = ProbabilityFlowLikelihood.Drift(model, sde, x, OdeTime);
            return [drift, Divergence.Hutchinson(drift, x, probe)];
        }, x, probe);
        return new WorkloadSides(ours, PeerEndToEnd.E5ProbabilityFlowEvaluationUnetS(), ValuesComparable: false);
    }
}
