using System.Diagnostics;
using System.Globalization;
using System.Text;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Models.Networks;
using DiffusionCore.Training.Data;
using DiffusionCore.Engine.Serialization;

namespace DiffusionCore.Training.Evaluation;

/// <summary>Settings of <see cref="MnistClassifierTraining"/>; the defaults are the recipe of the bundled classifier.</summary>
public sealed record MnistClassifierTrainingOptions
{
    /// <summary>Passes over the training images.</summary>
    public int Epochs { get; init; } = 12;

    /// <summary>Images per optimizer step (the last step of an epoch takes the remainder).</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>Adam's peak learning rate, decayed to 0 over the run on a half cosine (Loshchilov and Hutter 2017, eq. 5 without restarts).</summary>
    public double LearningRate { get; init; } = 2e-3;

    /// <summary>
    /// Augmentation: each training image is shifted by a random whole number of pixels in [-MaxShift, MaxShift] on
    /// each axis (background fills the uncovered border), new for every draw. 0 turns augmentation off.
    /// </summary>
    public int MaxShift { get; init; } = 2;

    /// <summary>Dropout on the penultimate features while training.</summary>
    public double Dropout { get; init; } = 0.25;

    /// <summary>Seed of the initial weights, the epoch orders, the shifts and the dropout masks.</summary>
    public ulong Seed { get; init; }

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of its range.</exception>
    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "MnistClassifierTrainingOptions: at least 1 epoch");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "MnistClassifierTrainingOptions: batch size at least 1");
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "MnistClassifierTrainingOptions: the learning rate must be positive");
        if (MaxShift is < 0 or > 8) throw new ArgumentOutOfRangeException(nameof(MaxShift), MaxShift, "MnistClassifierTrainingOptions: the shift must lie in [0, 8] pixels");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), Dropout, "MnistClassifierTrainingOptions: dropout must lie in [0, 1)");
    }
}

/// <summary>One epoch of <see cref="MnistClassifierTraining"/>: a row of its log.</summary>
/// <param name="Epoch">1-based epoch number.</param>
/// <param name="Step">Optimizer steps taken so far.</param>
/// <param name="TrainLoss">Mean cross-entropy over the epoch's batches (augmented, with dropout).</param>
/// <param name="TrainAccuracy">Fraction of the epoch's augmented training images classified right while training.</param>
/// <param name="TestAccuracy">Fraction of the held-out images classified right after the epoch (evaluation mode, no augmentation).</param>
/// <param name="LearningRate">Learning rate of the epoch's last step.</param>
/// <param name="CpuSeconds">Processor time of the whole process since the run began (all threads).</param>
/// <param name="WallSeconds">Wall-clock time since the run began.</param>
public sealed record MnistClassifierEpoch(int Epoch, long Step, double TrainLoss, double TrainAccuracy, double TestAccuracy, double LearningRate,
    double CpuSeconds, double WallSeconds);

/// <summary>
/// Trains a <see cref="MnistClassifier"/> on clean images with cross-entropy: Adam with a cosine-decayed learning rate,
/// random shifts as augmentation, dropout on the features, a fresh random order every epoch, and the held-out accuracy
/// after each epoch. Every random number comes from generators split off <see cref="MnistClassifierTrainingOptions.Seed"/>,
/// so a run is repeated bit for bit on the same machine and thread count.
/// </summary>
public static class MnistClassifierTraining
{
    /// <summary>Header of the CSV log <see cref="WriteLog"/> writes, one row per epoch.</summary>
    public const string LogHeader = "epoch,step,train_loss,train_accuracy,test_accuracy,lr,cpu_seconds,wall_seconds";

    // The held-out accuracy is computed this many images per forward pass.
    private const int EvaluationBatch = 250;

    /// <summary>Trains a new classifier on the bundled training split and reports the bundled test split's accuracy after each epoch.</summary>
    public static MnistClassifier TrainOnBundled(MnistClassifierTrainingOptions options, out IReadOnlyList<MnistClassifierEpoch> log,
        IProgress<TrainingProgress>? progress = null, IProgress<MnistClassifierEpoch>? epochs = null, CancellationToken cancellationToken = default)
    {
        using var train = Mnist.LoadBundled(MnistSplit.Train);
        using var test = Mnist.LoadBundled(MnistSplit.Test);
        var net = new MnistClassifier(new Generator(options.Seed).Split(1), Mnist.Classes, options.Dropout);
        log = Train(net, train.Images, train.Labels, test.Images, test.Labels, options, progress, epochs, cancellationToken);
        return net;
    }

