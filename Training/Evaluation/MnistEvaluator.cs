using System.Globalization;
using System.Text;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Metrics;

namespace DiffusionCore.Training.Evaluation;

/// <summary>
/// Sample quality of MNIST-like images [N, 1, 32, 32] in [-1, 1], judged by a clean <see cref="MnistClassifier"/>
/// (the bundled one by default): (a) for class-conditional samples, the fraction classified as the class they were
/// asked for, per class and overall; (b) the Fréchet distance between the classifier's penultimate features of the
/// samples and of the bundled test split ("FID in a classifier's feature space"), with its floor: the same distance
/// for as many real training images, drawn class-balanced, against the same test split. The floor is what a perfect
/// generator would score at that sample count (the distance is biased upwards at small counts), so a score is read
/// against it, never against 0.
/// </summary>
public sealed class MnistEvaluator : IDisposable
{
    // Images per classifier forward pass.
    private const int Batch = 250;

    private readonly MnistDataSet _test;
    private readonly Dictionary<int, double> _floors = [];
    private MnistDataSet? _train;
    private float[]? _trainPixels;

    /// <summary>
    /// An evaluator around <paramref name="classifier"/> (in evaluation mode from here on); computes the test split's
    /// features and the classifier's accuracy on it.
    /// </summary>
    public MnistEvaluator(MnistClassifier classifier)
    {
        ArgumentNullException.ThrowIfNull(classifier);
        Classifier = classifier;
        classifier.SetTraining(false);
        _test = Mnist.LoadBundled(MnistSplit.Test);
        var (predictions, features) = Classify(_test.Images);
        TestStatistics = GaussianStatistics.FromSamples(features, _test.Count, MnistClassifier.FeatureWidth);
        TestAccuracy = predictions.Where((p, i) => p == _test.Labels[i]).Count() / (double)_test.Count;
    }

    /// <summary>An evaluator with the bundled classifier (<see cref="MnistClassifierWeights.LoadBundled"/>).</summary>
    public static MnistEvaluator CreateBundled() => new(MnistClassifierWeights.LoadBundled());

    /// <summary>The classifier that judges the samples.</summary>
    public MnistClassifier Classifier { get; }

    /// <summary>The classifier's accuracy on the bundled test split.</summary>
    public double TestAccuracy { get; }

    /// <summary>Mean and covariance of the test split's penultimate features: the reference of the Fréchet distance.</summary>
    public GaussianStatistics TestStatistics { get; }

    /// <summary>Images in the test split (the reference set's size).</summary>
    public int TestCount => _test.Count;

    /// <summary>
    /// Predicted classes and penultimate features ([N x <see cref="MnistClassifier.FeatureWidth"/>] row-major) of
    /// images [N, 1, 32, 32]. Values are clamped to the data range [-1, 1] first, as when a sample is stored as pixels.
    /// </summary>
    /// <exception cref="ArgumentException">The images are not [N, 1, 32, 32], or some value is NaN or infinite (a diverged sampler).</exception>
    public (int[] Predictions, float[] Features) Classify(Tensor images)
    {
        ArgumentNullException.ThrowIfNull(images);
        const int s = MnistClassifier.ImageSize;
        if (images.Rank != 4 || images.Shape[1] != 1 || images.Shape[2] != s || images.Shape[3] != s)
            throw new ArgumentException($"MnistEvaluator: images must be [N, 1, {s}, {s}] in [-1, 1], got {ShapeUtil.Format(images.Shape)}", nameof(images));
        int n = images.Shape[0];
        var predictions = new int[n];
        var features = new float[(long)n * MnistClassifier.FeatureWidth];
        using var noGrad = Autograd.NoGrad();
        for (int start = 0; start < n; start += Batch)
        {
            using var scope = TensorScope.Begin();
            int b = Math.Min(Batch, n - start);
            var x = Ops.Slice(images, 0, start, b);
            int bad = x.ToArray().Count(v => !float.IsFinite(v));
            if (bad > 0) throw new ArgumentException($"MnistEvaluator: images {start}-{start + b - 1} hold {bad} NaN or infinite values (the sampler diverged)", nameof(images));
            var h = Classifier.Features(Ops.Clamp(x, -1, 1));
            var f = h.ToArray();
            f.CopyTo(features.AsSpan(start * MnistClassifier.FeatureWidth));
            MnistClassifierTraining.ArgMax(Classifier.Logits(h).ToArray(), Classifier.Classes).CopyTo(predictions.AsSpan(start));
        }
        return (predictions, features);
    }

