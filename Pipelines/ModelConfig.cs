using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Pipelines;

/// <summary>
/// The forward process a model was trained under: DDPM's discrete schedule, NCSN's geometric noise levels, or one of
/// the continuous SDEs (VP, sub-VP, VE with their default parameters); none for a CNF.
/// </summary>
public sealed record ProcessConfig
{
    /// <summary>The process kinds: "ddpm", "ncsn", "vp", "subvp", "ve", "none".</summary>
    public static IReadOnlyList<string> Kinds { get; } = ["ddpm", "ncsn", "vp", "subvp", "ve", "none"];

    /// <summary>One of <see cref="Kinds"/>.</summary>
    public string Kind { get; init; } = "ddpm";

    /// <summary>DDPM: the beta schedule, "linear" (Ho et al. 2020) or "cosine" (Nichol and Dhariwal 2021).</summary>
    public string Schedule { get; init; } = "linear";

    /// <summary>DDPM: number of diffusion steps.</summary>
    public int Timesteps { get; init; } = 1000;

    /// <summary>NCSN: the largest noise level.</summary>
    public double SigmaMax { get; init; } = 1.0;

    /// <summary>NCSN: the smallest noise level.</summary>
    public double SigmaMin { get; init; } = 0.01;

    /// <summary>NCSN: number of noise levels, geometric from <see cref="SigmaMax"/> to <see cref="SigmaMin"/>.</summary>
    public int Levels { get; init; } = 10;

    /// <summary>Throws a <see cref="ConfigException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (!Kinds.Contains(Kind)) throw new ConfigException($"process '{Kind}' is unknown; expected one of {string.Join(", ", Kinds)}");
        if (Kind == "ddpm")
        {
            if (Schedule is not ("linear" or "cosine")) throw new ConfigException($"schedule '{Schedule}' is unknown; expected linear or cosine");
            if (Timesteps < 2 || Timesteps > 100_000) throw new ConfigException($"timesteps {Timesteps} is out of range [2, 100000]");
        }
        if (Kind == "ncsn")
        {
            if (!(SigmaMin > 0 && SigmaMax > SigmaMin)) throw new ConfigException($"NCSN noise levels need 0 < sigma_min < sigma_max, got sigma_min {SigmaMin}, sigma_max {SigmaMax}");
            if (Levels < 1 || Levels > 10_000) throw new ConfigException($"levels {Levels} is out of range [1, 10000]");
        }
    }

    /// <summary>True for the linear 1000-step DDPM schedule, the discretisation of the VP SDE with beta 0.1..20 (Song et al. 2021, appendix B).</summary>
    [JsonIgnore]
    public bool DiscretisesVpSde => Kind == "ddpm" && Schedule == "linear" && Timesteps == 1000;
}

/// <summary>The training objective of a model, and its options.</summary>
public sealed record ObjectiveConfig
{
    /// <summary>The objectives: DDPM's L_simple and VLB, NCSN's DSM, continuous DSM (vp, subvp, ve), sliced score matching, CNF maximum likelihood, noisy-classifier cross-entropy.</summary>
    public static IReadOnlyList<string> Names { get; } = ["ddpm", "ddpm-vlb", "ncsn", "vp", "subvp", "ve", "ssm", "cnf", "classifier"];

    /// <summary>One of <see cref="Names"/>.</summary>
    public string Name { get; init; } = "ddpm";

    /// <summary>Continuous DSM only: draw t from pi(t) ~ 1/sigma_t^2 with importance weights.</summary>
    public bool Importance { get; init; }

    /// <summary>Class-conditional models: the probability of replacing a label by the null label (classifier-free guidance).</summary>
    public double PUncond { get; init; } = 0.1;

    /// <summary>The forward process the objective trains under.</summary>
    [JsonIgnore]
    public string ProcessKind => Name switch
    {
        "ddpm" or "ddpm-vlb" or "classifier" => "ddpm",
        "ncsn" or "ssm" => "ncsn",
        "cnf" => "none",
        _ => Name,
    };
}

