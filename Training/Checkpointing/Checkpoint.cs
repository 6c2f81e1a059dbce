using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Nn;
using KernelDType = DiffusionCore.Kernels.DType;

namespace DiffusionCore.Training.Checkpointing;

/// <summary>
/// Raised when a checkpoint does not fit what it is loaded into (a missing or extra tensor, a shape or dtype
/// that differs from the model's, a file that is no DiffusionCore checkpoint). The message names the file and
/// every mismatching tensor; nothing is changed when it is thrown.
/// </summary>
public sealed class CheckpointException : IOException
{
    /// <summary>Creates the exception for the checkpoint at <paramref name="path"/>.</summary>
    public CheckpointException(string path, IReadOnlyList<string> problems)
        : base($"checkpoint '{path}': {Describe(problems)}")
    {
        Path = path;
        Problems = problems;
    }

    /// <summary>The checkpoint file.</summary>
    public string Path { get; }

    /// <summary>Each problem found, one tensor (or one field) per entry.</summary>
    public IReadOnlyList<string> Problems { get; }

    private const int ProblemsShown = 10;

    private static string Describe(IReadOnlyList<string> problems) => problems.Count switch
    {
        1 => problems[0],
        <= ProblemsShown => $"{problems.Count} problems: {string.Join("; ", problems)}",
        _ => $"{problems.Count} problems: {string.Join("; ", problems.Take(ProblemsShown))}; and {problems.Count - ProblemsShown} more",
    };
}

/// <summary>The live objects of a training run that a checkpoint saves, and the run's position.</summary>
/// <param name="Model">The network; its parameters are saved as "model.&lt;name&gt;".</param>
/// <param name="Optimizer">The optimizer; its state tensors (Adam's moments) are saved as "optimizer.&lt;state name&gt;", its step count as "optimizer.step_count".</param>
/// <param name="Ema">The EMA of the model's parameters (in <see cref="Module.Parameters"/> order), saved as "ema.&lt;name&gt;", or null.</param>
/// <param name="Generator">The random stream of the run; its seed and offset are its whole state.</param>
/// <param name="Step">Training steps taken.</param>
public sealed record TrainingState(Module Model, Optimizer Optimizer, Ema? Ema, Generator Generator, long Step)
{
    /// <summary>Free-form settings of the run (model name, objective, data, learning rate...), stored in the file's metadata.</summary>
    public IReadOnlyDictionary<string, string> Config { get; init; } = new Dictionary<string, string>();

    /// <summary>The loss of each step so far (entry i is step i + 1), so a resumed run can plot its whole history.</summary>
    public IReadOnlyList<double> Losses { get; init; } = [];
}

/// <summary>What a loaded checkpoint restores beyond the tensors copied into the live objects.</summary>
/// <param name="Step">Training steps taken when it was saved.</param>
/// <param name="Generator">A generator at the saved seed and offset: the continuation of the run's random stream.</param>
/// <param name="Config">The run's settings from the metadata.</param>
/// <param name="Losses">The saved loss history.</param>
public sealed record CheckpointInfo(long Step, Generator Generator, IReadOnlyDictionary<string, string> Config, IReadOnlyList<double> Losses);

/// <summary>
/// A training run's complete state in one safetensors file: model weights ("model.&lt;param&gt;"), EMA shadow
/// weights ("ema.&lt;param&gt;"), optimizer state ("optimizer.exp_avg.3", ..., and "optimizer.step_count"),
/// the generator's seed and offset ("rng.seed", "rng.offset", U64), the step ("trainer.step", I64), the loss
/// history ("trainer.losses", F64) and the run's settings as string metadata. Being plain safetensors, the
/// weights load in Python with <c>safetensors.torch.load_file</c>. Loading checks every name, dtype and shape
/// against the live objects before changing any of them.
/// </summary>
public static class Checkpoint
{
    /// <summary>Metadata key marking a DiffusionCore checkpoint; its value is <see cref="FormatVersion"/>.</summary>
    public const string FormatKey = "diffusioncore.format";

    /// <summary>The layout version this code writes and reads.</summary>
    public const string FormatVersion = "checkpoint/1";

    /// <summary>Prefix of the model weights' tensor names.</summary>
    public const string ModelPrefix = "model.";

    /// <summary>Prefix of the EMA weights' tensor names.</summary>
    public const string EmaPrefix = "ema.";

    /// <summary>Prefix of the optimizer state's tensor names.</summary>
    public const string OptimizerPrefix = "optimizer.";

