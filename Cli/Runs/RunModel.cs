using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Models.Nn;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Objectives;

namespace DiffusionCore.Cli.Runs;

/// <summary>
/// A run's network and forward process, built from its <see cref="RunConfig"/>: the same code builds them
/// for training and, from a checkpoint's metadata, for sampling and likelihoods.
/// </summary>
internal sealed class RunModel
{
    private RunModel(RunConfig config, Module network)
    {
        Config = config;
        Network = network;
    }

    public RunConfig Config { get; }

    /// <summary>The trained module: a <see cref="ScoreNetwork"/>, a <see cref="CnfDynamics"/> or a <see cref="NoisyClassifier"/>.</summary>
    public Module Network { get; }

    public DdpmSchedule? Schedule { get; private init; }

    public NcsnSigmas? Sigmas { get; private init; }

    public Sde? Sde { get; private init; }

    /// <summary>What the score network's output means.</summary>
    public Parameterisation Output { get; private init; }

    public ScoreNetwork ScoreNetwork => Network as ScoreNetwork
        ?? throw new UsageException($"a {Config.Model} checkpoint holds no score network (it was trained with --objective {Config.Objective})");

    public ScoreModel ScoreModel => ScoreModel.FromNetwork(ScoreNetwork, Output);

    /// <summary>
    /// The continuous SDE the model can be sampled and evaluated under: its own SDE, or for a DDPM model with
    /// linear betas 1e-4..0.02 over 1000 steps the VP SDE with beta_min 0.1, beta_max 20, of which that
    /// schedule is the discretisation (Song et al. 2021, appendix B); the network's step index i is then
    /// read as 999 t, the scale VP networks are told.
    /// </summary>
    public Sde? ContinuousSde
    {
        get
        {
            if (Sde is not null) return Sde;
            if (Schedule is not null && Config.Schedule == "linear" && Config.Timesteps == 1000) return new VpSde(0.1, 20.0);
            return null;
        }
    }

    public static RunModel Build(RunConfig c, Generator generator)
    {
        c.Validate();
        var condition = c.Objective is "ncsn" or "ssm" or "ve" ? ConditionKind.Sigma : ConditionKind.Time;
        Module network = c.Model switch
        {
            "mlp-2d" => new Mlp2d(generator, condition: condition),
            "cnf-2d" => CnfDynamics.Toy2d(generator),
            "classifier-s" => new NoisyClassifier(UNetConfig.UnetS with { InChannels = 1 }, Mnist.Classes, generator),
            _ => new UNet(ImageConfig(c, condition), generator),
        };
        var schedule = c.Objective is "ddpm" or "ddpm-vlb" or "classifier" ? DdpmSchedule.Create(ParseSchedule(c.Schedule), c.Timesteps) : null;
        var sigmas = c.Objective is "ncsn" or "ssm" ? NcsnSigmas.Geometric(c.SigmaMax, c.SigmaMin, c.Levels) : null;
        var sde = c.Objective is "vp" or "subvp" or "ve" ? Sde.Create(c.Objective) : null;
        return new RunModel(c, network)
        {
            Schedule = schedule,
            Sigmas = sigmas,
            Sde = sde,
            Output = c.Objective is "ncsn" or "ssm" ? Parameterisation.Score : Parameterisation.Epsilon,
        };
    }

    private static UNetConfig ImageConfig(RunConfig c, ConditionKind condition)
    {
        var baseConfig = UNetConfig.Get(c.Model);
        return baseConfig with { InChannels = 1, NumClasses = c.Classes, Condition = condition };
    }

    public static BetaSchedule ParseSchedule(string name) => name switch
    {
        "linear" => BetaSchedule.Linear,
        "cosine" => BetaSchedule.Cosine,
        _ => throw new UsageException($"--schedule must be linear or cosine, got '{name}'"),
    };

