using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using NUnit.Framework;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// The safetensors reader and writer: round trips, the reference implementation's own known answer, a file built
/// by hand from the format description, our output read by an independent parser, atomic replacement, and a
/// clear error for every kind of corrupt file.
/// </summary>
[TestFixture]
public sealed class SafeTensorsTests
{
    private string directory = "";

    [SetUp]
    public void CreateDirectory()
    {
        directory = Path.Combine(Path.GetTempPath(), "diffusioncore-safetensors-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
    }

    [TearDown]
    public void DeleteDirectory()
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    private static KeyValuePair<string, SafeTensor> Entry(string name, SafeTensor t) => new(name, t);

    // Values chosen to exercise every bit pattern class: negative zero, subnormal, extremes, NaN and infinities.
    private static readonly float[] AwkwardFloats = [1.5f, -0f, float.Epsilon, float.MaxValue, float.NaN, float.NegativeInfinity];

    [Test]
    public void EveryDtypeRoundTripsBitForBit()
    {
        string path = Path.Combine(directory, "all.safetensors");
        double[] doubles = [Math.PI, -0.0, double.Epsilon, double.PositiveInfinity];
        long[] longs = [long.MinValue, -1, 0, long.MaxValue];
        ulong[] ulongs = [ulong.MaxValue, 12345678901234567890UL];
        byte[] bytes = [0, 7, 255];
        var metadata = new Dictionary<string, string> { ["model"] = "mlp-2d", ["note"] = "ünïcödé, \"quotes\" and +" };
        SafeTensors.Save(path,
        [
            Entry("floats", SafeTensor.FromFloats(AwkwardFloats, 2, 3)),
            Entry("doubles", SafeTensor.FromDoubles(doubles, 4)),
            Entry("longs", SafeTensor.FromInt64(longs, 2, 2)),
            Entry("step", SafeTensor.FromInt64([42])),
            Entry("ulongs", SafeTensor.FromUInt64(ulongs, 2)),
            Entry("bytes", SafeTensor.FromBytes(bytes, 3)),
            Entry("empty", SafeTensor.FromFloats([], 0, 5)),
        ], metadata);

        var file = SafeTensors.Load(path);
        Assert.That(file.Tensors.Keys, Is.EquivalentTo(new[] { "floats", "doubles", "longs", "step", "ulongs", "bytes", "empty" }));
        Assert.That(file.Metadata, Is.EqualTo(metadata));
        Assert.That(file["floats"].DType, Is.EqualTo(SafeTensorsDType.F32));
        Assert.That(file["floats"].Shape, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(file["floats"].ToFloatArray().Select(BitConverter.SingleToInt32Bits), Is.EqualTo(AwkwardFloats.Select(BitConverter.SingleToInt32Bits)));
        Assert.That(file["doubles"].ToDoubleArray().Select(BitConverter.DoubleToInt64Bits), Is.EqualTo(doubles.Select(BitConverter.DoubleToInt64Bits)));
        Assert.That(file["longs"].ToInt64Array(), Is.EqualTo(longs));
        Assert.That(file["longs"].Shape, Is.EqualTo(new[] { 2, 2 }));
        Assert.That(file["step"].Shape, Is.Empty, "a scalar has shape []");
        Assert.That(file["step"].ToInt64Array(), Is.EqualTo(new long[] { 42 }));
        Assert.That(file["ulongs"].ToUInt64Array(), Is.EqualTo(ulongs));
        Assert.That(file["bytes"].ToByteArray(), Is.EqualTo(bytes));
        Assert.That(file["empty"].Shape, Is.EqualTo(new[] { 0, 5 }));
        Assert.That(file["empty"].Count, Is.Zero);
        // The reference layout: widest dtype first (U64, I64, F64, F32, U8), names in ordinal order within a dtype.
        Assert.That(file.Names, Is.EqualTo(new[] { "ulongs", "longs", "step", "doubles", "empty", "floats", "bytes" }));
    }

    [Test]
    public void TensorsRoundTripThroughTheFile()
    {
        string path = Path.Combine(directory, "tensors.safetensors");
        var f32 = Tensor.FromArray([1f, -2f, 3.25f, 1e-30f, 0f, 7f], 3, 2);
        var f64 = Tensor.FromArray([1.0 / 3.0, -1e300], 2);
        SafeTensors.Save(path, [Entry("w", SafeTensor.FromTensor(f32)), Entry("d", SafeTensor.FromTensor(f64))]);
        var file = SafeTensors.Load(path);
        var w = file["w"].ToTensor();
        var d = file["d"].ToTensor();
        Assert.That(w.DType, Is.EqualTo(DiffusionCore.Kernels.DType.Float32));
        Assert.That(w.Shape, Is.EqualTo(new[] { 3, 2 }));
        Assert.That(w.ToArray(), Is.EqualTo(f32.ToArray()));
        Assert.That(d.DType, Is.EqualTo(DiffusionCore.Kernels.DType.Float64));
        Assert.That(d.ToDoubleArray(), Is.EqualTo(f64.ToDoubleArray()));
        Assert.That(file.Metadata, Is.Empty);
    }

    [Test]
    public void WriterMatchesTheReferenceImplementationsKnownAnswer()
    {
        // huggingface/safetensors, bindings/python/tests/test_simple.py, test_serialization: a zero int32 [2, 2]
        // named "test" serializes to a header of 60 bytes padded with 4 spaces to 64 ('@'), then 16 zero bytes.
        var bytes = Serialize([Entry("test", new SafeTensor(SafeTensorsDType.I32, [2, 2], new byte[16]))]);
        byte[] expected =
        [
            .. "@\0\0\0\0\0\0\0"u8,
            .. """{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}    """u8,
            .. new byte[16],
        ];
        Assert.That(bytes, Is.EqualTo(expected));
    }

    [Test]
    public void AHandBuiltFileParses()
    {
        // Built from the format description alone: N = 8-byte little-endian header size, N bytes of JSON (here not
        // a multiple of 8 and ending in spaces, both allowed), then the data, here an F32 [2] and an I64 scalar.
        string header = """{"__metadata__":{"framework":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}   """;
        var data = new byte[16];
        BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(0), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(4), -2f);
        BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(8), -42);
        var file = SafeTensors.Read(new MemoryStream(Build(header, data)), "hand-built");
        Assert.That(file.Metadata, Is.EqualTo(new Dictionary<string, string> { ["framework"] = "pt" }));
        Assert.That(file["a"].DType, Is.EqualTo(SafeTensorsDType.F32));
        Assert.That(file["a"].Shape, Is.EqualTo(new[] { 2 }));
        Assert.That(file["a"].ToFloatArray(), Is.EqualTo(new[] { 1.5f, -2f }));
        Assert.That(file["b"].Shape, Is.Empty);
        Assert.That(file["b"].ToInt64Array(), Is.EqualTo(new long[] { -42 }));
    }