    private const string OptimizerStepName = "optimizer.step_count";
    private const string StepName = "trainer.step";
    private const string LossesName = "trainer.losses";
    private const string SeedName = "rng.seed";
    private const string OffsetName = "rng.offset";
    private const string ReservedMetadataPrefix = "diffusioncore.";

    /// <summary>Saves <paramref name="state"/> to <paramref name="path"/> atomically (temporary file, fsync, rename): the previous file stays intact until the new one is complete.</summary>
    public static void Save(string path, TrainingState state)
    {
        var (tensors, metadata) = Collect(state);
        SafeTensors.WriteAtomically(path, stream => SafeTensors.Write(stream, tensors, metadata));
    }

    /// <summary>Writes <paramref name="state"/> as safetensors bytes to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, TrainingState state)
    {
        var (tensors, metadata) = Collect(state);
        SafeTensors.Write(stream, tensors, metadata);
    }

    private static (List<KeyValuePair<string, SafeTensor>>, Dictionary<string, string>) Collect(TrainingState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var named = state.Model.NamedParameters().ToList();
        CheckEmaTracksModel(state.Ema, named);
        var tensors = new List<KeyValuePair<string, SafeTensor>>();
        foreach (var (name, p) in named) tensors.Add(new(ModelPrefix + name, SafeTensor.FromTensor(p)));
        if (state.Ema is { } ema)
            for (int i = 0; i < named.Count; i++) tensors.Add(new(EmaPrefix + named[i].Name, SafeTensor.FromTensor(ema.Shadow[i])));
        foreach (var (name, t) in state.Optimizer.State()) tensors.Add(new(OptimizerPrefix + name, SafeTensor.FromTensor(t)));
        tensors.Add(new(OptimizerStepName, SafeTensor.FromInt64([state.Optimizer.StepCount])));
        tensors.Add(new(StepName, SafeTensor.FromInt64([state.Step])));
        tensors.Add(new(SeedName, SafeTensor.FromUInt64([state.Generator.Seed])));
        tensors.Add(new(OffsetName, SafeTensor.FromUInt64([state.Generator.Offset])));
        tensors.Add(new(LossesName, SafeTensor.FromDoubles(state.Losses.ToArray(), state.Losses.Count)));

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { [FormatKey] = FormatVersion };
        foreach (var (key, value) in state.Config)
        {
            if (key.StartsWith(ReservedMetadataPrefix, StringComparison.Ordinal))
                throw new ArgumentException($"Checkpoint: config key '{key}' uses the reserved prefix '{ReservedMetadataPrefix}'", nameof(state));
            metadata[key] = value;
        }
        return (tensors, metadata);
    }

