using System.Globalization;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Networks;
using DiffusionCore.Pipelines;
using DiffusionCore.Training.Data;
using DiffusionCore.Training.Evaluation;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>
/// The MNIST quality score: the bundled classifier is right on the bundled test split, its weights file round-trips
/// and is checked when read, training is reproducible from its seed, and the evaluator's scores behave on real
/// images (the test split scores its own accuracy and a zero distance; class-balanced training images score exactly
/// the floor; noise scores far above it), in CSV and in a labelled grid.
/// </summary>
[TestFixture]
[NonParallelizable] // Builds the evaluator (1,000 test images through the classifier) once for the fixture.
public sealed class MnistEvaluatorTests
{
    private MnistEvaluator _evaluator = null!;
    private string _root = "";

    [OneTimeSetUp]
    public void CreateEvaluator()
    {
        _evaluator = MnistEvaluator.CreateBundled();
        _root = Path.Combine(Path.GetTempPath(), "diffusioncore-eval-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_root);
    }

    [OneTimeTearDown]
    public void Dispose()
    {
        _evaluator.Dispose();
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Test]
    public void BundledClassifierIsRightOnTheTestSplit()
    {
        // Issue 16: at least 98% on the 1,000 bundled test images, computed here from the shipped weights.
        using var test = Mnist.LoadBundled(MnistSplit.Test);
        var net = MnistClassifierWeights.LoadBundled();
        double accuracy = MnistClassifierTraining.Accuracy(net, test.Images, test.Labels);
        TestContext.Out.WriteLine($"bundled classifier: {100 * accuracy:F1}% on {test.Count} test images, {net.ParameterCount:N0} parameters");
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.98));
        // The accuracy the training run recorded in the weights' metadata is reproduced exactly (k / 1000, printed to 4 places).
        Assert.That(MnistClassifierWeights.BundledMetadata()["test_accuracy"], Is.EqualTo(accuracy.ToString("F4", CultureInfo.InvariantCulture)));
        Assert.That(_evaluator.TestAccuracy, Is.EqualTo(accuracy));
    }

    [Test]
    public void ForwardIsTheHeadOfTheFeatures()
    {
        using var scope = TensorScope.Begin();
        using var noGrad = Autograd.NoGrad();
        using var test = Mnist.LoadBundled(MnistSplit.Test);
        var net = MnistClassifierWeights.LoadBundled();
        var x = Ops.Slice(test.Images, 0, 0, 7);
        var features = net.Features(x);
        Assert.That(features.Shape, Is.EqualTo(new[] { 7, MnistClassifier.FeatureWidth }));
        Assert.That(features.ToArray().All(v => v >= 0), "the features are taken after the ReLU");
        // The same ops in the same order (evaluation mode: dropout is the identity), so the logits are identical.
        Assert.That(net.Forward(x).ToArray(), Is.EqualTo(net.Logits(features).ToArray()));
    }

    [Test]
    public void WeightsRoundTripAndBadFilesAreNamed()
    {
        var net = new MnistClassifier(new Generator(3));
        string path = Path.Combine(_root, "net.safetensors");
        MnistClassifierWeights.Save(path, net, new Dictionary<string, string> { ["note"] = "test" });
        var loaded = MnistClassifierWeights.Load(path);
        Assert.That(loaded.Training, Is.False, "loaded for evaluation");
        foreach (var ((name, a), (_, b)) in net.NamedParameters().Zip(loaded.NamedParameters()))
            Assert.That(b.ToArray(), Is.EqualTo(a.ToArray()), name);
        Assert.That(SafeTensors.Load(path).Metadata["note"], Is.EqualTo("test"));

        var file = SafeTensors.Load(path);
        string missing = Path.Combine(_root, "missing.safetensors");
        SafeTensors.Save(missing, file.Names.Where(n => n != "fc.bias").Select(n => new KeyValuePair<string, SafeTensor>(n, file[n])), file.Metadata);
        Assert.That(Assert.Throws<InvalidDataException>(() => MnistClassifierWeights.Load(missing))!.Message,
            Does.Contain(missing).And.Contain("tensor 'fc.bias' is missing"));
        string misshapen = Path.Combine(_root, "misshapen.safetensors");
        SafeTensors.Save(misshapen, file.Names.Select(n => new KeyValuePair<string, SafeTensor>(n, n == "head.bias" ? SafeTensor.FromFloats([1f, 2f], 2) : file[n])), file.Metadata);
        Assert.That(Assert.Throws<InvalidDataException>(() => MnistClassifierWeights.Load(misshapen))!.Message, Does.Contain("'head.bias' has shape [2], the network's [10]"));
        string foreign = Path.Combine(_root, "foreign.safetensors");
        SafeTensors.Save(foreign, [new("w", SafeTensor.FromFloats([1f], 1))]);
        Assert.That(Assert.Throws<InvalidDataException>(() => MnistClassifierWeights.Load(foreign))!.Message, Does.Contain("not MNIST-classifier weights"));
    }

    [Test]
    public void TrainingIsReproducibleFromItsSeed()
    {
        // 3 steps of batch 32 on 96 training images (a smoke run of the recipe, not a trained model): the same seed gives
        // the same weights bit for bit (batch order, shifts, dropout masks and initial weights all come from the seed),
        // another seed other weights.
        using var train = Mnist.LoadBundled(MnistSplit.Train);
        using var scope = TensorScope.Begin();
        var images = Ops.Slice(train.Images, 0, 0, 96);
        int[] labels = train.Labels[..96];
        float[][] Run(ulong seed, out IReadOnlyList<MnistClassifierEpoch> log)
        {
            var options = new MnistClassifierTrainingOptions { Epochs = 1, BatchSize = 32, Seed = seed };
            var net = new MnistClassifier(new Generator(seed).Split(1), dropout: options.Dropout);
            log = MnistClassifierTraining.Train(net, images, labels, images, labels, options);
            return net.Parameters().Select(p => p.ToArray()).ToArray();
        }
        var first = Run(5, out var log);
        var again = Run(5, out _);
        var other = Run(6, out _);
        Assert.That(log, Has.Count.EqualTo(1));
        Assert.That(log[0].Step, Is.EqualTo(3));
        Assert.That(double.IsFinite(log[0].TrainLoss) && log[0].TestAccuracy is >= 0 and <= 1, $"{log[0]}");
        for (int i = 0; i < first.Length; i++) Assert.That(again[i], Is.EqualTo(first[i]), $"parameter {i}");
        Assert.That(other.Zip(first).Any(p => !p.First.SequenceEqual(p.Second)), "another seed must give other weights");

        string path = Path.Combine(_root, "log.csv");
        MnistClassifierTraining.WriteLog(path, log);
        var lines = File.ReadAllLines(path);
        Assert.That(lines[0], Is.EqualTo(MnistClassifierTraining.LogHeader));
        Assert.That(lines[1], Does.StartWith("1,3,"));
    }

    [Test]
    public void CosineLearningRateRunsFromThePeakToNearZero()
    {
        Assert.That(MnistClassifierTraining.CosineLearningRate(2e-3, 1, 100), Is.EqualTo(2e-3));
        Assert.That(MnistClassifierTraining.CosineLearningRate(2e-3, 51, 100), Is.EqualTo(1e-3).Within(1e-15));
        Assert.That(MnistClassifierTraining.CosineLearningRate(2e-3, 100, 100), Is.LessThan(1e-6));
    }

    [Test]
    public void TheTestSplitScoresItsOwnAccuracyAndNoDistance()
    {
        using var test = Mnist.LoadBundled(MnistSplit.Test);
        var result = _evaluator.Evaluate(test.Images, test.Labels);
        Assert.That(result.Accuracy, Is.EqualTo(_evaluator.TestAccuracy));
        // The same features as the reference: the distance is 0 up to the eigen-solver's rounding (~1e-12 of the trace).
        Assert.That(result.FrechetDistance, Is.LessThan(1e-6));
        Assert.That(result.RequestedCounts!.Sum(), Is.EqualTo(test.Count));
        Assert.That(result.PredictedCounts.Sum(), Is.EqualTo(test.Count));
        Assert.That(result.ClassAccuracy!.All(a => a >= 0.9), string.Join(", ", result.ClassAccuracy!));
    }

    [Test]
    public void ClassBalancedTrainingImagesScoreTheFloorAndNoiseDoesNot()
    {
        // The floor is defined as the score of `count` class-balanced training images (classes in turn, each class's
        // images in file order), so evaluating exactly those images must reproduce it to the last bit.
        const int count = 200;
        using var train = Mnist.LoadBundled(MnistSplit.Train);
        var perClass = Enumerable.Range(0, Mnist.Classes).Select(c => Enumerable.Range(0, train.Count).Where(i => train.Labels[i] == c).ToArray()).ToArray();
        int[] indices = Enumerable.Range(0, count).Select(i => perClass[i % Mnist.Classes][i / Mnist.Classes]).ToArray();
        var all = train.Images.ToArray();
        int plane = Mnist.PaddedSize * Mnist.PaddedSize;
        var pixels = indices.SelectMany(i => all.AsSpan(i * plane, plane).ToArray()).ToArray();
        using var images = Tensor.FromArray(pixels, count, 1, Mnist.PaddedSize, Mnist.PaddedSize);
        var real = _evaluator.Evaluate(images, indices.Select(i => train.Labels[i]).ToArray());
        TestContext.Out.WriteLine(string.Join(Environment.NewLine, real.Describe()));
        Assert.That(real.FrechetDistance, Is.EqualTo(real.FrechetFloor));
        Assert.That(real.FloorCount, Is.EqualTo(count));
        Assert.That(real.Accuracy, Is.GreaterThan(0.97), "training images, which the classifier has fitted");

        // Uniform noise in [-1, 1], asked to be digits: about chance accuracy and a distance far above the floor.
        var noise = new Generator(9).UniformHost(count * plane).Select(u => 2 * u - 1).ToArray();
        using var noiseImages = Tensor.FromArray(noise, count, 1, Mnist.PaddedSize, Mnist.PaddedSize);
        var bad = _evaluator.Evaluate(noiseImages, Enumerable.Range(0, count).Select(i => i % Mnist.Classes).ToArray());
        TestContext.Out.WriteLine(string.Join(Environment.NewLine, bad.Describe()));
        Assert.That(bad.Accuracy, Is.LessThan(0.3));
        Assert.That(bad.FrechetDistance, Is.GreaterThan(10 * bad.FrechetFloor));
        // An unconditional evaluation scores the distance alone.
        var unconditional = _evaluator.Evaluate(noiseImages, null);
        Assert.That(unconditional.Accuracy, Is.Null);
        Assert.That(unconditional.FrechetDistance, Is.EqualTo(bad.FrechetDistance));
    }

    [Test]
    public void BadSamplesAreNamed()
    {
        using var nan = Tensor.Full([4, 1, 32, 32], double.NaN);
        Assert.That(Assert.Throws<ArgumentException>(() => _evaluator.Evaluate(nan, null))!.Message, Does.Contain("NaN or infinite").And.Contain("diverged"));
        using var wrong = Tensor.Zeros([4, 1, 28, 28]);
        Assert.That(Assert.Throws<ArgumentException>(() => _evaluator.Evaluate(wrong, null))!.Message, Does.Contain("got [4,1,28,28]"));
        using var ok = Tensor.Zeros([4, 1, 32, 32]);
        Assert.That(Assert.Throws<ArgumentException>(() => _evaluator.Evaluate(ok, [0, 1]))!.Message, Does.Contain("2 labels for 4 samples"));
        Assert.That(Assert.Throws<ArgumentException>(() => _evaluator.Evaluate(ok, [0, 1, 2, 10]))!.Message, Does.Contain("label 10 at 3"));
    }

    [Test]
    public void CsvRowsAppendUnderOneHeader()
    {
        using var test = Mnist.LoadBundled(MnistSplit.Test);
        using var scope = TensorScope.Begin();
        var result = _evaluator.Evaluate(Ops.Slice(test.Images, 0, 0, 20), test.Labels[..20]);
        string path = Path.Combine(_root, "scores.csv");
        KeyValuePair<string, string>[] context = [new("sampler", "ddim"), new("note", "a, \"quoted\" note")];
        result.AppendCsv(path, context);
        result.AppendCsv(path, context);
        var lines = File.ReadAllLines(path);
        Assert.That(lines, Has.Length.EqualTo(3));
        Assert.That(lines[0], Is.EqualTo("sampler,note,count,accuracy," + string.Join(',', Enumerable.Range(0, 10).Select(c => $"accuracy_{c}")) +
            ",frechet_distance,frechet_floor,floor_count,test_count"));
        Assert.That(lines[1], Does.StartWith("ddim,\"a, \"\"quoted\"\" note\",20,"));
        Assert.That(lines[2], Is.EqualTo(lines[1]));
        Assert.That(Assert.Throws<InvalidDataException>(() => result.AppendCsv(path, [new("other", "x")]))!.Message, Does.Contain("header"));
    }

    [Test]
    public void LabelledGridFramesTheMisses()
    {
        // Four 2 x 2 images in 2 classes, 2 per row; image 1 (row 0, column 1) was classified as 1: framed in red.
        var images = new float[4 * 4];
        var canvas = LabelledGrid.Render(images, 2, 2, [0, 0, 1, 1], [0, 1, 1, 1], classes: 2, perRow: 2, scale: 4);
        var plain = LabelledGrid.Render(images, 2, 2, [0, 0, 1, 1], null, classes: 2, perRow: 2, scale: 4);
        Assert.That(canvas.Width, Is.EqualTo(plain.Width));
        var differing = new List<(int X, int Y)>();
        for (int y = 0; y < canvas.Height; y++)
            for (int x = 0; x < canvas.Width; x++)
                if (canvas.GetPixel(x, y) != plain.GetPixel(x, y)) differing.Add((x, y));
        Assert.That(differing, Is.Not.Empty);
        // Every marked pixel lies in the second cell of the first row (or its 1-pixel frame): columns right of the
        // first cell, rows above the second.
        int cell = 2 * 4, margin = canvas.Width - (2 * (cell + 2) + 2);
        Assert.That(differing.All(p => p.X >= margin + 2 + cell && p.Y <= 2 + cell), string.Join(" ", differing.Take(10)));
    }
}