    /// <summary>
    /// Trains <paramref name="net"/> in place on images [N, 1, 32, 32] in [-1, 1] with their labels, evaluating on the
    /// held-out set after each epoch; leaves the network in evaluation mode. Returns the per-epoch log.
    /// </summary>
    /// <exception cref="ArgumentException">The images are not [N, 1, 32, 32], or their count differs from the labels'.</exception>
    public static IReadOnlyList<MnistClassifierEpoch> Train(MnistClassifier net, Tensor trainImages, int[] trainLabels, Tensor testImages, int[] testLabels,
        MnistClassifierTrainingOptions options, IProgress<TrainingProgress>? progress = null, IProgress<MnistClassifierEpoch>? epochs = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(net);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        CheckImages(trainImages, trainLabels, nameof(trainImages));
        CheckImages(testImages, testLabels, nameof(testImages));
        int n = trainLabels.Length, plane = MnistClassifier.ImageSize * MnistClassifier.ImageSize;
        var pixels = trainImages.ToArray();
        var root = new Generator(options.Seed);
        var order = root.Split(2);
        var shifts = root.Split(3);
        net.DropoutGenerator = root.Split(4);
        var optimizer = new Adam(net.Parameters(), options.LearningRate);
        int stepsPerEpoch = (n + options.BatchSize - 1) / options.BatchSize;
        long totalSteps = (long)stepsPerEpoch * options.Epochs;
        var cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        var clock = Stopwatch.StartNew();
        var log = new List<MnistClassifierEpoch>();
        var batchPixels = new float[options.BatchSize * plane];
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            net.SetTraining(true);
            int[] permutation = Permutation(n, order);
            double lossSum = 0;
            long correct = 0;
            for (int start = 0; start < n; start += options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                int b = Math.Min(options.BatchSize, n - start);
                var labels = new int[b];
                int[] offsets = options.MaxShift > 0 ? shifts.Integers(2 * b, 2 * options.MaxShift + 1) : new int[2 * b];
                for (int k = 0; k < b; k++)
                {
                    int index = permutation[start + k];
                    labels[k] = trainLabels[index];
                    Shift(pixels.AsSpan(index * plane, plane), batchPixels.AsSpan(k * plane, plane),
                        offsets[2 * k] - options.MaxShift, offsets[2 * k + 1] - options.MaxShift);
                }
                optimizer.LearningRate = CosineLearningRate(options.LearningRate, optimizer.StepCount + 1, totalSteps);
                using (var scope = TensorScope.Begin())
                {
                    optimizer.ZeroGrad();
                    var x = Tensor.FromSpan<float>(batchPixels.AsSpan(0, b * plane), [b, 1, MnistClassifier.ImageSize, MnistClassifier.ImageSize],
                        Kernels.DType.Float32, trainImages.Device);
                    var logits = net.Forward(x);
                    var loss = Ops.CrossEntropy(logits, labels);
                    double value = loss.Item();
                    if (!double.IsFinite(value)) throw new TrainingDivergedException(optimizer.StepCount + 1, value);
                    lossSum += value * b;
                    correct += CountCorrect(logits.ToArray(), labels, net.Classes);
                    loss.Backward();
                }
                optimizer.Step();
                progress?.Report(new TrainingProgress(optimizer.StepCount, totalSteps, lossSum / (start + b),
                    optimizer.StepCount / Math.Max(1e-9, clock.Elapsed.TotalSeconds)));
            }
            double testAccuracy = Accuracy(net, testImages, testLabels);
            var row = new MnistClassifierEpoch(epoch, optimizer.StepCount, lossSum / n, (double)correct / n, testAccuracy, optimizer.LearningRate,
                (Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds, clock.Elapsed.TotalSeconds);
            log.Add(row);
            epochs?.Report(row);
        }
        net.SetTraining(false);
        net.DropoutGenerator = null;
        return log;
    }

    /// <summary>lr_t = lr (1 + cos(pi (t - 1) / T)) / 2 for step t of T (1-based): the peak at the first step, near 0 at the last.</summary>
    public static double CosineLearningRate(double peak, long step, long totalSteps) =>
        peak * 0.5 * (1 + Math.Cos(Math.PI * (step - 1) / Math.Max(1, totalSteps)));