    /// <summary>
    /// Loads the checkpoint at <paramref name="path"/> into the live <paramref name="model"/>, <paramref name="optimizer"/>
    /// and <paramref name="ema"/> (which must track the model's parameters in order). A checkpoint saved with an EMA
    /// loads into a run without one (the shadow weights are then skipped); the reverse is an error.
    /// </summary>
    /// <returns>The step, a generator continuing the saved stream, the settings and the loss history.</returns>
    /// <exception cref="SafeTensorsException">The file is not valid safetensors.</exception>
    /// <param name="path">The checkpoint file.</param>
    /// <param name="model">The live model.</param>
    /// <param name="optimizer">The live optimizer.</param>
    /// <param name="ema">The live EMA, or null.</param>
    /// <param name="requiredSettings">Metadata entries the checkpoint must hold with exactly these values (the settings that
    /// shape a run, which a resumed run must share with the saved one), or null.</param>
    /// <exception cref="CheckpointException">A tensor is missing, extra, of another shape or dtype, or not finite, or a
    /// required setting differs; nothing was changed.</exception>
    public static CheckpointInfo Load(string path, Module model, Optimizer optimizer, Ema? ema, IReadOnlyDictionary<string, string>? requiredSettings = null)
    {
        var file = SafeTensors.Load(path);
        var problems = new List<string>();
        CheckFormat(file, problems);
        foreach (var (key, value) in requiredSettings ?? new Dictionary<string, string>())
        {
            if (!file.Metadata.TryGetValue(key, out var saved)) problems.Add($"metadata '{key}' is missing (this run has '{value}')");
            else if (saved != value) problems.Add($"metadata '{key}' is '{saved}', this run has '{value}' (a resumed run keeps the settings it started with)");
        }
        var named = model.NamedParameters().ToList();
        CheckEmaTracksModel(ema, named);

        var expected = new List<(string Name, Tensor Live)>();
        foreach (var (name, p) in named) expected.Add((ModelPrefix + name, p));
        if (ema is not null)
            for (int i = 0; i < named.Count; i++) expected.Add((EmaPrefix + named[i].Name, ema.Shadow[i]));
        var optimizerState = optimizer.State();
        foreach (var (name, t) in optimizerState) expected.Add((OptimizerPrefix + name, t));
        foreach (var (name, live) in expected) CheckTensor(file, name, live, problems);

        CheckScalar(file, OptimizerStepName, SafeTensorsDType.I64, problems);
        CheckScalar(file, StepName, SafeTensorsDType.I64, problems);
        CheckScalar(file, SeedName, SafeTensorsDType.U64, problems);
        CheckScalar(file, OffsetName, SafeTensorsDType.U64, problems);
        if (!file.Tensors.TryGetValue(LossesName, out var losses)) problems.Add($"tensor '{LossesName}' is missing");
        else if (losses.DType != SafeTensorsDType.F64 || losses.Shape.Length != 1)
            problems.Add($"tensor '{LossesName}' is {losses.DType} {ShapeUtil.Format(losses.Shape)}, expected F64 [steps]");

        var known = new HashSet<string>(expected.Select(e => e.Name), StringComparer.Ordinal) { OptimizerStepName, StepName, SeedName, OffsetName, LossesName };
        foreach (string name in file.Names)
        {
            if (known.Contains(name) || ema is null && name.StartsWith(EmaPrefix, StringComparison.Ordinal)) continue;
            problems.Add(name.StartsWith(ModelPrefix, StringComparison.Ordinal)
                ? $"tensor '{name}' has no parameter '{name[ModelPrefix.Length..]}' in the model"
                : $"tensor '{name}' has no counterpart in the model, EMA or optimizer");
        }
        if (problems.Count == 0)
            foreach (var (name, _) in expected) CheckFinite(file, name, problems);
        if (problems.Count > 0) throw new CheckpointException(path, problems);

        foreach (var (name, live) in named.Select(n => (ModelPrefix + n.Name, n.Tensor))) Restore(file.Tensors[name], live);
        if (ema is not null)
            for (int i = 0; i < named.Count; i++) Restore(file.Tensors[EmaPrefix + named[i].Name], ema.Shadow[i]);
        using (TensorScope.Begin())
        {
            var saved = optimizerState.Keys.ToDictionary(k => k, k => file.Tensors[OptimizerPrefix + k].ToTensor(optimizerState[k].Device));
            optimizer.LoadState(saved, file.Tensors[OptimizerStepName].ToInt64Array()[0]);
        }
        var generator = new Generator(file.Tensors[SeedName].ToUInt64Array()[0], file.Tensors[OffsetName].ToUInt64Array()[0]);
        return new CheckpointInfo(file.Tensors[StepName].ToInt64Array()[0], generator, Config(file), losses!.ToDoubleArray());
    }

