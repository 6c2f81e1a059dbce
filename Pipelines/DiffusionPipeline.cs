using System.Globalization;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Score;
using DiffusionCore.Plotting;
using DiffusionCore.Sampling.Guidance;

namespace DiffusionCore.Pipelines;

/// <summary>What to generate: how many samples, with which sampler, steps, guidance and labels.</summary>
public sealed record GenerationOptions
{
    /// <summary>Number of samples.</summary>
    public int Count { get; init; } = 16;

    /// <summary>A name of <see cref="SamplerCatalog"/>, or null for the model's own (<see cref="SamplerCatalog.DefaultFor"/>).</summary>
    public string? Sampler { get; init; }

    /// <summary>Sampler steps (per level for annealed Langevin), or null for the sampler's default.</summary>
    public int? Steps { get; init; }

    /// <summary>DDIM's eta: 0 deterministic, 1 DDPM-like.</summary>
    public double Eta { get; init; }

    /// <summary>
    /// Guidance scale gamma: classifier-free for a class-conditional model (1 is plain conditional sampling), classifier
    /// guidance for an unconditional one given a classifier. Null: no guidance (1 when <see cref="Class"/> or
    /// <see cref="Labels"/> is set).
    /// </summary>
    public double? Guidance { get; init; }

    /// <summary>One class for every sample; with neither this nor <see cref="Labels"/>, guided sampling cycles through the classes.</summary>
    public int? Class { get; init; }

    /// <summary>One class per sample (as many as <see cref="Count"/>).</summary>
    public IReadOnlyList<int>? Labels { get; init; }

    /// <summary>Seed of the sampler's noise (used when <see cref="Generator"/> is null).</summary>
    public ulong Seed { get; init; }

    /// <summary>The generator to draw the noise from, or null for one made from <see cref="Seed"/>.</summary>
    public Generator? Generator { get; init; }

    /// <summary>DDIM only: clip the denoised estimate to [-1, 1]; null clips for image models.</summary>
    public bool? ClipDenoised { get; init; }
}

/// <summary>
/// Turns a trained <see cref="DiffusionModel"/> into samples, like diffusers' <c>pipe(num_inference_steps=50,
/// guidance_scale=3)</c>: <c>new DiffusionPipeline(model).Generate(new GenerationOptions { Sampler = "ddim", Steps = 50,
/// Guidance = 3, Class = 7 })</c>, then <see cref="GeneratedSamples.SaveGrid"/> or <see cref="GeneratedSamples.SaveImages"/>.
/// </summary>
public sealed class DiffusionPipeline
{
    /// <summary>A pipeline over <paramref name="model"/>; <paramref name="classifier"/> (a noisy classifier) enables classifier guidance of an unconditional model.</summary>
    /// <exception cref="ConfigException"><paramref name="classifier"/> is not a noisy-classifier model.</exception>
    public DiffusionPipeline(DiffusionModel model, DiffusionModel? classifier = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (classifier is not null && classifier.Network is not NoisyClassifier)
            throw new ConfigException($"{classifier.SourcePath ?? "the classifier"} is a {classifier.Config.Network} model, not a noisy classifier (classifier-s)");
        Model = model;
        Classifier = classifier;
    }

    /// <summary>The model sampled.</summary>
    public DiffusionModel Model { get; }

    /// <summary>The noisy classifier of classifier guidance, or null.</summary>
    public DiffusionModel? Classifier { get; }

    /// <summary>The number of classes guidance can ask for: the model's, else the classifier's, else 0.</summary>
    public int GuidableClasses => Model.Config.Classes > 0 ? Model.Config.Classes : Classifier?.Network is NoisyClassifier c ? c.NumClasses : 0;

    /// <summary>
    /// Checks <paramref name="options"/> against the model (sampler, steps, labels, guidance) without sampling; the
    /// same checks <see cref="Generate"/> makes first.
    /// </summary>
    /// <exception cref="ConfigException">The request does not fit the model; the message says why.</exception>
    public void Validate(GenerationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Plan(options);
    }