    /// <summary>Fraction of <paramref name="images"/> that <paramref name="net"/> (in evaluation mode) assigns their label.</summary>
    public static double Accuracy(MnistClassifier net, Tensor images, int[] labels)
    {
        ArgumentNullException.ThrowIfNull(net);
        CheckImages(images, labels, nameof(images));
        net.SetTraining(false);
        long correct = 0;
        using var noGrad = Autograd.NoGrad();
        for (int start = 0; start < labels.Length; start += EvaluationBatch)
        {
            using var scope = TensorScope.Begin();
            int b = Math.Min(EvaluationBatch, labels.Length - start);
            var logits = net.Forward(Ops.Slice(images, 0, start, b)).ToArray();
            correct += CountCorrect(logits, labels.AsSpan(start, b), net.Classes);
        }
        return labels.Length == 0 ? 0 : (double)correct / labels.Length;
    }

    /// <summary>Writes the per-epoch log as CSV (<see cref="LogHeader"/>), atomically.</summary>
    public static void WriteLog(string path, IReadOnlyList<MnistClassifierEpoch> log)
    {
        ArgumentNullException.ThrowIfNull(log);
        SafeTensors.WriteAtomically(path, stream =>
        {
            using var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true);
            writer.WriteLine(LogHeader);
            foreach (var r in log)
                writer.WriteLine(string.Join(',', Invariant(r.Epoch), Invariant(r.Step), Invariant(r.TrainLoss, "F5"), Invariant(r.TrainAccuracy, "F4"),
                    Invariant(r.TestAccuracy, "F4"), Invariant(r.LearningRate, "G6"), Invariant(r.CpuSeconds, "F1"), Invariant(r.WallSeconds, "F1")));
        });
    }

    /// <summary>Index of the largest of each row of <paramref name="logits"/> (rows of <paramref name="classes"/> values); the first on ties.</summary>
    public static int[] ArgMax(ReadOnlySpan<float> logits, int classes)
    {
        if (classes < 1 || logits.Length % classes != 0)
            throw new ArgumentException($"ArgMax: {logits.Length} values are not rows of {classes}", nameof(logits));
        var result = new int[logits.Length / classes];
        for (int i = 0; i < result.Length; i++)
        {
            var row = logits.Slice(i * classes, classes);
            int best = 0;
            for (int k = 1; k < classes; k++)
                if (row[k] > row[best]) best = k;
            result[i] = best;
        }
        return result;
    }

    private static long CountCorrect(ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, int classes)
    {
        var predicted = ArgMax(logits, classes);
        long correct = 0;
        for (int i = 0; i < predicted.Length; i++)
            if (predicted[i] == labels[i]) correct++;
        return correct;
    }

    // Fisher-Yates driven by the generator: a uniformly random order of 0..n-1.
    private static int[] Permutation(int n, Generator g)
    {
        var p = Enumerable.Range(0, n).ToArray();
        var u = g.UniformHost(n);
        for (int i = n - 1; i > 0; i--)
        {
            int j = Math.Min(i, (int)(u[i] * (i + 1)));
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }

    // destination(y, x) = source(y - dy, x - dx), background (-1) where that falls outside the image.
    private static void Shift(ReadOnlySpan<float> source, Span<float> destination, int dx, int dy)
    {
        const int s = MnistClassifier.ImageSize;
        destination.Fill(-1f);
        int x0 = Math.Max(0, dx), x1 = Math.Min(s, s + dx);
        for (int y = Math.Max(0, dy); y < Math.Min(s, s + dy); y++)
            source.Slice((y - dy) * s + x0 - dx, x1 - x0).CopyTo(destination.Slice(y * s + x0, x1 - x0));
    }

    private static void CheckImages(Tensor images, int[] labels, string name)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        const int s = MnistClassifier.ImageSize;
        if (images.Rank != 4 || images.Shape[1] != 1 || images.Shape[2] != s || images.Shape[3] != s)
            throw new ArgumentException($"MnistClassifierTraining: {name} must be [N, 1, {s}, {s}] (padded MNIST), got {Engine.ShapeUtil.Format(images.Shape)}", name);
        if (images.Shape[0] != labels.Length)
            throw new ArgumentException($"MnistClassifierTraining: {name} holds {images.Shape[0]} images for {labels.Length} labels", name);
    }

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Invariant(double value, string format) => value.ToString(format, CultureInfo.InvariantCulture);
}
