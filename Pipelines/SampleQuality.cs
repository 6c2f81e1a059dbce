using DiffusionCore.Engine;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Evaluation;

namespace DiffusionCore.Pipelines;

/// <summary>
/// Generated MNIST samples with their scores (<see cref="MnistEvaluation"/>): what
/// <see cref="SampleQuality.Evaluate"/> returns.
/// </summary>
public sealed class SampleQualityReport
{
    internal SampleQualityReport(MnistEvaluation scores, float[] images, int[]? labels, string description)
    {
        Scores = scores;
        Images = images;
        Labels = labels;
        Description = description;
    }

    /// <summary>The scores of the samples.</summary>
    public MnistEvaluation Scores { get; }

    /// <summary>The samples, [count, 1, 32, 32] floats in NCHW order. Do not modify.</summary>
    public float[] Images { get; }

    /// <summary>The class each sample was generated for, or null for an unconditional model.</summary>
    public IReadOnlyList<int>? Labels { get; }

    /// <summary>How they were drawn (sampler, steps, network evaluations per batch).</summary>
    public string Description { get; }

    /// <summary>
    /// Saves a <see cref="LabelledGrid"/> of the samples: one row per requested class (misses framed in red), or per
    /// predicted class for an unconditional model, <paramref name="perRow"/> samples per row.
    /// </summary>
    public void SaveGrid(string path, int perRow = 10, int scale = 2) =>
        LabelledGrid.Save(path, Images, Mnist.PaddedSize, Mnist.PaddedSize, Labels?.ToArray() ?? Scores.Predictions,
            Labels is null ? null : Scores.Predictions, Mnist.Classes, perRow, scale);
}

/// <summary>
/// The MNIST sample-quality score of a trained model: draws samples through a <see cref="DiffusionPipeline"/> in
/// batches and scores them with an <see cref="MnistEvaluator"/>. A model that can be asked for classes (class-conditional,
/// or unconditional with a noisy classifier for guidance) gets labels cycling 0, 1, ..., 9, so every class is asked for
/// equally often and the class accuracies apply; an unconditional model gets the Fréchet distance alone.
/// </summary>
public static class SampleQuality
{
    /// <summary>
    /// Samples <paramref name="count"/> images, <paramref name="batchSize"/> per sampler call, with the sampler, steps,
    /// eta, guidance and generator of <paramref name="generation"/> (its count, class and labels are set here), and
    /// scores them. <paramref name="progress"/> receives the sampler's progress summed over the batches, out of
    /// <see cref="ProgressTotal"/>.
    /// </summary>
    /// <exception cref="ConfigException">The model does not sample 32 x 32 MNIST images of 10 classes, or the generation settings do not fit it.</exception>
    public static SampleQualityReport Evaluate(DiffusionPipeline pipeline, MnistEvaluator evaluator, GenerationOptions generation, int count, int batchSize = 100,
        IProgress<long>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(evaluator);
        ArgumentNullException.ThrowIfNull(generation);
        var labels = Check(pipeline, generation, count, batchSize);
        var g = generation.Generator ?? new Generator(generation.Seed);
        int plane = Mnist.PaddedSize * Mnist.PaddedSize;
        var images = new float[(long)count * plane];
        long perBatch = pipeline.ProgressTotal(Batch(generation, labels, 0, Math.Min(batchSize, count), g));
        string description = "";
        for (int start = 0, index = 0; start < count; start += batchSize, index++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = TensorScope.Begin();
            int b = Math.Min(batchSize, count - start);
            long done = index * perBatch;
            var samples = pipeline.Generate(Batch(generation, labels, start, b, g), progress is null ? null : new StepProgress(s => progress.Report(done + s)), cancellationToken);
            samples.Samples.ToArray().CopyTo(images.AsSpan(start * plane));
            description = samples.Description;
            progress?.Report(done + perBatch);
        }
        using var all = Tensor.FromArray(images, count, 1, Mnist.PaddedSize, Mnist.PaddedSize);
        MnistEvaluation scores;
        try { scores = evaluator.Evaluate(all, labels); }
        catch (ArgumentException e) { throw new ConfigException(e.Message); }
        return new SampleQualityReport(scores, images, labels, description);
    }

    /// <summary>The progress units <see cref="Evaluate"/> reports in all for these settings.</summary>
    public static long ProgressTotal(DiffusionPipeline pipeline, GenerationOptions generation, int count, int batchSize = 100)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        ArgumentNullException.ThrowIfNull(generation);
        var labels = Check(pipeline, generation, count, batchSize);
        long batches = (count + batchSize - 1) / batchSize;
        return batches * pipeline.ProgressTotal(Batch(generation, labels, 0, Math.Min(batchSize, count), null));
    }

    // The requested labels (cycling through the classes, or null for an unconditional model), after checking that the
    // model samples what the classifier judges and that the generation settings fit it.
    private static int[]? Check(DiffusionPipeline pipeline, GenerationOptions generation, int count, int batchSize)
    {
        if (count < 2) throw new ConfigException($"the sample-quality score needs at least 2 samples, got {count}");
        if (batchSize < 1) throw new ConfigException($"the batch size must be at least 1, got {batchSize}");
        var model = pipeline.Model;
        int[] shape = model.Config.SampleShape;
        if (!model.Config.IsImage || model.ScoreNetwork is null || shape.Length != 3 || shape[0] != 1 || shape[1] != Mnist.PaddedSize || shape[2] != Mnist.PaddedSize)
            throw new ConfigException($"the MNIST sample-quality score needs a model of 1 x {Mnist.PaddedSize} x {Mnist.PaddedSize} images; this is a {model.Config.Network} model trained on {model.Config.Data}");
        int classes = pipeline.GuidableClasses;
        if (classes != 0 && classes != Mnist.Classes)
            throw new ConfigException($"the MNIST classifier knows {Mnist.Classes} classes; this model is conditioned on {classes}");
        var labels = classes == 0 ? null : Enumerable.Range(0, count).Select(i => i % classes).ToArray();
        pipeline.Validate(Batch(generation, labels, 0, Math.Min(batchSize, count), null));
        return labels;
    }

    private static GenerationOptions Batch(GenerationOptions generation, int[]? labels, int start, int count, Generator? g) =>
        generation with { Count = count, Class = null, Labels = labels?[start..(start + count)], Generator = g };

    private sealed class StepProgress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}