    [Test]
    public void OurOutputReadsWithAnIndependentParser()
    {
        float[] b = [1f, 2f, 3f, 4f], a = [-0.5f, 0.25f, 8f];
        long[] c = [10, -20];
        var bytes = Serialize(
            [Entry("b", SafeTensor.FromFloats(b, 2, 2)), Entry("a", SafeTensor.FromFloats(a, 3)), Entry("c", SafeTensor.FromInt64(c, 2))],
            new Dictionary<string, string> { ["k"] = "v" });

        // The format, read with nothing of ours: u64 LE header size, JSON header padded with spaces to a multiple of 8,
        // data_offsets relative to the end of the header, tiling the rest of the file.
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.That(n % 8, Is.Zero, "header padded to a multiple of 8");
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        string json = header.TrimEnd(' ');
        Assert.That(header.Length - json.Length, Is.LessThan(8), "at most 7 spaces of padding");
        Assert.That(json, Does.StartWith("{").And.EndWith("}"));
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("__metadata__").GetProperty("k").GetString(), Is.EqualTo("v"));
        var dataStart = 8 + (int)n;
        long previousEnd = 0;
        // The reference order: the 8-byte I64 first, then the F32 tensors by name.
        foreach (var (name, dtype, shape) in new[] { ("c", "I64", new[] { 2 }), ("a", "F32", new[] { 3 }), ("b", "F32", new[] { 2, 2 }) })
        {
            var info = root.GetProperty(name);
            Assert.That(info.GetProperty("dtype").GetString(), Is.EqualTo(dtype), name);
            Assert.That(info.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(shape), name);
            var offsets = info.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.That(offsets[0], Is.EqualTo(previousEnd), $"{name} starts where the previous tensor ended");
            previousEnd = offsets[1];
        }
        Assert.That(root.EnumerateObject().Count(), Is.EqualTo(4), "three tensors and the metadata");
        Assert.That(dataStart + previousEnd, Is.EqualTo(bytes.Length), "the tensors end the file");

