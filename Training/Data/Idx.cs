using System.Buffers.Binary;
using System.IO.Compression;
using DiffusionCore.Engine.Serialization;

namespace DiffusionCore.Training.Data;

/// <summary>A data file that is not what its format says it should be: wrong magic number, truncated, inconsistent.</summary>
public sealed class DataFormatException : IOException
{
    /// <summary>An error with a message naming the file, the expected and the actual values.</summary>
    public DataFormatException(string message) : base(message)
    {
    }

    /// <summary>An error caused by <paramref name="inner"/> (e.g. a corrupt gzip stream).</summary>
    public DataFormatException(string message, Exception inner) : base(message, inner)
    {
    }
}

/// <summary>Unsigned-byte images in IDX layout: <see cref="Count"/> images of <see cref="Rows"/> x <see cref="Columns"/>, row-major.</summary>
public sealed class IdxImages
{
    /// <summary>Wraps <paramref name="pixels"/> (not copied): count x rows x columns bytes, image after image.</summary>
    /// <exception cref="ArgumentException">A negative size, or a pixel array of the wrong length.</exception>
    public IdxImages(int count, int rows, int columns, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        if (count < 0 || rows < 0 || columns < 0)
        {
            throw new ArgumentException($"IdxImages: negative size {count} x {rows} x {columns}");
        }
        if (pixels.LongLength != (long)count * rows * columns)
        {
            throw new ArgumentException($"IdxImages: {pixels.LongLength} bytes do not make {count} images of {rows} x {columns}", nameof(pixels));
        }
        Count = count;
        Rows = rows;
        Columns = columns;
        Pixels = pixels;
    }

    /// <summary>Number of images.</summary>
    public int Count { get; }

    /// <summary>Height of each image.</summary>
    public int Rows { get; }

    /// <summary>Width of each image.</summary>
    public int Columns { get; }

    /// <summary>The pixels, image after image, each row-major; do not modify while others read it.</summary>
    public byte[] Pixels { get; }
}

/// <summary>
/// Reads and writes the IDX format of the MNIST distribution (LeCun et al., http://yann.lecun.com/exdb/mnist/):
/// a big-endian 32-bit magic number 0x0000TTRR (TT the element type, 0x08 for unsigned byte; RR the number of
/// dimensions), RR big-endian 32-bit extents, then the elements in row-major order. Only the two unsigned-byte
/// layouts MNIST and Fashion-MNIST use are supported: images [N, rows, cols] and labels [N]. Files may be raw
/// or gzip-compressed; the reader tells them apart by the gzip magic bytes 1F 8B, not by the file name.
/// </summary>
public static class Idx
{
    /// <summary>Magic number of an unsigned-byte array with three dimensions (images [N, rows, cols]).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Magic number of an unsigned-byte array with one dimension (labels [N]).</summary>
    public const int LabelsMagic = 0x00000801;

    private const int UnsignedByteType = 0x08;

    // First allocation for the payload; it grows by doubling up to what the header announces, so that a corrupt
    // header claiming gigabytes costs no more memory than the data that is really there.
    private const int InitialPayloadBytes = 1 << 20;

    /// <summary>Reads an images file (raw or gzip).</summary>
    /// <exception cref="DataFormatException">Not an IDX images file, or truncated, or a corrupt gzip stream.</exception>
    public static IdxImages ReadImages(string path)
    {
        using var stream = File.OpenRead(path);
        return ReadImages(stream, path);
    }

    /// <summary>Reads an images file (raw or gzip) from <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="DataFormatException">Not an IDX images file, or truncated, or a corrupt gzip stream.</exception>
    public static IdxImages ReadImages(Stream stream, string source)
    {
        var (dims, data) = Read(stream, source, ImagesMagic);
        return new IdxImages(dims[0], dims[1], dims[2], data);
    }

    /// <summary>Reads a labels file (raw or gzip).</summary>
    /// <exception cref="DataFormatException">Not an IDX labels file, or truncated, or a corrupt gzip stream.</exception>
    public static byte[] ReadLabels(string path)
    {
        using var stream = File.OpenRead(path);
        return ReadLabels(stream, path);
    }

    /// <summary>Reads a labels file (raw or gzip) from <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    /// <exception cref="DataFormatException">Not an IDX labels file, or truncated, or a corrupt gzip stream.</exception>
    public static byte[] ReadLabels(Stream stream, string source) => Read(stream, source, LabelsMagic).Data;

    /// <summary>Writes an images file atomically (creating the directory), gzip-compressed when <paramref name="gzip"/>.</summary>
    public static void WriteImages(string path, IdxImages images, bool gzip) =>
        SafeTensors.WriteAtomically(path, stream => WriteImages(stream, images, gzip));

    /// <summary>Writes an images file to <paramref name="stream"/> (left open), gzip-compressed when <paramref name="gzip"/>.</summary>
    public static void WriteImages(Stream stream, IdxImages images, bool gzip)
    {
        ArgumentNullException.ThrowIfNull(images);
        Write(stream, ImagesMagic, [images.Count, images.Rows, images.Columns], images.Pixels, gzip);
    }

    /// <summary>Writes a labels file atomically (creating the directory), gzip-compressed when <paramref name="gzip"/>.</summary>
    public static void WriteLabels(string path, byte[] labels, bool gzip) =>
        SafeTensors.WriteAtomically(path, stream => WriteLabels(stream, labels, gzip));

    /// <summary>Writes a labels file to <paramref name="stream"/> (left open), gzip-compressed when <paramref name="gzip"/>.</summary>
    public static void WriteLabels(Stream stream, byte[] labels, bool gzip)
    {
        ArgumentNullException.ThrowIfNull(labels);
        Write(stream, LabelsMagic, [labels.Length], labels, gzip);
    }