    /// <summary>Draws the samples <paramref name="options"/> ask for; <paramref name="progress"/> receives the sampler's step.</summary>
    /// <exception cref="ConfigException">The request does not fit the model.</exception>
    public GeneratedSamples Generate(GenerationOptions options, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var plan = Plan(options);
        var g = options.Generator ?? new Generator(options.Seed);
        int[] shape = [options.Count, .. Model.Config.SampleShape];
        bool clip = options.ClipDenoised ?? Model.Config.IsImage;
        var (x, description) = SamplerCatalog.Sample(Model, plan.Score, plan.Sampler, shape, plan.Steps, options.Eta, g, plan.ModelLabels, clip, progress, cancellationToken);
        return new GeneratedSamples(x, plan.ShownLabels, description, plan.Sampler, plan.Steps);
    }

    /// <summary>The number of progress units <see cref="Generate"/> reports for <paramref name="options"/>.</summary>
    public int ProgressTotal(GenerationOptions options)
    {
        var plan = Plan(options);
        return SamplerCatalog.ProgressTotal(plan.Sampler, plan.Steps, Model);
    }

    private sealed record GenerationPlan(string Sampler, int Steps, ScoreModel? Score, int[]? ModelLabels, int[]? ShownLabels);

    private GenerationPlan Plan(GenerationOptions o)
    {
        if (o.Count < 1) throw new ConfigException($"count {o.Count} must be at least 1");
        string sampler = o.Sampler ?? SamplerCatalog.DefaultFor(Model);
        var info = SamplerCatalog.Get(sampler);
        if (SamplerCatalog.Unsuitable(sampler, Model) is { } reason) throw new ConfigException(reason);
        if (o.Steps is int s && s < 1) throw new ConfigException($"steps {s} must be at least 1");
        if (o.Steps is not null && !info.TakesSteps)
            throw new ConfigException($"sampler {sampler} takes no step count ({(sampler == "ddpm" ? $"it runs the model's {Model.Schedule?.Steps} schedule steps; use ddim for fewer" : "its solver picks its steps")})");
        if (!(o.Eta >= 0 && o.Eta <= 1)) throw new ConfigException($"eta {o.Eta} is out of range [0, 1]");
        if (o.Eta != 0 && !info.TakesEta) throw new ConfigException($"eta is a DDIM setting; sampler {sampler} does not use it");
        int steps = o.Steps ?? SamplerCatalog.DefaultSteps(sampler, Model);
        if (Model.ScoreNetwork is null)
        {
            if (o.Guidance is not null || o.Class is not null || o.Labels is not null) throw new ConfigException($"a {Model.Config.Network} model takes no labels or guidance");
            return new GenerationPlan(sampler, steps, null, null, null);
        }
        var baseModel = Model.ScoreModel;
        int conditional = Model.Config.Classes;
        if (o.Guidance is null && o.Class is null && o.Labels is null)
            return new GenerationPlan(sampler, steps, baseModel, conditional > 0 ? Enumerable.Repeat(conditional, o.Count).ToArray() : null, null);

        int classes = GuidableClasses;
        if (classes == 0)
        {
            throw new ConfigException(Model.Config.IsImage
                ? "this model is unconditional: guidance and classes need a classifier (a classifier-s model), or a model trained with classes for classifier-free guidance"
                : "guidance and classes need a class-labelled data set (mnist); this model was trained on " + Model.Config.Data);
        }
        if (o.Class is not null && o.Labels is not null) throw new ConfigException("give one class for all samples or one label per sample, not both");
        if (o.Labels is not null && o.Labels.Count != o.Count) throw new ConfigException($"{o.Labels.Count} labels for {o.Count} samples");
        // Without a class, sample i gets label i mod classes, so a grid shows every class.
        var labels = o.Labels?.ToArray() ?? Enumerable.Range(0, o.Count).Select(i => o.Class ?? i % classes).ToArray();
        foreach (int label in labels)
            if (label < 0 || label >= classes) throw new ConfigException($"class {label} is out of range: the model knows classes 0 to {classes - 1}");
        double gamma = o.Guidance ?? 1.0;
        if (!(gamma >= 0 && gamma <= 100)) throw new ConfigException($"guidance {gamma} is out of range [0, 100]");
        if (conditional > 0) return new GenerationPlan(sampler, steps, Guidance.ClassifierFree(baseModel, gamma, conditional), labels, labels);
        var classifier = (NoisyClassifier)Classifier!.Network;
        var guided = Guidance.Classifier(baseModel, (x, level) => classifier.Forward(x, Tensor.Full([x.Shape[0]], level.Condition, x.DType, x.Device)), gamma);
        return new GenerationPlan(sampler, steps, guided, labels, labels);
    }
}

/// <summary>The samples of one <see cref="DiffusionPipeline.Generate"/> call, with ways to save them.</summary>
public sealed class GeneratedSamples
{
    internal GeneratedSamples(Tensor samples, int[]? labels, string description, string sampler, int steps)
    {
        Samples = samples;
        Labels = labels;
        Description = description;
        Sampler = sampler;
        Steps = steps;
    }

