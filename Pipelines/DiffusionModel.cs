using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Models.Nn;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Training.Checkpointing;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Objectives;

namespace DiffusionCore.Pipelines;

/// <summary>
/// A diffusion model: its network, forward process and output parameterisation, built from a <see cref="ModelConfig"/>.
/// <see cref="Load"/> rebuilds a trained one from a checkpoint alone (a checkpoint of <see cref="TrainingSession"/> or
/// `diffusion train`, or one written by <see cref="Save"/>); <see cref="DiffusionPipeline"/> samples it.
/// </summary>
public sealed class DiffusionModel
{
    private DiffusionModel(ModelConfig config, Module network, Device device)
    {
        Config = config;
        Network = network;
        Device = device;
        var process = config.Process;
        Schedule = process.Kind == "ddpm" ? DdpmSchedule.Create(process.Schedule == "cosine" ? BetaSchedule.Cosine : BetaSchedule.Linear, process.Timesteps) : null;
        Sigmas = process.Kind == "ncsn" ? NcsnSigmas.Geometric(process.SigmaMax, process.SigmaMin, process.Levels) : null;
        Sde = process.Kind is "vp" or "subvp" or "ve" ? Sde.Create(process.Kind) : null;
    }

    /// <summary>What the model is.</summary>
    public ModelConfig Config { get; }

    /// <summary>The network: a <see cref="Models.Networks.ScoreNetwork"/>, a <see cref="CnfDynamics"/> or a <see cref="NoisyClassifier"/>.</summary>
    public Module Network { get; }

    /// <summary>Where the weights live.</summary>
    public Device Device { get; }

    /// <summary>The checkpoint the weights came from, or null for a new model.</summary>
    public string? SourcePath { get; private init; }

    /// <summary>True when the weights are a checkpoint's EMA weights (what DDPM and score-SDE models are sampled with).</summary>
    public bool UsesEmaWeights { get; private init; }

    /// <summary>DDPM's discrete schedule, for DDPM-trained models.</summary>
    public DdpmSchedule? Schedule { get; }

    /// <summary>NCSN's noise levels, for NCSN and sliced-SM models.</summary>
    public NcsnSigmas? Sigmas { get; }

    /// <summary>The SDE of a continuous-time model (vp, subvp, ve).</summary>
    public Sde? Sde { get; }

    /// <summary>What a score network's output means.</summary>
    public Parameterisation Output => Config.Output;

    /// <summary>The score network, or null for a CNF or a classifier.</summary>
    public ScoreNetwork? ScoreNetwork => Network as ScoreNetwork;

    /// <summary>The network as the score model every sampler takes.</summary>
    /// <exception cref="ConfigException">The model has no score network (a CNF or a noisy classifier).</exception>
    public ScoreModel ScoreModel => ScoreModel.FromNetwork(
        ScoreNetwork ?? throw new ConfigException($"a {Config.Network} model holds no score network (it was trained with objective {Config.Objective.Name})"),
        Output);

    /// <summary>
    /// The continuous SDE the model can be sampled and evaluated under: its own SDE, or for a DDPM model with the
    /// linear 1000-step schedule the VP SDE (beta 0.1..20) of which that schedule is the discretisation (Song et al.
    /// 2021, appendix B); the network's step index i is then read as 999 t, the scale VP networks are told.
    /// </summary>
    public Sde? ContinuousSde => Sde ?? (Config.Process.DiscretisesVpSde ? new VpSde(0.1, 20.0) : null);

    /// <summary>Number of trainable weights.</summary>
    public long ParameterCount => Network.ParameterCount;

    /// <summary>A new model with weights drawn from <paramref name="generator"/>, on <paramref name="device"/> (the default device when null).</summary>
    /// <exception cref="ConfigException">The config does not validate.</exception>
    public static DiffusionModel Create(ModelConfig config, Generator generator, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(generator);
        config.Validate();
        var on = device ?? Device.Default;
        Module network = config.Network switch
        {
            "mlp-2d" => new Mlp2d(generator, device: on, condition: config.Condition),
            "cnf-2d" => CnfDynamics.Toy2d(generator, on),
            "classifier-s" => new NoisyClassifier(UNetConfig.UnetS with { InChannels = 1 }, Mnist.Classes, generator, device: on),
            _ => new UNet(UNetConfig.Get(config.Network) with { InChannels = 1, NumClasses = config.Classes, Condition = config.Condition }, generator, on),
        };
        return new DiffusionModel(config, network, on);
    }