    private static void Write(Stream stream, int magic, int[] dims, byte[] data, bool gzip)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var compressor = gzip ? new GZipStream(stream, CompressionLevel.SmallestSize, leaveOpen: true) : null;
        Stream output = compressor ?? stream;
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, magic);
        output.Write(word);
        foreach (int d in dims)
        {
            BinaryPrimitives.WriteInt32BigEndian(word, d);
            output.Write(word);
        }
        output.Write(data);
    }

    private static (int[] Dims, byte[] Data) Read(Stream stream, string source, int expectedMagic)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(source);
        try
        {
            using var seekable = stream.CanSeek ? null : CopyToMemory(stream);
            using var decompressor = OpenGzip(seekable ?? stream);
            Stream input = (Stream?)decompressor ?? seekable ?? stream;
            bool compressed = decompressor is not null;
            string kind = compressed ? "gzip IDX file" : "IDX file";
            int rank = expectedMagic & 0xFF;
            int headerBytes = 4 * (1 + rank);
            var header = new byte[headerBytes];
            int got = input.ReadAtLeast(header, headerBytes, throwOnEndOfStream: false);
            if (got < 4)
            {
                throw new DataFormatException($"{source}: truncated {kind}: {got} bytes, fewer than the 4 of the magic number 0x{expectedMagic:X8}");
            }
            int magic = BinaryPrimitives.ReadInt32BigEndian(header);
            if (magic != expectedMagic)
            {
                throw new DataFormatException($"{source}: magic number 0x{magic:X8}, expected 0x{expectedMagic:X8} ({Describe(expectedMagic)}); the file holds {Describe(magic)}");
            }
            if (got < headerBytes)
            {
                throw new DataFormatException($"{source}: truncated {kind} header: {got} bytes, expected {headerBytes} (magic and {rank} dimensions)");
            }
            var dims = new int[rank];
            long expected = 1;
            for (int i = 0; i < rank; i++)
            {
                dims[i] = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4 + 4 * i));
                if (dims[i] < 0) throw new DataFormatException($"{source}: dimension {i} of the {kind} header is {dims[i]} (read as a signed 32-bit extent)");
                expected *= dims[i];
                if (expected > Array.MaxLength)
                {
                    throw new DataFormatException($"{source}: header dimensions [{string.Join(", ", dims.Take(i + 1))}...] need more than {Array.MaxLength} bytes");
                }
            }
            var (data, length) = ReadUpTo(input, (int)expected);
            if (length < expected)
            {
                throw new DataFormatException($"{source}: truncated {kind}: the header's [{string.Join(", ", dims)}] needs {expected} data bytes after the {headerBytes}-byte header, found {length}");
            }
            long trailing = CountRemaining(input);
            if (trailing > 0)
            {
                throw new DataFormatException($"{source}: {trailing} bytes after the {expected} data bytes of the header's [{string.Join(", ", dims)}] (corrupt header or concatenated files)");
            }
            return (dims, data);
        }
        catch (InvalidDataException e)
        {
            // zlib reports bad deflate data and a CRC-32 mismatch alike, and .NET words both as "unsupported compression
            // method", so the message says what it means here rather than repeat that.
            throw new DataFormatException($"{source}: corrupt gzip stream (invalid deflate data or CRC-32 mismatch): {e.Message}", e);
        }
    }

    // A decompressor over the stream when its first two bytes are gzip's magic 1F 8B (RFC 1952, section 2.3.1),
    // else null; the stream is left where it was. An IDX file cannot start with 1F: its magic starts with 00.
    private static GZipStream? OpenGzip(Stream stream)
    {
        long start = stream.Position;
        Span<byte> head = stackalloc byte[2];
        int got = stream.ReadAtLeast(head, 2, throwOnEndOfStream: false);
        stream.Position = start;
        return got == 2 && head[0] == 0x1F && head[1] == 0x8B ? new GZipStream(stream, CompressionMode.Decompress, leaveOpen: true) : null;
    }

    private static MemoryStream CopyToMemory(Stream stream)
    {
        var memory = new MemoryStream();
        stream.CopyTo(memory);
        memory.Position = 0;
        return memory;
    }

    private static (byte[] Data, int Length) ReadUpTo(Stream input, int count)
    {
        var buffer = new byte[Math.Min(count, InitialPayloadBytes)];
        int filled = 0;
        while (filled < count)
        {
            if (filled == buffer.Length) Array.Resize(ref buffer, (int)Math.Min(count, 2L * buffer.Length));
            int n = input.Read(buffer, filled, buffer.Length - filled);
            if (n == 0) break;
            filled += n;
        }
        return (buffer, filled);
    }

    private static long CountRemaining(Stream input)
    {
        var scratch = new byte[4096];
        long total = 0;
        int n;
        while ((n = input.Read(scratch)) > 0) total += n;
        return total;
    }

    private static string Describe(int magic) => magic switch
    {
        ImagesMagic => "unsigned-byte images [N, rows, cols]",
        LabelsMagic => "unsigned-byte labels [N]",
        _ when (magic >>> 16) != 0 => "no IDX magic (its first two bytes must be zero)",
        _ when ((magic >> 8) & 0xFF) != UnsignedByteType => $"IDX element type 0x{(magic >> 8) & 0xFF:X2}, not unsigned byte (0x08)",
        _ => $"an unsigned-byte IDX array with {magic & 0xFF} dimensions",
    };
}
