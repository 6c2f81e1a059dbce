using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using KernelDType = DiffusionCore.Kernels.DType;

namespace DiffusionCore.Engine.Serialization;

/// <summary>
/// Element types of the safetensors format, named as in its header, in the order of the reference
/// implementation's <c>Dtype</c> enum (huggingface/safetensors, safetensors/src/tensor.rs); the writer
/// sorts tensors by this order, largest first, as the reference does, so every tensor stays aligned.
/// </summary>
public enum SafeTensorsDType
{
    /// <summary>Boolean, one byte.</summary>
    BOOL,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>8-bit float, 5 exponent bits and 2 mantissa bits.</summary>
    F8_E5M2,
    /// <summary>8-bit float, 4 exponent bits and 3 mantissa bits.</summary>
    F8_E4M3,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE half precision.</summary>
    F16,
    /// <summary>bfloat16.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE single precision.</summary>
    F32,
    /// <summary>IEEE double precision.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>
/// Raised when a safetensors file cannot be read or written: the message names the file and what is wrong
/// (truncated, header length beyond the file, bad JSON, unknown dtype, offsets out of range, overlapping or
/// not covering the data, a shape that does not match its byte count).
/// </summary>
public sealed class SafeTensorsException : IOException
{
    /// <summary>Creates the exception for <paramref name="source"/> (a path or a stream's description).</summary>
    public SafeTensorsException(string source, string problem, Exception? inner = null)
        : base($"safetensors file '{source}': {problem}", inner)
    {
        FilePath = source;
        Problem = problem;
    }

    /// <summary>The file (or stream description) at fault.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it, without the file name.</summary>
    public string Problem { get; }
}

/// <summary>
/// One tensor of a safetensors file: its dtype, shape and raw little-endian bytes. Converts to and from
/// <see cref="Tensor"/> (F32, F64) and host arrays (F32, F64, I64, U64, U8).
/// </summary>
public sealed class SafeTensor
{
    /// <summary>Wraps raw little-endian <paramref name="data"/>; its length must be the shape's element count times the element size.</summary>
    public SafeTensor(SafeTensorsDType dtype, int[] shape, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(data);
        if (!Enum.IsDefined(dtype)) throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype");
        foreach (int d in shape)
            if (d < 0) throw new ArgumentException($"SafeTensor: negative extent in shape {ShapeUtil.Format(shape)}", nameof(shape));
        long expected = ShapeUtil.Count(shape) * SafeTensors.ElementSize(dtype);
        if (data.LongLength != expected)
            throw new ArgumentException($"SafeTensor: {data.LongLength} bytes do not hold {dtype} shape {ShapeUtil.Format(shape)} ({expected} bytes)", nameof(data));
        DType = dtype;
        Shape = (int[])shape.Clone();
        Data = data;
    }

    /// <summary>Element type.</summary>
    public SafeTensorsDType DType { get; }

    /// <summary>Extent of each axis (empty for a scalar). Do not modify the returned array.</summary>
    public int[] Shape { get; }

    /// <summary>The elements as raw little-endian bytes, row-major. Do not modify the returned array.</summary>
    public byte[] Data { get; }

    /// <summary>Number of elements.</summary>
    public long Count => ShapeUtil.Count(Shape);

    /// <summary>A host copy of <paramref name="tensor"/>'s elements, as F32 or F64 after its dtype.</summary>
    public static SafeTensor FromTensor(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.DType == KernelDType.Float32)
        {
            var data = new byte[tensor.Count * sizeof(float)];
            tensor.Device.Backend.Download(tensor.Buffer, MemoryMarshal.Cast<byte, float>(data.AsSpan()));
            return new SafeTensor(SafeTensorsDType.F32, tensor.Shape, ToLittleEndian(data, sizeof(float)));
        }
        else
        {
            var data = new byte[tensor.Count * sizeof(double)];
            tensor.Device.Backend.Download(tensor.Buffer, MemoryMarshal.Cast<byte, double>(data.AsSpan()));
            return new SafeTensor(SafeTensorsDType.F64, tensor.Shape, ToLittleEndian(data, sizeof(double)));
        }
    }

    /// <summary>An F32 tensor holding <paramref name="values"/>.</summary>
    public static SafeTensor FromFloats(ReadOnlySpan<float> values, params int[] shape) => FromValues(SafeTensorsDType.F32, values, shape);