/// <summary>
/// Everything that defines a trained model: the network, the data it models (which fixes the sample shape), its
/// class conditioning, the forward process and the objective. Stored as JSON in the checkpoint's metadata
/// (<see cref="MetadataKey"/>), so that <see cref="DiffusionModel.Load"/> rebuilds the model from the file alone.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>The checkpoint metadata key holding <see cref="ToJson"/>.</summary>
    public const string MetadataKey = "model_config";

    /// <summary>The networks: "mlp-2d", "unet-s", "unet-b", "ddpm-cifar10", "cnf-2d", "classifier-s".</summary>
    public static IReadOnlyList<string> Networks { get; } = ["mlp-2d", "unet-s", "unet-b", "ddpm-cifar10", "cnf-2d", "classifier-s"];

    /// <summary>The data sets: the 2-D toy sets and "mnist".</summary>
    public static IReadOnlyList<string> DataSets { get; } = [.. Toy2d.ValidNames, "mnist"];

    /// <summary>One of <see cref="Networks"/>.</summary>
    public string Network { get; init; } = "mlp-2d";

    /// <summary>The data the model was trained on: a 2-D toy set (<see cref="Toy2d.ValidNames"/>) or "mnist" (1 x 32 x 32 images).</summary>
    public string Data { get; init; } = "two-moons";

    /// <summary>Classes the network is conditioned on (0: unconditional); class <see cref="Classes"/> is the null label.</summary>
    public int Classes { get; init; }

    /// <summary>The forward process.</summary>
    public ProcessConfig Process { get; init; } = new();

    /// <summary>The objective.</summary>
    public ObjectiveConfig Objective { get; init; } = new();

    /// <summary>
    /// A config with the process the objective implies (DDPM schedule, NCSN levels or the named SDE) and the
    /// given process settings.
    /// </summary>
    public static ModelConfig Create(string network, string data, string objective, int classes = 0, ProcessConfig? process = null,
        bool importance = false, double pUncond = 0.1)
    {
        var objectiveConfig = new ObjectiveConfig { Name = objective, Importance = importance, PUncond = pUncond };
        return new ModelConfig
        {
            Network = network,
            Data = data,
            Classes = classes,
            Objective = objectiveConfig,
            Process = (process ?? new ProcessConfig()) with { Kind = ObjectiveConfig.Names.Contains(objective) ? objectiveConfig.ProcessKind : "none" },
        };
    }

    /// <summary>True for image data (MNIST).</summary>
    [JsonIgnore]
    public bool IsImage => Data == "mnist";

    /// <summary>The shape of one sample: [1, 32, 32] for MNIST, [2] for the toy sets.</summary>
    [JsonIgnore]
    public int[] SampleShape => IsImage ? [1, Mnist.PaddedSize, Mnist.PaddedSize] : [2];

    /// <summary>What the network's second input is: a noise level sigma (NCSN, sliced SM, VE) or a time.</summary>
    [JsonIgnore]
    public ConditionKind Condition => Objective.Name is "ncsn" or "ssm" or "ve" ? ConditionKind.Sigma : ConditionKind.Time;

    /// <summary>What a score network's output means: the score for NCSN-style objectives, the noise otherwise.</summary>
    [JsonIgnore]
    public Parameterisation Output => Objective.Name is "ncsn" or "ssm" ? Parameterisation.Score : Parameterisation.Epsilon;

    /// <summary>Checks that the combination makes sense; a <see cref="ConfigException"/> says what is accepted.</summary>
    public void Validate()
    {
        if (!Networks.Contains(Network)) throw new ConfigException($"model '{Network}' is unknown; expected one of {string.Join(", ", Networks)}");
        if (!ObjectiveConfig.Names.Contains(Objective.Name))
            throw new ConfigException($"objective '{Objective.Name}' is unknown; expected one of {string.Join(", ", ObjectiveConfig.Names)}");
        if (Data != "mnist")
        {
            try { Toy2d.Parse(Data); }
            catch (ArgumentException e) { throw new ConfigException($"{e.Message}; or 'mnist' for the bundled MNIST subset"); }
        }
        Process.Validate();
        if (Process.Kind != Objective.ProcessKind)
            throw new ConfigException($"objective '{Objective.Name}' trains under the '{Objective.ProcessKind}' process, not '{Process.Kind}'");
        bool imageNetwork = Network is "unet-s" or "unet-b" or "ddpm-cifar10" or "classifier-s";
        if (imageNetwork != IsImage)
            throw new ConfigException($"model {Network} needs {(imageNetwork ? "image data (mnist)" : "2-D toy data")}, got data '{Data}'");
        if (Network == "cnf-2d" != (Objective.Name == "cnf"))
            throw new ConfigException("model cnf-2d goes with objective cnf (maximum likelihood with the adjoint method), and only with it");
        if (Network == "classifier-s" != (Objective.Name == "classifier"))
            throw new ConfigException("model classifier-s goes with objective classifier (noisy-classifier cross-entropy), and only with it");
        if (Objective.Name == "ssm" && IsImage) throw new ConfigException("objective ssm (sliced score matching) is offered for 2-D toy data only (it costs one extra VJP per step)");
        if (Classes < 0 || Classes > 1000) throw new ConfigException($"classes {Classes} is out of range [0, 1000]");
        if (Classes > 0 && Network is "mlp-2d" or "cnf-2d" or "classifier-s")
            throw new ConfigException($"classes needs a class-conditional U-Net (unet-s, unet-b, ddpm-cifar10); {Network} is unconditional");
        if (Classes > 0 && IsImage && Classes != Mnist.Classes)
            throw new ConfigException($"classes {Classes} does not match mnist's {Mnist.Classes} labels");
        if (Objective.Importance && Objective.Name is not ("vp" or "subvp" or "ve"))
            throw new ConfigException("importance sampling applies to the continuous objectives vp, subvp and ve");
        if (!(Objective.PUncond >= 0 && Objective.PUncond <= 1)) throw new ConfigException($"p-uncond {Objective.PUncond} is out of range [0, 1]");
    }

    /// <summary>The config as JSON (snake_case field names).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Options);

    /// <summary>Reads <see cref="ToJson"/>'s output; a <see cref="ConfigException"/> names <paramref name="source"/> when it is not a model config.</summary>
    public static ModelConfig FromJson(string json, string source) => ConfigJson.Read<ModelConfig>(json, source, "model config");

    /// <summary>
    /// The config stored in checkpoint metadata: the JSON under <see cref="MetadataKey"/>, or the flat keys
    /// ("model", "data", "objective", ...) that checkpoints written before the typed configs carry.
    /// </summary>
    /// <exception cref="ConfigException">Neither is there, or a value cannot be read; the message names <paramref name="source"/>.</exception>
    public static ModelConfig FromMetadata(IReadOnlyDictionary<string, string> metadata, string source)
    {
        if (metadata.TryGetValue(MetadataKey, out var json)) return FromJson(json, source);
        var legacy = new LegacyMetadata(metadata, source);
        return Create(legacy.Get("model"), legacy.Get("data"), legacy.Get("objective"), legacy.Int("classes"),
            new ProcessConfig
            {
                Schedule = legacy.Get("schedule"),
                Timesteps = legacy.Int("timesteps"),
                SigmaMax = legacy.Double("sigma_max"),
                SigmaMin = legacy.Double("sigma_min"),
                Levels = legacy.Int("levels"),
            },
            legacy.Get("importance") == "true", legacy.Double("p_uncond"));
    }
}