    /// <summary>The samples: [count, 1, 32, 32] images in [-1, 1] (MNIST) or [count, 2] points.</summary>
    public Tensor Samples { get; }

    /// <summary>The class of each sample, or null when unlabelled.</summary>
    public IReadOnlyList<int>? Labels { get; }

    /// <summary>One line saying how they were drawn (sampler, steps, network evaluations).</summary>
    public string Description { get; }

    /// <summary>The sampler used.</summary>
    public string Sampler { get; }

    /// <summary>The sampler steps used.</summary>
    public int Steps { get; }

    /// <summary>Number of samples.</summary>
    public int Count => Samples.Shape[0];

    /// <summary>True for images (rank-4 samples).</summary>
    public bool IsImage => Samples.Shape.Length == 4;

    /// <summary>
    /// Saves the images as one PNG grid (<paramref name="columns"/> per row, about square when null), each captioned
    /// with its class when labelled, under an optional <paramref name="title"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The samples are not images.</exception>
    public void SaveGrid(string path, int? columns = null, string? title = null, int scale = 2)
    {
        var (c, h, w) = ImageShape();
        int cols = columns ?? (int)Math.Ceiling(Math.Sqrt(Count));
        if (cols < 1) throw new ArgumentOutOfRangeException(nameof(columns), columns, "SaveGrid: columns must be at least 1");
        int rows = (Count + cols - 1) / cols;
        ImageGrid.Save(path, Samples.ToArray(), Count, c, h, w, rows, cols, scale: scale, captions: Captions(), title: title);
    }

    /// <summary>
    /// Saves each image as its own PNG in <paramref name="directory"/> ("sample-000.png", or "sample-000-class7.png" when
    /// labelled) and returns the paths.
    /// </summary>
    /// <exception cref="InvalidOperationException">The samples are not images.</exception>
    public IReadOnlyList<string> SaveImages(string directory, string prefix = "sample", int scale = 1)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var (c, h, w) = ImageShape();
        var all = Samples.ToArray();
        int size = c * h * w, digits = Math.Max(3, (Count - 1).ToString(CultureInfo.InvariantCulture).Length);
        var paths = new List<string>();
        for (int i = 0; i < Count; i++)
        {
            string name = $"{prefix}-{i.ToString(CultureInfo.InvariantCulture).PadLeft(digits, '0')}{(Labels is null ? "" : $"-class{Labels[i].ToString(CultureInfo.InvariantCulture)}")}.png";
            string path = Path.Combine(directory, name);
            ImageGrid.Save(path, all.AsSpan(i * size, size).ToArray(), 1, c, h, w, 1, 1, scale: scale);
            paths.Add(path);
        }
        return paths;
    }

    private string[]? Captions() => Labels?.Select(l => l.ToString(CultureInfo.InvariantCulture)).ToArray();

    private (int C, int H, int W) ImageShape() => IsImage
        ? (Samples.Shape[1], Samples.Shape[2], Samples.Shape[3])
        : throw new InvalidOperationException($"the samples have shape [{string.Join(", ", Samples.Shape)}]; only images can be saved as PNG images (plot points with ScatterPlot)");
}