    /// <summary>
    /// Loads only the weights of a checkpoint into <paramref name="model"/>: the EMA weights when <paramref name="ema"/>
    /// is true (what DDPM and score-SDE models are sampled with), else the raw ones. Every model parameter must be present
    /// with its shape and dtype, and the checkpoint may hold no weight the model lacks.
    /// </summary>
    /// <returns>The run's settings from the metadata.</returns>
    /// <exception cref="CheckpointException">A weight is missing, extra, or of another shape or dtype; nothing was changed.</exception>
    public static IReadOnlyDictionary<string, string> LoadWeights(string path, Module model, bool ema = false)
    {
        var file = SafeTensors.Load(path);
        var problems = new List<string>();
        CheckFormat(file, problems);
        string prefix = ema ? EmaPrefix : ModelPrefix;
        var named = model.NamedParameters().ToList();
        foreach (var (name, p) in named) CheckTensor(file, prefix + name, p, problems);
        var known = named.Select(n => prefix + n.Name).ToHashSet(StringComparer.Ordinal);
        foreach (string name in file.Names.Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && !known.Contains(n)))
            problems.Add($"tensor '{name}' has no parameter '{name[prefix.Length..]}' in the model");
        if (problems.Count == 0)
            foreach (var (name, _) in named) CheckFinite(file, prefix + name, problems);
        if (problems.Count > 0) throw new CheckpointException(path, problems);
        foreach (var (name, p) in named) Restore(file.Tensors[prefix + name], p);
        return Config(file);
    }

    /// <summary>
    /// Saves the weights of <paramref name="model"/> alone ("model.&lt;name&gt;", no optimizer or EMA state) with
    /// <paramref name="config"/> as metadata, atomically; <see cref="LoadWeights"/> reads them back.
    /// </summary>
    public static void SaveWeights(string path, Module model, IReadOnlyDictionary<string, string> config)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        var tensors = model.NamedParameters().Select(n => new KeyValuePair<string, SafeTensor>(ModelPrefix + n.Name, SafeTensor.FromTensor(n.Tensor))).ToList();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal) { [FormatKey] = FormatVersion };
        foreach (var (key, value) in config)
        {
            if (key.StartsWith(ReservedMetadataPrefix, StringComparison.Ordinal))
                throw new ArgumentException($"Checkpoint: config key '{key}' uses the reserved prefix '{ReservedMetadataPrefix}'", nameof(config));
            metadata[key] = value;
        }
        SafeTensors.WriteAtomically(path, stream => SafeTensors.Write(stream, tensors, metadata));
    }

    /// <summary>True when the checkpoint holds EMA weights ("ema.*" tensors).</summary>
    public static bool HasEma(SafeTensorsFile file) => file.Names.Any(n => n.StartsWith(EmaPrefix, StringComparison.Ordinal));

    // A NaN or infinite weight would only show up much later, as NaN samples or a crash in a metric; name it at load.
    private static void CheckFinite(SafeTensorsFile file, string name, List<string> problems)
    {
        var t = file.Tensors[name];
        long bad = 0, first = -1;
        if (t.DType == SafeTensorsDType.F32)
        {
            var values = t.ToFloatArray();
            for (int i = 0; i < values.Length; i++)
                if (!float.IsFinite(values[i]) && bad++ == 0) first = i;
        }
        else if (t.DType == SafeTensorsDType.F64)
        {
            var values = t.ToDoubleArray();
            for (int i = 0; i < values.Length; i++)
                if (!double.IsFinite(values[i]) && bad++ == 0) first = i;
        }
        if (bad > 0) problems.Add($"tensor '{name}' has {bad} non-finite value{(bad == 1 ? "" : "s")} (the first at flat index {first})");
    }

    private static void CheckFormat(SafeTensorsFile file, List<string> problems)
    {
        if (!file.Metadata.TryGetValue(FormatKey, out string? format))
            problems.Add($"not a DiffusionCore checkpoint: no '{FormatKey}' in the metadata");
        else if (format != FormatVersion)
            problems.Add($"format '{format}' is not the supported '{FormatVersion}'");
    }

    private static void CheckEmaTracksModel(Ema? ema, List<(string Name, Tensor Tensor)> named)
    {
        if (ema is null) return;
        if (ema.Parameters.Count != named.Count || named.Where((n, i) => !ReferenceEquals(n.Tensor, ema.Parameters[i])).Any())
            throw new ArgumentException($"Checkpoint: the EMA tracks {ema.Parameters.Count} tensors that are not the model's {named.Count} parameters in order", nameof(ema));
    }

    private static void CheckTensor(SafeTensorsFile file, string name, Tensor live, List<string> problems)
    {
        var want = live.DType == KernelDType.Float32 ? SafeTensorsDType.F32 : SafeTensorsDType.F64;
        if (!file.Tensors.TryGetValue(name, out var saved)) problems.Add($"tensor '{name}' is missing");
        else if (!ShapeUtil.Same(saved.Shape, live.Shape))
            problems.Add($"tensor '{name}' has shape {ShapeUtil.Format(saved.Shape)}, the live one {ShapeUtil.Format(live.Shape)}");
        else if (saved.DType != want) problems.Add($"tensor '{name}' is {saved.DType}, the live one {want}");
    }

    private static void CheckScalar(SafeTensorsFile file, string name, SafeTensorsDType dtype, List<string> problems)
    {
        if (!file.Tensors.TryGetValue(name, out var t)) problems.Add($"tensor '{name}' is missing");
        else if (t.DType != dtype || t.Shape.Length != 0) problems.Add($"tensor '{name}' is {t.DType} {ShapeUtil.Format(t.Shape)}, expected a {dtype} scalar");
    }

    // Uploads the saved bytes straight into the live buffer: no arithmetic, so the values are restored bit for bit.
    private static void Restore(SafeTensor saved, Tensor live)
    {
        if (saved.DType == SafeTensorsDType.F32) live.Device.Backend.Upload<float>(live.Buffer, saved.ToFloatArray());
        else live.Device.Backend.Upload<double>(live.Buffer, saved.ToDoubleArray());
    }

    private static Dictionary<string, string> Config(SafeTensorsFile file) =>
        file.Metadata.Where(kv => !kv.Key.StartsWith(ReservedMetadataPrefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
}