    /// <summary>An F64 tensor holding <paramref name="values"/>.</summary>
    public static SafeTensor FromDoubles(ReadOnlySpan<double> values, params int[] shape) => FromValues(SafeTensorsDType.F64, values, shape);

    /// <summary>An I64 tensor holding <paramref name="values"/>.</summary>
    public static SafeTensor FromInt64(ReadOnlySpan<long> values, params int[] shape) => FromValues(SafeTensorsDType.I64, values, shape);

    /// <summary>A U64 tensor holding <paramref name="values"/>.</summary>
    public static SafeTensor FromUInt64(ReadOnlySpan<ulong> values, params int[] shape) => FromValues(SafeTensorsDType.U64, values, shape);

    /// <summary>A U8 tensor holding <paramref name="values"/>.</summary>
    public static SafeTensor FromBytes(ReadOnlySpan<byte> values, params int[] shape) => FromValues(SafeTensorsDType.U8, values, shape);

    /// <summary>The elements of an F32 tensor.</summary>
    public float[] ToFloatArray() => Values<float>(SafeTensorsDType.F32);

    /// <summary>The elements of an F64 tensor.</summary>
    public double[] ToDoubleArray() => Values<double>(SafeTensorsDType.F64);

    /// <summary>The elements of an I64 tensor.</summary>
    public long[] ToInt64Array() => Values<long>(SafeTensorsDType.I64);

    /// <summary>The elements of a U64 tensor.</summary>
    public ulong[] ToUInt64Array() => Values<ulong>(SafeTensorsDType.U64);

    /// <summary>The elements of a U8 tensor.</summary>
    public byte[] ToByteArray() => Values<byte>(SafeTensorsDType.U8);

    /// <summary>A new F32 or F64 <see cref="Tensor"/> (after this tensor's dtype) on <paramref name="device"/>.</summary>
    public Tensor ToTensor(Device? device = null) => DType switch
    {
        SafeTensorsDType.F32 => Tensor.FromSpan<float>(ToFloatArray(), Shape, KernelDType.Float32, device),
        SafeTensorsDType.F64 => Tensor.FromSpan<double>(ToDoubleArray(), Shape, KernelDType.Float64, device),
        _ => throw new InvalidOperationException($"SafeTensor: a {DType} tensor {ShapeUtil.Format(Shape)} has no Tensor dtype (F32 and F64 have)"),
    };

    private static SafeTensor FromValues<T>(SafeTensorsDType dtype, ReadOnlySpan<T> values, int[] shape) where T : unmanaged
    {
        if (ShapeUtil.Count(shape) != values.Length)
            throw new ArgumentException($"SafeTensor: {values.Length} values do not fill shape {ShapeUtil.Format(shape)}", nameof(values));
        return new SafeTensor(dtype, shape, ToLittleEndian(MemoryMarshal.AsBytes(values).ToArray(), Marshal.SizeOf<T>()));
    }

    private T[] Values<T>(SafeTensorsDType expected) where T : unmanaged
    {
        if (DType != expected) throw new InvalidOperationException($"SafeTensor: tensor {ShapeUtil.Format(Shape)} is {DType}, not {expected}");
        var bytes = ToLittleEndian((byte[])Data.Clone(), Marshal.SizeOf<T>());
        return MemoryMarshal.Cast<byte, T>(bytes).ToArray();
    }

    // The format is little-endian; on a big-endian host each element's bytes are swapped (the swap is its own inverse).
    private static byte[] ToLittleEndian(byte[] data, int elementSize)
    {
        if (BitConverter.IsLittleEndian || elementSize == 1) return data;
        for (int i = 0; i < data.Length; i += elementSize) data.AsSpan(i, elementSize).Reverse();
        return data;
    }
}

/// <summary>The contents of a safetensors file: named tensors in file order and the <c>__metadata__</c> strings.</summary>
public sealed class SafeTensorsFile
{
    internal SafeTensorsFile(string source, IReadOnlyList<KeyValuePair<string, SafeTensor>> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Source = source;
        Names = tensors.Select(t => t.Key).ToArray();
        Tensors = tensors.ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        Metadata = metadata;
    }

    /// <summary>The path (or description) the file was read from.</summary>
    public string Source { get; }

    /// <summary>Tensor names in the order of their data in the file.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The tensors by name.</summary>
    public IReadOnlyDictionary<string, SafeTensor> Tensors { get; }