    /// <summary>
    /// Rebuilds the model stored at <paramref name="path"/>: the config from the metadata (the JSON of
    /// <see cref="ModelConfig.MetadataKey"/>, or the flat keys of older checkpoints), then the EMA weights when the
    /// file has them and <paramref name="preferEma"/> is set, else the raw weights. The network is put in evaluation mode.
    /// </summary>
    /// <exception cref="FileNotFoundException">There is no file at <paramref name="path"/>.</exception>
    /// <exception cref="SafeTensorsException">The file is not valid safetensors (e.g. cut short); the message names it.</exception>
    /// <exception cref="CheckpointException">The file is no usable DiffusionCore checkpoint: a config that is missing, unreadable
    /// or names an unknown model, weights that do not fit it or are not finite.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be read (permissions, or a directory).</exception>
    public static DiffusionModel Load(string path, Device? device = null, bool preferEma = true)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new CheckpointException(path, ["this is a directory, not a checkpoint file"]);
        if (!File.Exists(path)) throw new FileNotFoundException($"no checkpoint at '{path}'", path);
        var file = SafeTensors.Load(path);
        var config = ReadConfig(file.Metadata, path);
        // The weights are overwritten by the checkpoint's; the seed only fixes the throwaway initial draw.
        var model = Create(config, new Generator(0), device);
        bool ema = preferEma && Checkpoint.HasEma(file);
        Checkpoint.LoadWeights(path, model.Network, ema);
        model.Network.SetTraining(false);
        return new DiffusionModel(config, model.Network, model.Device) { SourcePath = path, UsesEmaWeights = ema };
    }

    /// <summary>
    /// The model config in checkpoint metadata, as a problem of the file when it cannot be read or names a model, data set
    /// or objective this version does not know.
    /// </summary>
    /// <exception cref="CheckpointException">The config is missing, unreadable or invalid.</exception>
    public static ModelConfig ReadConfig(IReadOnlyDictionary<string, string> metadata, string path)
    {
        try
        {
            var config = ModelConfig.FromMetadata(metadata, path);
            config.Validate();
            return config;
        }
        catch (ConfigException e)
        {
            string message = e.Message.StartsWith(path, StringComparison.Ordinal) ? e.Message[path.Length..].TrimStart(':', ' ') : e.Message;
            throw new CheckpointException(path, [$"its metadata does not describe a model this version can build: {message}"]);
        }
    }

    /// <summary>
    /// Saves the current weights with the config to <paramref name="path"/> (atomically): a weights-only checkpoint
    /// that <see cref="Load"/> turns back into this model.
    /// </summary>
    public void Save(string path) =>
        Checkpoint.SaveWeights(path, Network, new Dictionary<string, string> { [ModelConfig.MetadataKey] = Config.ToJson() });

    /// <summary>
    /// The training loss of one step: draws a batch of <paramref name="batch"/> from <paramref name="data"/> and every
    /// random number from the step's generator (the trainer's, saved in checkpoints, so a resumed run continues the
    /// same stream).
    /// </summary>
    public Func<Generator, Tensor> TrainingLoss(TrainingData data, int batch)
    {
        ArgumentNullException.ThrowIfNull(data);
        var c = Config;
        var importance = Sde is not null && c.Objective.Importance ? new InverseVarianceTimeSampler(Sde) : null;
        var flow = Network is CnfDynamics dynamics ? new ContinuousFlow(dynamics) : null;
        return g =>
        {
            var (x0, labels) = data.Batch(g, batch);
            int[]? modelLabels = labels is not null && c.Classes > 0 ? ClassifierFreeDropout.DropLabels(labels, c.Classes, c.Objective.PUncond, g) : null;
            switch (c.Objective.Name)
            {
                case "ddpm": return DdpmObjective.SimpleLoss(ScoreNetwork!, Schedule!, x0, g, modelLabels);
                case "ddpm-vlb": return DdpmVlbObjective.Loss(ScoreNetwork!, Schedule!, x0, g, modelLabels);
                case "ncsn": return NcsnObjective.DenoisingScoreMatchingLoss(ScoreNetwork!, Sigmas!, x0, g, modelLabels);
                case "vp" or "subvp" or "ve":
                    return importance is null
                        ? SdeObjective.DenoisingScoreMatchingLoss(ScoreNetwork!, Sde!, Output, x0, g, labels: modelLabels)
                        : SdeObjective.ImportanceSampledLoss(ScoreNetwork!, Output, x0, g, importance, modelLabels);
                case "ssm": return SlicedLoss(x0, g);
                // Maximum likelihood: -mean log p(x0) with gradients by the adjoint method (Chen et al. 2018) and one
                // Hutchinson probe per step (FFJORD, Grathwohl et al. 2019), drawn from the step's generator.
                case "cnf": return flow!.NegativeLogLikelihood(x0, g);
                case "classifier":
                    var classifier = (NoisyClassifier)Network;
                    return NoisyClassifierObjective.CrossEntropyLoss(classifier.Forward, Schedule!, x0, labels!, g);
                default: throw new ConfigException($"objective '{c.Objective.Name}' has no training loss");
            }
        };
    }

    /// <summary>Dropout layers draw their masks from <paramref name="generator"/> (the trainer's, so checkpoints capture that stream too).</summary>
    public void ConnectDropout(Generator generator)
    {
        if (Network is ScoreNetwork score) score.DropoutGenerator = generator;
        if (Network is NoisyClassifier classifier) classifier.DropoutGenerator = generator;
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
        return Ops.Scale(SlicedScoreMatching.Loss(v => ScoreNetwork!.Forward(v, condition), x, g), sigma * sigma);
    }
}