    /// <summary>
    /// The floor of the Fréchet distance at <paramref name="count"/> samples: the distance between the features of
    /// min(count, 9,000) training images and the test split's. The images are taken class by class in turn (0, 1, ...,
    /// 9, 0, ...), each class's in file order, as the class-conditional samples are asked for; the value is cached.
    /// </summary>
    public double FloorFrechetDistance(int count)
    {
        if (count < 2) throw new ArgumentOutOfRangeException(nameof(count), count, "MnistEvaluator: the Fréchet distance needs at least 2 images");
        if (_floors.TryGetValue(count, out double cached)) return cached;
        _train ??= Mnist.LoadBundled(MnistSplit.Train);
        _trainPixels ??= _train.Images.ToArray();
        int[] indices = ClassBalanced(_train.Labels, Math.Min(count, _train.Count), Classifier.Classes);
        int plane = MnistClassifier.ImageSize * MnistClassifier.ImageSize;
        var pixels = new float[(long)indices.Length * plane];
        for (int i = 0; i < indices.Length; i++) _trainPixels.AsSpan(indices[i] * plane, plane).CopyTo(pixels.AsSpan(i * plane));
        using var scope = TensorScope.Begin();
        var images = Tensor.FromSpan<float>(pixels, [indices.Length, 1, MnistClassifier.ImageSize, MnistClassifier.ImageSize], Kernels.DType.Float32, _train.Images.Device);
        var (_, features) = Classify(images);
        double floor = FrechetDistance.Compute(GaussianStatistics.FromSamples(features, indices.Length, MnistClassifier.FeatureWidth), TestStatistics);
        _floors[count] = floor;
        return floor;
    }

    /// <summary>
    /// Scores <paramref name="samples"/> [N, 1, 32, 32] (N at least 2). With <paramref name="requestedLabels"/> (the
    /// class each sample was generated for) the class accuracies are computed too; without (an unconditional model),
    /// only the Fréchet distance and the predicted class frequencies.
    /// </summary>
    /// <exception cref="ArgumentException">Fewer than 2 samples, a label count that differs from the sample count, or a label outside the classes.</exception>
    public MnistEvaluation Evaluate(Tensor samples, int[]? requestedLabels)
    {
        ArgumentNullException.ThrowIfNull(samples);
        int n = samples.Rank > 0 ? samples.Shape[0] : 0;
        if (n < 2) throw new ArgumentException($"MnistEvaluator.Evaluate: the Fréchet distance needs at least 2 samples, got {n}", nameof(samples));
        int classes = Classifier.Classes;
        if (requestedLabels is not null)
        {
            if (requestedLabels.Length != n) throw new ArgumentException($"MnistEvaluator.Evaluate: {requestedLabels.Length} labels for {n} samples", nameof(requestedLabels));
            int bad = Array.FindIndex(requestedLabels, l => l < 0 || l >= classes);
            if (bad >= 0) throw new ArgumentException($"MnistEvaluator.Evaluate: label {requestedLabels[bad]} at {bad} is outside [0, {classes})", nameof(requestedLabels));
        }
        var (predictions, features) = Classify(samples);
        double distance = FrechetDistance.Compute(GaussianStatistics.FromSamples(features, n, MnistClassifier.FeatureWidth), TestStatistics);
        var predictedCounts = new int[classes];
        foreach (int p in predictions) predictedCounts[p]++;
        double[]? classAccuracy = null;
        int[]? requestedCounts = null;
        double? accuracy = null;
        if (requestedLabels is not null)
        {
            requestedCounts = new int[classes];
            var right = new int[classes];
            for (int i = 0; i < n; i++)
            {
                requestedCounts[requestedLabels[i]]++;
                if (predictions[i] == requestedLabels[i]) right[requestedLabels[i]]++;
            }
            classAccuracy = Enumerable.Range(0, classes).Select(c => requestedCounts[c] > 0 ? (double)right[c] / requestedCounts[c] : double.NaN).ToArray();
            accuracy = right.Sum() / (double)n;
        }
        return new MnistEvaluation
        {
            Count = n,
            Predictions = predictions,
            RequestedLabels = requestedLabels is null ? null : (int[])requestedLabels.Clone(),
            Accuracy = accuracy,
            ClassAccuracy = classAccuracy,
            RequestedCounts = requestedCounts,
            PredictedCounts = predictedCounts,
            FrechetDistance = distance,
            FrechetFloor = FloorFrechetDistance(n),
            FloorCount = Math.Min(n, Mnist.BundledTrainCount),
            TestCount = TestCount,
        };
    }

    /// <summary>Frees the loaded data sets.</summary>
    public void Dispose()
    {
        _test.Dispose();
        _train?.Dispose();
    }

    /// <summary>
    /// <paramref name="count"/> indices into <paramref name="labels"/> taking the classes in turn (0, 1, ..., 0, 1, ...),
    /// each class's images in order; a class that has run out is skipped.
    /// </summary>
    internal static int[] ClassBalanced(int[] labels, int count, int classes)
    {
        var byClass = Enumerable.Range(0, classes).Select(c => new Queue<int>()).ToArray();
        for (int i = 0; i < labels.Length; i++) byClass[labels[i]].Enqueue(i);
        var result = new List<int>(count);
        while (result.Count < count)
            foreach (var queue in byClass)
                if (result.Count < count && queue.Count > 0) result.Add(queue.Dequeue());
        return result.ToArray();
    }
}

/// <summary>The scores <see cref="MnistEvaluator.Evaluate"/> gives a set of samples.</summary>
public sealed record MnistEvaluation
{
    /// <summary>Number of samples.</summary>
    public required int Count { get; init; }