    /// <summary>The header's <c>__metadata__</c> (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The tensor called <paramref name="name"/>; a <see cref="SafeTensorsException"/> naming the file when it is absent.</summary>
    public SafeTensor this[string name] =>
        Tensors.TryGetValue(name, out var t) ? t : throw new SafeTensorsException(Source, $"has no tensor '{name}'");
}

/// <summary>
/// Reader and writer of the safetensors format (huggingface/safetensors, docs "Format"): an 8-byte
/// little-endian unsigned header length N; N bytes of UTF-8 JSON mapping each tensor name to
/// <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> (offsets relative to the end of the header) plus an
/// optional <c>"__metadata__"</c> map of strings; then the tensors' raw little-endian bytes, back to back.
/// The writer pads the header with spaces to a multiple of 8 bytes, as the reference implementation does,
/// so PyTorch's loader can map every tensor aligned; files are replaced atomically.
/// </summary>
public static class SafeTensors
{
    /// <summary>The header key of the metadata map.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Largest header accepted, as the reference implementation's MAX_HEADER_SIZE (100 MB): a guard against a garbage length.</summary>
    public const long MaxHeaderSize = 100_000_000;

    private const int HeaderAlignment = 8;

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.BOOL or SafeTensorsDType.U8 or SafeTensorsDType.I8 or SafeTensorsDType.F8_E5M2 or SafeTensorsDType.F8_E4M3 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.F64 or SafeTensorsDType.I64 or SafeTensorsDType.U64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>
    /// Writes a safetensors file atomically: the bytes go to a temporary file in the same directory, which is
    /// flushed to disk and then renamed over <paramref name="path"/>. A reader (or a crash) sees the old file or
    /// the complete new one, never a partial file.
    /// </summary>
    public static void Save(string path, IEnumerable<KeyValuePair<string, SafeTensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        WriteAtomically(path, stream => Write(stream, list, metadata));
    }