        long[] Longs(string name) => Slice(root, name, bytes, dataStart, 8).Select(s => BinaryPrimitives.ReadInt64LittleEndian(s)).ToArray();
        float[] Floats(string name) => Slice(root, name, bytes, dataStart, 4).Select(s => BinaryPrimitives.ReadSingleLittleEndian(s)).ToArray();
        Assert.That(Longs("c"), Is.EqualTo(c));
        Assert.That(Floats("a"), Is.EqualTo(a));
        Assert.That(Floats("b"), Is.EqualTo(b));
    }

    private static IEnumerable<byte[]> Slice(JsonElement root, string name, byte[] bytes, int dataStart, int size)
    {
        var o = root.GetProperty(name).GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        for (int i = o[0]; i < o[1]; i += size) yield return bytes[(dataStart + i)..(dataStart + i + size)];
    }

    [Test]
    public void AFailedSaveLeavesThePreviousFileAndNoTemporaryFile()
    {
        string path = Path.Combine(directory, "model.safetensors");
        SafeTensors.Save(path, [Entry("w", SafeTensor.FromFloats([1f, 2f], 2))]);
        byte[] before = File.ReadAllBytes(path);

        // A writer dying after the header and part of the data (a full disk, a crash in the serializer).
        var failure = Assert.Throws<IOException>(() => SafeTensors.WriteAtomically(path, stream =>
        {
            SafeTensors.Write(new FailingStream(stream, failAfterBytes: 100),
                [Entry("w", SafeTensor.FromFloats(new float[1000], 1000))]);
        }));
        Assert.That(failure!.Message, Does.Contain("simulated"));
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before), "the old file is untouched");
        Assert.That(SafeTensors.Load(path)["w"].ToFloatArray(), Is.EqualTo(new[] { 1f, 2f }));
        Assert.That(Directory.GetFiles(directory).Select(Path.GetFileName), Is.EqualTo(new[] { "model.safetensors" }), "no temporary file is left");
    }

    [Test]
    public void ASaveReplacesTheFileAndCreatesTheDirectory()
    {
        string path = Path.Combine(directory, "sub", "dir", "x.safetensors");
        SafeTensors.Save(path, [Entry("w", SafeTensor.FromFloats([1f], 1))]);
        SafeTensors.Save(path, [Entry("w", SafeTensor.FromFloats([2f, 3f], 2))]);
        Assert.That(SafeTensors.Load(path)["w"].ToFloatArray(), Is.EqualTo(new[] { 2f, 3f }));
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!), Has.Length.EqualTo(1));
    }

    [Test]
    public void TruncatingAValidFileAnywhereGivesAClearError()
    {
        var valid = Serialize([Entry("w", SafeTensor.FromFloats([1f, 2f, 3f], 3))], new Dictionary<string, string> { ["a"] = "b" });
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        foreach (int length in new[] { 0, 5, 8, 20, headerEnd, valid.Length - 1 })
        {
            string path = Path.Combine(directory, $"cut{length}.safetensors");
            File.WriteAllBytes(path, valid[..length]);
            var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Load(path), $"cut at {length}");
            Assert.That(e!.Message, Does.Contain(path), "the message names the file");
            string expected = length < 8 ? "truncated" : length < headerEnd ? "beyond the file" : "beyond the data section";
            Assert.That(e.Message, Does.Contain(expected), $"cut at {length}");
        }
    }

    [Test]
    public void AMissingFileGivesAClearError()
    {
        string path = Path.Combine(directory, "absent.safetensors");
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Load(path));
        Assert.That(e!.Message, Does.Contain(path).And.Contain("does not exist"));
    }

    // (header JSON, data bytes, a phrase the message must contain).
    private static IEnumerable<TestCaseData> CorruptHeaders()
    {
        static TestCaseData Case(string name, string header, int data, string phrase) =>
            new TestCaseData(header, data, phrase).SetName("Corrupt_" + name);
        const string A = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
        yield return Case("BadJson", "{\"a\":{\"dtype\":", 0, "not valid JSON");
        yield return Case("NotAnObject", "[1,2]", 0, "not an object");
        yield return Case("UnknownDtype", "{\"a\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'F99'");
        yield return Case("NumericDtype", "{\"a\":{\"dtype\":\"11\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype '11'");
        yield return Case("LowercaseDtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'f32'");
        yield return Case("MissingDtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing string 'dtype'");
        yield return Case("MissingOffsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "missing 'data_offsets'");
        yield return Case("NegativeExtent", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape extent -2");
        yield return Case("ShapeSizeMismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes but data_offsets [0, 8] span 8");
        yield return Case("EndBeforeBegin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "end before they begin");
        yield return Case("OffsetsOutOfRange", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "go beyond the data section (8 bytes)");
        yield return Case("Overlap", "{" + A + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]");
        yield return Case("Gap", "{" + A + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "data bytes [8, 12) between tensors 'a' and 'b' belong to no tensor");
        yield return Case("LeadingGap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "data bytes [0, 4) before tensor 'a'");
        yield return Case("TrailingBytes", "{" + A + "}", 12, "cover 8 bytes of data but the file holds 12");
        yield return Case("DuplicateName", "{" + A + "," + A + "}", 8, "names 'a' twice");
        yield return Case("MetadataNotString", "{\"__metadata__\":{\"x\":3}," + A + "}", 8, "metadata 'x' is a JSON Number");
        yield return Case("UnexpectedField", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8, "unexpected header field 'extra'");
    }

    [TestCaseSource(nameof(CorruptHeaders))]
    public void ACorruptHeaderGivesAClearError(string header, int dataBytes, string phrase)
    {
        string path = Path.Combine(directory, "corrupt.safetensors");
        File.WriteAllBytes(path, Build(header, new byte[dataBytes]));
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Load(path));
        Assert.That(e!.Message, Does.Contain(path), "the message names the file");
        Assert.That(e.Message, Does.Contain(phrase));
        Assert.That(e.FilePath, Is.EqualTo(path));
    }

    [Test]
    public void AHeaderLengthBeyondTheFileOrTheLimitGivesAClearError()
    {
        foreach (ulong n in new[] { 1000UL, ulong.MaxValue, (ulong)SafeTensors.MaxHeaderSize + 1 })
        {
            var bytes = new byte[64];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, n);
            var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(new MemoryStream(bytes), "lengths"));
            Assert.That(e!.Message, Does.Contain($"header length {n} goes beyond the file (64 bytes"));
        }
        // A header length within the file but above the reference implementation's 100 MB cap is refused before allocating.
        var big = new FakeLengthStream(SafeTensors.MaxHeaderSize + 100);
        var tooBig = Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(big, "big"));
        Assert.That(tooBig!.Message, Does.Contain("exceeds the limit"));
    }

    [Test]
    public void InvalidUtf8InTheHeaderGivesAClearError()
    {
        byte[] header = [(byte)'{', 0xFF, 0xFE, (byte)'}', .. "    "u8];
        var bytes = new byte[8 + header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(new MemoryStream(bytes), "utf8"));
        Assert.That(e!.Message, Does.Contain("not valid UTF-8"));
    }

    [Test]
    public void TheWriterRefusesDuplicateAndReservedNames()
    {
        var t = SafeTensor.FromFloats([1f], 1);
        Assert.Throws<ArgumentException>(() => Serialize([Entry("x", t), Entry("x", t)]));
        Assert.Throws<ArgumentException>(() => Serialize([Entry(SafeTensors.MetadataKey, t)]));
        Assert.Throws<ArgumentException>(() => new SafeTensor(SafeTensorsDType.F32, [3], new byte[8]));
    }

    private static byte[] Serialize(IEnumerable<KeyValuePair<string, SafeTensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var stream = new MemoryStream();
        SafeTensors.Write(stream, tensors, metadata);
        return stream.ToArray();
    }

    private static byte[] Build(string header, byte[] data)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + json.Length);
        return bytes;
    }

    /// <summary>A seekable stream that claims <c>length</c> bytes and whose first 8 bytes give a header length of length - 8.</summary>
    private sealed class FakeLengthStream(long length) : Stream
    {
        private long _position;

        public override int Read(byte[] buffer, int offset, int count)
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)(length - 8));
            int n = (int)Math.Min(count, length - _position);
            for (int i = 0; i < n; i++) buffer[offset + i] = _position + i < 8 ? prefix[(int)(_position + i)] : (byte)' ';
            _position += n;
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => true;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => _position = value; }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}

/// <summary>Passes writes through until <c>failAfterBytes</c> bytes, then throws, as a full disk or a dying process would.</summary>
internal sealed class FailingStream(Stream inner, long failAfterBytes) : Stream
{
    private long _written;

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        int allowed = (int)Math.Min(buffer.Length, failAfterBytes - _written);
        inner.Write(buffer[..allowed]);
        _written += allowed;
        if (allowed < buffer.Length) throw new IOException($"simulated write failure after {_written} bytes");
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => _written;
    public override long Position { get => _written; set => throw new NotSupportedException(); }
    public override void Flush() => inner.Flush();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