/// <summary>
/// The settings that shape a training run, fixed when it starts and stored in every checkpoint
/// (<see cref="MetadataKey"/>): a resumed run takes them from the checkpoint, so it continues bit for bit whatever
/// its new total of steps. Only <see cref="Steps"/> may change on resume.
/// </summary>
public sealed record TrainingConfig
{
    /// <summary>The checkpoint metadata key holding <see cref="ToJson"/>.</summary>
    public const string MetadataKey = "training_config";

    /// <summary>Total optimizer steps.</summary>
    public int Steps { get; init; } = 5000;

    /// <summary>Batch size.</summary>
    public int Batch { get; init; } = 512;

    /// <summary>Peak Adam learning rate.</summary>
    public double LearningRate { get; init; } = 2e-3;

    /// <summary>Steps of linear learning-rate warm-up; independent of <see cref="Steps"/>, so that a longer run starts like a shorter one.</summary>
    public int WarmupSteps { get; init; } = 100;

    /// <summary>Decay of the EMA weights (sampled), or null for none.</summary>
    public double? EmaDecay { get; init; } = 0.999;

    /// <summary>Global gradient-norm clip, or null for none.</summary>
    public double? ClipNorm { get; init; } = 1.0;

    /// <summary>Seed of the run: initial weights, batches, noise.</summary>
    public ulong Seed { get; init; }