    /// <summary>
    /// Runs <paramref name="write"/> on a temporary file beside <paramref name="path"/> (same directory, so the
    /// rename stays on one file system), flushes it to the disk (fsync), then moves it over <paramref name="path"/>.
    /// When <paramref name="write"/> throws, the temporary file is deleted and <paramref name="path"/> is untouched.
    /// The directory is created if missing.
    /// </summary>
    public static void WriteAtomically(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' has no directory", nameof(path));
        Directory.CreateDirectory(directory);
        string temp = TempPath(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                // Without the flush to disk, a power loss after the rename can leave an empty or partial file
                // under the final name on file systems that reorder metadata and data writes (e.g. ext4 delalloc).
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>True for the names of the temporary files <see cref="WriteAtomically"/> creates (left behind only by a killed process).</summary>
    public static bool IsTemporaryFile(string path) => TemporaryName.IsMatch(Path.GetFileName(path));

    // ".<file name>.<32 hex digits of a Guid>.tmp", as TempPath makes them.
    private static readonly Regex TemporaryName = new(@"^\..+\.[0-9a-f]{32}\.tmp$", RegexOptions.CultureInvariant);

    private static string TempPath(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");

    /// <summary>
    /// Writes the safetensors bytes to <paramref name="stream"/>. Tensors are laid out as the reference writer
    /// does: by dtype, widest first, then by name (ordinal), so each tensor starts at a multiple of its element size.
    /// </summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, SafeTensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var ordered = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in ordered)
        {
            ArgumentNullException.ThrowIfNull(tensor, name);
            if (name == MetadataKey) throw new ArgumentException($"SafeTensors.Write: '{MetadataKey}' is reserved and cannot name a tensor", nameof(tensors));
            if (!seen.Add(name)) throw new ArgumentException($"SafeTensors.Write: tensor name '{name}' appears twice", nameof(tensors));
        }
        ordered.Sort((a, b) =>
        {
            int byType = b.Value.DType.CompareTo(a.Value.DType);
            return byType != 0 ? byType : string.CompareOrdinal(a.Key, b.Key);
        });

        byte[] header = Header(ordered, metadata);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var (_, tensor) in ordered) stream.Write(tensor.Data);
    }

    // The JSON header, padded with spaces to a multiple of 8 bytes (the reference writer's rule, so that the
    // data section starts 8-aligned relative to the start of the file).
    private static byte[] Header(List<KeyValuePair<string, SafeTensor>> ordered, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, WriterOptions))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    ArgumentNullException.ThrowIfNull(value, key);
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, tensor) in ordered)
            {
                json.WriteStartObject(name);
                json.WriteString("dtype", tensor.DType.ToString());
                json.WriteStartArray("shape");
                foreach (int d in tensor.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += tensor.Data.LongLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        int padding = (int)((HeaderAlignment - buffer.Length % HeaderAlignment) % HeaderAlignment);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    /// <summary>Reads and validates the safetensors file at <paramref name="path"/>.</summary>
    /// <exception cref="SafeTensorsException">The file is not a valid safetensors file; the message names it and the problem.</exception>
    public static SafeTensorsFile Load(string path)
    {
        FileStream stream;
        try { stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read); }
        catch (FileNotFoundException e) { throw new SafeTensorsException(path, "does not exist", e); }
        catch (DirectoryNotFoundException e) { throw new SafeTensorsException(path, "does not exist (no such directory)", e); }
        using (stream) return Read(stream, path);
    }

    /// <summary>
    /// Reads and validates safetensors bytes from a seekable <paramref name="stream"/> holding exactly one file;
    /// <paramref name="source"/> names it in error messages.
    /// </summary>
    /// <exception cref="SafeTensorsException">The bytes are not a valid safetensors file.</exception>
    public static SafeTensorsFile Read(Stream stream, string source)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanSeek) throw new ArgumentException($"SafeTensors.Read: the stream of '{source}' must be seekable (its length bounds the header)", nameof(stream));
        long fileLength = stream.Length - stream.Position;
        if (fileLength < 8) throw new SafeTensorsException(source, $"truncated: {fileLength} bytes, fewer than the 8 of the header length");

        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
            throw new SafeTensorsException(source, $"header length {headerLength} goes beyond the file ({fileLength} bytes, so at most {fileLength - 8} header bytes): truncated or not a safetensors file");
        if (headerLength > MaxHeaderSize)
            throw new SafeTensorsException(source, $"header length {headerLength} exceeds the limit of {MaxHeaderSize} bytes");
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long dataLength = fileLength - 8 - (long)headerLength;

        var (entries, metadata) = ParseHeader(header, source);
        ValidateLayout(entries, dataLength, source);

        var tensors = new List<KeyValuePair<string, SafeTensor>>(entries.Count);
        long dataStart = stream.Position;
        foreach (var e in entries.OrderBy(e => e.Begin))
        {
            var bytes = new byte[e.End - e.Begin];
            stream.Position = dataStart + e.Begin;
            stream.ReadExactly(bytes);
            tensors.Add(new(e.Name, new SafeTensor(e.DType, e.Shape, bytes)));
        }
        return new SafeTensorsFile(source, tensors, metadata);
    }

    private sealed record HeaderEntry(string Name, SafeTensorsDType DType, int[] Shape, long Begin, long End);

    private static (List<HeaderEntry> Entries, Dictionary<string, string> Metadata) ParseHeader(byte[] header, string source)
    {
        string text;
        try { text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(header); }
        catch (DecoderFallbackException e) { throw new SafeTensorsException(source, "header is not valid UTF-8", e); }
        JsonDocument document;
        try { document = JsonDocument.Parse(text); }
        catch (JsonException e) { throw new SafeTensorsException(source, $"header is not valid JSON: {e.Message}", e); }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new SafeTensorsException(source, $"header is a JSON {root.ValueKind}, not an object");
            var entries = new List<HeaderEntry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (!names.Add(property.Name)) throw new SafeTensorsException(source, $"header names '{property.Name}' twice");
                if (property.Name == MetadataKey)
                {
                    if (property.Value.ValueKind != JsonValueKind.Object) throw new SafeTensorsException(source, $"'{MetadataKey}' is a JSON {property.Value.ValueKind}, not an object of strings");
                    foreach (var m in property.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw new SafeTensorsException(source, $"metadata '{m.Name}' is a JSON {m.Value.ValueKind}, not a string");
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw new SafeTensorsException(source, $"metadata names '{m.Name}' twice");
                    }
                }
                else
                {
                    entries.Add(ParseEntry(property, source));
                }
            }
            return (entries, metadata);
        }
    }

    private static HeaderEntry ParseEntry(JsonProperty property, string source)
    {
        string name = property.Name;
        var info = property.Value;
        if (info.ValueKind != JsonValueKind.Object) throw new SafeTensorsException(source, $"tensor '{name}': header entry is a JSON {info.ValueKind}, not an object");
        if (!info.TryGetProperty("dtype", out var dtypeJson) || dtypeJson.ValueKind != JsonValueKind.String)
            throw new SafeTensorsException(source, $"tensor '{name}': missing string 'dtype'");
        string dtypeName = dtypeJson.GetString()!;
        // Exact names only: Enum.TryParse would also take "11" or "f32".
        if (!Enum.GetNames<SafeTensorsDType>().Contains(dtypeName, StringComparer.Ordinal))
            throw new SafeTensorsException(source, $"tensor '{name}': unknown dtype '{dtypeName}' (known: {string.Join(", ", Enum.GetNames<SafeTensorsDType>())})");
        var dtype = Enum.Parse<SafeTensorsDType>(dtypeName);

        if (!info.TryGetProperty("shape", out var shapeJson) || shapeJson.ValueKind != JsonValueKind.Array)
            throw new SafeTensorsException(source, $"tensor '{name}': missing array 'shape'");
        var shape = new int[shapeJson.GetArrayLength()];
        int axis = 0;
        long count = 1;
        foreach (var d in shapeJson.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int extent) || extent < 0)
                throw new SafeTensorsException(source, $"tensor '{name}': shape extent {d.GetRawText()} is not an integer in [0, {int.MaxValue}]");
            shape[axis++] = extent;
            count = extent == 0 || count <= long.MaxValue / 8 / extent ? count * extent
                : throw new SafeTensorsException(source, $"tensor '{name}': shape {ShapeUtil.Format(shape)} has too many elements");
        }

        if (!info.TryGetProperty("data_offsets", out var offsetsJson) || offsetsJson.ValueKind != JsonValueKind.Array || offsetsJson.GetArrayLength() != 2)
            throw new SafeTensorsException(source, $"tensor '{name}': missing 'data_offsets' [begin, end]");
        var offsets = new long[2];
        for (int i = 0; i < 2; i++)
        {
            var o = offsetsJson[i];
            if (o.ValueKind != JsonValueKind.Number || !o.TryGetInt64(out offsets[i]) || offsets[i] < 0)
                throw new SafeTensorsException(source, $"tensor '{name}': data offset {o.GetRawText()} is not a non-negative integer");
        }
        foreach (var key in info.EnumerateObject())
            if (key.Name is not ("dtype" or "shape" or "data_offsets"))
                throw new SafeTensorsException(source, $"tensor '{name}': unexpected header field '{key.Name}'");

        long begin = offsets[0], end = offsets[1];
        if (end < begin) throw new SafeTensorsException(source, $"tensor '{name}': data_offsets [{begin}, {end}] end before they begin");
        long bytes = count * ElementSize(dtype);
        if (end - begin != bytes)
            throw new SafeTensorsException(source, $"tensor '{name}': {dtype} shape {ShapeUtil.Format(shape)} needs {bytes} bytes but data_offsets [{begin}, {end}] span {end - begin}");
        return new HeaderEntry(name, dtype, shape, begin, end);
    }

    // The reference reader's rule: taken in order of their offsets, the tensors tile the data section exactly,
    // each starting where the previous one ended, the last ending at the end of the file.
    private static void ValidateLayout(List<HeaderEntry> entries, long dataLength, string source)
    {
        long position = 0;
        HeaderEntry? previous = null;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.End > dataLength)
                throw new SafeTensorsException(source, $"tensor '{e.Name}': data_offsets [{e.Begin}, {e.End}] go beyond the data section ({dataLength} bytes): truncated file or bad offsets");
            if (e.Begin < position)
                throw new SafeTensorsException(source, $"tensor '{e.Name}': data_offsets [{e.Begin}, {e.End}] overlap tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (e.Begin > position)
                throw new SafeTensorsException(source, previous is null
                    ? $"data bytes [0, {e.Begin}) before tensor '{e.Name}' belong to no tensor"
                    : $"data bytes [{position}, {e.Begin}) between tensors '{previous.Name}' and '{e.Name}' belong to no tensor");
            position = e.End;
            previous = e;
        }
        if (position != dataLength)
            throw new SafeTensorsException(source, $"the tensors cover {position} bytes of data but the file holds {dataLength}: trailing bytes after the last tensor");
    }
}