    /// <summary>
    /// The training loss for one step: draws a batch from <paramref name="data"/> and every random number
    /// from the step's generator (the trainer's generator, saved in checkpoints, so a resumed run continues
    /// the same stream).
    /// </summary>
    public Func<Generator, Tensor> Loss(DataSource data)
    {
        var c = Config;
        var importance = Sde is not null && c.Importance ? new InverseVarianceTimeSampler(Sde) : null;
        var flow = Network is CnfDynamics dynamics ? new ContinuousFlow(dynamics) : null;
        return g =>
        {
            var (x0, labels) = data.Batch(g, c.Batch);
            int[]? modelLabels = labels is not null && c.Classes > 0 ? ClassifierFreeDropout.DropLabels(labels, c.Classes, c.PUncond, g) : null;
            switch (c.Objective)
            {
                case "ddpm": return DdpmObjective.SimpleLoss(ScoreNetwork, Schedule!, x0, g, modelLabels);
                case "ddpm-vlb": return DdpmVlbObjective.Loss(ScoreNetwork, Schedule!, x0, g, modelLabels);
                case "ncsn": return NcsnObjective.DenoisingScoreMatchingLoss(ScoreNetwork, Sigmas!, x0, g, modelLabels);
                case "vp" or "subvp" or "ve":
                    return importance is null
                        ? SdeObjective.DenoisingScoreMatchingLoss(ScoreNetwork, Sde!, Output, x0, g, labels: modelLabels)
                        : SdeObjective.ImportanceSampledLoss(ScoreNetwork, Output, x0, g, importance, modelLabels);
                case "ssm": return SlicedLoss(x0, g);
                // Maximum likelihood: -mean log p(x0) with gradients by the adjoint method (Chen et al. 2018) and one
                // Hutchinson probe per step (FFJORD, Grathwohl et al. 2019), drawn from the step's generator.
                case "cnf": return flow!.NegativeLogLikelihood(x0, g);
                case "classifier":
                    var classifier = (NoisyClassifier)Network;
                    return NoisyClassifierObjective.CrossEntropyLoss(classifier.Forward, Schedule!, x0, labels!, g);
                default: throw new UsageException($"--objective {c.Objective} is not a score-matching objective");
            }
        };
    }

    /// <summary>
    /// Sliced score matching on noised data (Song et al. 2019 with NCSN's levels): one level sigma_i per step,
    /// x = x0 + sigma_i eps, loss sigma_i^2 * SSM(s(., sigma_i); x), so that every level's term is O(1) as in
    /// NCSN's lambda(sigma) = sigma^2 weighting.
    /// </summary>
    private Tensor SlicedLoss(Tensor x0, Generator g)
    {
        int level = g.Integers(1, Sigmas!.Count)[0];
        double sigma = Sigmas.Sigmas[level];
        var x = Ops.Add(x0, Ops.Scale(g.Normal(x0.Shape, x0.DType, x0.Device), sigma));
        var condition = Tensor.Full([x0.Shape[0]], sigma, x0.DType, x0.Device);
        return Ops.Scale(SlicedScoreMatching.Loss(v => ScoreNetwork.Forward(v, condition), x, g), sigma * sigma);
    }
}

/// <summary>Training data: a 2-D toy set drawn afresh from its generator, or the bundled MNIST.</summary>
internal sealed class DataSource
{
    private readonly Toy2dKind? _toy;
    private readonly MnistDataSet? _mnist;

    private DataSource(Toy2dKind? toy, MnistDataSet? mnist)
    {
        _toy = toy;
        _mnist = mnist;
    }

    public static DataSource Open(string name, MnistSplit split = MnistSplit.Train)
    {
        if (name == "mnist") return new DataSource(null, Training.Data.Mnist.LoadBundled(split));
        try { return new DataSource(Toy2d.Parse(name), null); }
        catch (ArgumentException e) { throw new UsageException($"{e.Message}; or 'mnist' for the bundled MNIST subset"); }
    }

    public Toy2dKind? Toy => _toy;

    public MnistDataSet? Images => _mnist;

    /// <summary>A batch and its labels (null for the toy sets), every random number from <paramref name="g"/>.</summary>
    public (Tensor X, int[]? Labels) Batch(Generator g, int size)
    {
        if (_mnist is not null)
        {
            var b = _mnist.SampleBatch(g, size);
            return (b.Images, b.Labels);
        }
        return (Toy2d.Batch(_toy!.Value, size, g), null);
    }
}
