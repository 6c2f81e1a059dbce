using System.Globalization;

namespace DiffusionCore.Cli.Runs;

/// <summary>
/// Everything that defines a training run: what is trained on what, with which objective and forward
/// process. It is stored in the checkpoint's metadata, so `sample` and `likelihood` rebuild the same model
/// and process from the checkpoint alone.
/// </summary>
internal sealed record RunConfig
{
    public static readonly string[] Models = ["mlp-2d", "unet-s", "unet-b", "ddpm-cifar10", "cnf-2d", "classifier-s"];
    public static readonly string[] Objectives = ["ddpm", "ddpm-vlb", "ncsn", "vp", "subvp", "ve", "ssm", "cnf", "classifier"];

    public string Model { get; init; } = "mlp-2d";
    public string Data { get; init; } = "two-moons";
    public string Objective { get; init; } = "ddpm";
    /// <summary>Continuous DSM only: draw t from pi(t) ~ 1/sigma_t^2 with importance weights.</summary>
    public bool Importance { get; init; }
    public string Schedule { get; init; } = "linear";
    public int Timesteps { get; init; } = 1000;
    public double SigmaMax { get; init; } = 1.0;
    public double SigmaMin { get; init; } = 0.01;
    public int Levels { get; init; } = 10;
    /// <summary>Number of classes the model is conditioned on (0: unconditional).</summary>
    public int Classes { get; init; }
    /// <summary>Classifier-free label dropout probability (conditional models).</summary>
    public double PUncond { get; init; } = 0.1;
    public int Steps { get; init; } = 5000;
    public int Batch { get; init; } = 512;
    public double LearningRate { get; init; } = 2e-3;
    public ulong Seed { get; init; }

    public bool IsImage => Data is "mnist";

    public bool IsToy => !IsImage;

    public Dictionary<string, string> ToMetadata() => new()
    {
        ["model"] = Model,
        ["data"] = Data,
        ["objective"] = Objective,
        ["importance"] = Importance ? "true" : "false",
        ["schedule"] = Schedule,
        ["timesteps"] = Timesteps.ToString(CultureInfo.InvariantCulture),
        ["sigma_max"] = SigmaMax.ToString("R", CultureInfo.InvariantCulture),
        ["sigma_min"] = SigmaMin.ToString("R", CultureInfo.InvariantCulture),
        ["levels"] = Levels.ToString(CultureInfo.InvariantCulture),
        ["classes"] = Classes.ToString(CultureInfo.InvariantCulture),
        ["p_uncond"] = PUncond.ToString("R", CultureInfo.InvariantCulture),
        ["steps"] = Steps.ToString(CultureInfo.InvariantCulture),
        ["batch"] = Batch.ToString(CultureInfo.InvariantCulture),
        ["lr"] = LearningRate.ToString("R", CultureInfo.InvariantCulture),
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
    };

    public static RunConfig FromMetadata(IReadOnlyDictionary<string, string> m, string file)
    {
        string Get(string key) => m.TryGetValue(key, out var v) ? v
            : throw new UsageException($"{file} has no '{key}' in its metadata; it was not written by `diffusion train`");
        int Int(string key) => int.TryParse(Get(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v
            : throw new UsageException($"{file}: metadata '{key}' = '{Get(key)}' is not an integer");
        double Double(string key) => double.TryParse(Get(key), NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v
            : throw new UsageException($"{file}: metadata '{key}' = '{Get(key)}' is not a number");
        return new RunConfig
        {
            Model = Get("model"),
            Data = Get("data"),
            Objective = Get("objective"),
            Importance = Get("importance") == "true",
            Schedule = Get("schedule"),
            Timesteps = Int("timesteps"),
            SigmaMax = Double("sigma_max"),
            SigmaMin = Double("sigma_min"),
            Levels = Int("levels"),
            Classes = Int("classes"),
            PUncond = Double("p_uncond"),
            Steps = Int("steps"),
            Batch = Int("batch"),
            LearningRate = Double("lr"),
            Seed = ulong.Parse(Get("seed"), CultureInfo.InvariantCulture),
        };
    }

    /// <summary>Checks that the combination makes sense, with a message saying what is accepted.</summary>
    public void Validate()
    {
        if (!Models.Contains(Model)) throw new UsageException($"--model '{Model}' is unknown; expected one of {string.Join(", ", Models)}");
        if (!Objectives.Contains(Objective)) throw new UsageException($"--objective '{Objective}' is unknown; expected one of {string.Join(", ", Objectives)}");
        bool imageModel = Model is "unet-s" or "unet-b" or "ddpm-cifar10" or "classifier-s";
        if (imageModel != IsImage) throw new UsageException($"--model {Model} needs {(imageModel ? "image data (--data mnist)" : "2-D toy data")}, got --data {Data}");
        if (Model == "cnf-2d" != (Objective == "cnf")) throw new UsageException("--model cnf-2d goes with --objective cnf (maximum likelihood with the adjoint method), and only with it");
        if (Model == "classifier-s" != (Objective == "classifier")) throw new UsageException("--model classifier-s goes with --objective classifier (noisy-classifier cross-entropy), and only with it");
        if (Objective == "ssm" && IsImage) throw new UsageException("--objective ssm (sliced score matching) is offered for 2-D toy data only (it costs one extra VJP per step)");
        if (Classes > 0 && Model == "mlp-2d") throw new UsageException("--classes needs a class-conditional model (unet-s, unet-b, ddpm-cifar10); mlp-2d is unconditional");
        if (Importance && Objective is not ("vp" or "subvp" or "ve")) throw new UsageException("--importance applies to the continuous objectives vp, subvp and ve");
    }
}