    /// <summary>
    /// The defaults for a model: batch 32, learning rate 2e-4 and 500 warm-up steps for images; batch 512, 2e-3 (1e-3 for
    /// a CNF) and 100 warm-up steps for 2-D data.
    /// </summary>
    public static TrainingConfig DefaultsFor(ModelConfig model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.IsImage
            ? new TrainingConfig { Steps = 2000, Batch = 32, LearningRate = 2e-4, WarmupSteps = 500 }
            : new TrainingConfig { Steps = 5000, Batch = 512, LearningRate = model.Objective.Name == "cnf" ? 1e-3 : 2e-3, WarmupSteps = 100 };
    }

    /// <summary>Throws a <see cref="ConfigException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (Steps < 1) throw new ConfigException($"steps {Steps} must be at least 1");
        if (Batch < 1 || Batch > 1 << 20) throw new ConfigException($"batch {Batch} is out of range [1, {1 << 20}]");
        if (!(LearningRate > 0 && LearningRate <= 10)) throw new ConfigException($"learning rate {LearningRate} is out of range (0, 10]");
        if (WarmupSteps < 0) throw new ConfigException($"warm-up steps {WarmupSteps} must be >= 0");
        if (EmaDecay is double d && !(d >= 0 && d < 1)) throw new ConfigException($"EMA decay {d} is out of range [0, 1)");
        if (ClipNorm is double c && !(c > 0)) throw new ConfigException($"clip norm {c} must be positive");
    }

    /// <summary>The config as JSON (snake_case field names).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, ConfigJson.Options);

    /// <summary>Reads <see cref="ToJson"/>'s output; a <see cref="ConfigException"/> names <paramref name="source"/> when it is not a training config.</summary>
    public static TrainingConfig FromJson(string json, string source) => ConfigJson.Read<TrainingConfig>(json, source, "training config");

    /// <summary>
    /// The config stored in checkpoint metadata: the JSON under <see cref="MetadataKey"/>, or, for checkpoints written
    /// before the typed configs, the flat "steps", "batch", "lr", "seed" keys and the trainer's "trainer.*" settings.
    /// </summary>
    public static TrainingConfig FromMetadata(IReadOnlyDictionary<string, string> metadata, string source)
    {
        if (metadata.TryGetValue(MetadataKey, out var json)) return FromJson(json, source);
        var legacy = new LegacyMetadata(metadata, source);
        double? Optional(string key) => legacy.Get(key) == "none" ? null : legacy.Double(key);
        return new TrainingConfig
        {
            Steps = legacy.Int("steps"),
            Batch = legacy.Int("batch"),
            LearningRate = legacy.Double("lr"),
            WarmupSteps = legacy.Int("trainer.warmup_steps"),
            EmaDecay = Optional("trainer.ema_decay"),
            ClipNorm = Optional("trainer.clip_norm"),
            Seed = ulong.TryParse(legacy.Get("seed"), NumberStyles.None, CultureInfo.InvariantCulture, out ulong seed) ? seed
                : throw new ConfigException($"{source}: metadata 'seed' = '{legacy.Get("seed")}' is not an unsigned integer"),
        };
    }
}

/// <summary>The JSON settings of the configs, and reading with errors that name the file.</summary>
internal static class ConfigJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static T Read<T>(string json, string source, string what)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json, Options) ?? throw new ConfigException($"{source}: the {what} is null");
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: the {what} is not valid: {e.Message}");
        }
    }
}

/// <summary>The flat string metadata of checkpoints written before the typed configs.</summary>
internal sealed class LegacyMetadata(IReadOnlyDictionary<string, string> metadata, string source)
{
    public string Get(string key) => metadata.TryGetValue(key, out var v) ? v
        : throw new ConfigException($"{source} has no '{ModelConfig.MetadataKey}' (nor the older '{key}') in its metadata; it was not written by DiffusionCore's trainer");

    public int Int(string key) => int.TryParse(Get(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v
        : throw new ConfigException($"{source}: metadata '{key}' = '{Get(key)}' is not an integer");

    public double Double(string key) => double.TryParse(Get(key), NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v
        : throw new ConfigException($"{source}: metadata '{key}' = '{Get(key)}' is not a number");
}