    /// <summary>The classifier's class for each sample.</summary>
    public required int[] Predictions { get; init; }

    /// <summary>The class each sample was generated for, or null for an unconditional model.</summary>
    public int[]? RequestedLabels { get; init; }

    /// <summary>Fraction of samples classified as their requested class (null without requested labels).</summary>
    public double? Accuracy { get; init; }

    /// <summary>Per class: the fraction of the samples asked for that class classified as it (NaN for a class never asked for).</summary>
    public IReadOnlyList<double>? ClassAccuracy { get; init; }

    /// <summary>Per class: how many samples were asked for it.</summary>
    public IReadOnlyList<int>? RequestedCounts { get; init; }

    /// <summary>Per class: how many samples the classifier put in it (mode coverage, for any model).</summary>
    public required IReadOnlyList<int> PredictedCounts { get; init; }

    /// <summary>Squared Fréchet distance between the samples' and the test split's penultimate features.</summary>
    public required double FrechetDistance { get; init; }

    /// <summary>The same distance for <see cref="FloorCount"/> real training images against the test split.</summary>
    public required double FrechetFloor { get; init; }

    /// <summary>Training images behind <see cref="FrechetFloor"/>: the sample count, at most the training split's size.</summary>
    public required int FloorCount { get; init; }

    /// <summary>Images in the reference (test) split.</summary>
    public required int TestCount { get; init; }

    /// <summary>The scores' CSV columns, in the order of <see cref="CsvValues"/>: count, accuracy, accuracy_0 ... accuracy_9, frechet_distance, frechet_floor, floor_count, test_count.</summary>
    public IReadOnlyList<string> CsvColumns =>
        ["count", "accuracy", .. Enumerable.Range(0, PredictedCounts.Count).Select(c => $"accuracy_{c}"), "frechet_distance", "frechet_floor", "floor_count", "test_count"];

    /// <summary>The scores as CSV fields (invariant culture; the accuracies are empty for an unconditional model or a class never asked for).</summary>
    public IReadOnlyList<string> CsvValues()
    {
        static string F(double? v) => v is double d && double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";
        return [Count.ToString(CultureInfo.InvariantCulture), F(Accuracy),
            .. Enumerable.Range(0, PredictedCounts.Count).Select(c => F(ClassAccuracy?[c])),
            F(FrechetDistance), F(FrechetFloor), FloorCount.ToString(CultureInfo.InvariantCulture), TestCount.ToString(CultureInfo.InvariantCulture)];
    }

    /// <summary>
    /// Appends one row, the <paramref name="context"/> fields (what was evaluated: checkpoint, sampler ...) then
    /// <see cref="CsvValues"/>, to the CSV at <paramref name="path"/>, writing the header first when the file is new or
    /// empty, so that runs compared over time share one table. Fields holding a comma, quote or line break are quoted.
    /// </summary>
    /// <exception cref="InvalidDataException">The file exists with another header.</exception>
    public void AppendCsv(string path, IReadOnlyList<KeyValuePair<string, string>> context)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(context);
        string header = string.Join(',', context.Select(c => Quote(c.Key)).Concat(CsvColumns.Select(Quote)));
        string row = string.Join(',', context.Select(c => Quote(c.Value)).Concat(CsvValues().Select(Quote)));
        bool fresh = !File.Exists(path) || new FileInfo(path).Length == 0;
        if (!fresh)
        {
            string existing = File.ReadLines(path).FirstOrDefault() ?? "";
            if (existing != header)
                throw new InvalidDataException($"{path}: its header '{existing}' is not this evaluation's '{header}'; write to another file (--csv)");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var writer = new StreamWriter(path, append: true, new UTF8Encoding(false));
        if (fresh) writer.WriteLine(header);
        writer.WriteLine(row);
    }

    /// <summary>The scores as lines of text for a console: overall and per-class accuracy, the Fréchet distance next to its floor, the predicted class frequencies.</summary>
    public IReadOnlyList<string> Describe()
    {
        var lines = new List<string>();
        static string Pct(double v) => double.IsFinite(v) ? (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%" : "-";
        if (Accuracy is double overall)
        {
            lines.Add($"classified as the requested class: {Pct(overall)} of {Count} samples");
            lines.Add("  per class: " + string.Join("  ", ClassAccuracy!.Select((a, c) => $"{c}: {Pct(a)}")));
        }
        lines.Add($"Fréchet distance in the classifier's feature space: {FrechetDistance.ToString("F3", CultureInfo.InvariantCulture)} " +
            $"(floor {FrechetFloor.ToString("F3", CultureInfo.InvariantCulture)}: {FloorCount} training images vs the {TestCount} test images; " +
            $"ratio {(FrechetDistance / FrechetFloor).ToString("F2", CultureInfo.InvariantCulture)})");
        lines.Add("  predicted classes: " + string.Join("  ", PredictedCounts.Select((k, c) => $"{c}: {k}")));
        return lines;
    }

    private static string Quote(string field) =>
        field.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + field.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : field;
}
