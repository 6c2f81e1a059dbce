using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// Marks one symbol-version requirement of an ELF64 shared library weak, in place.
/// TorchSharp 0.107's libLibTorchSharp.so requires GLIBCXX_3.4.32 from libstdc++.so.6, which
/// Debian 12's libstdc++ (up to GLIBCXX_3.4.30) lacks, so the dynamic loader refuses the library.
/// The only symbol at that version (std::ios_base_library_init) is never bound, and glibc's loader
/// only warns about a missing version whose Vernaux entry carries VER_FLG_WEAK (glibc elf/dl-version.c,
/// match_symbol), so setting that flag on the copy in the build output lets the library load.
/// The NuGet cache is never touched.
/// </summary>
/// <remarks>
/// Layouts (System V gABI, "Symbol Versioning" of the LSB): the section of type SHT_GNU_verneed holds a
/// chain of Elf64_Verneed {u16 vn_version, u16 vn_cnt, u32 vn_file, u32 vn_aux, u32 vn_next}, each with a
/// chain of Elf64_Vernaux {u32 vna_hash, u16 vna_flags, u16 vna_other, u32 vna_name, u32 vna_next};
/// vn_aux, vn_next and vna_next are byte offsets from the entry that holds them; vn_file and vna_name
/// index the string table named by the section's sh_link.
/// </remarks>
public static class ElfVersionPatcher
{
    /// <summary>The libstdc++ version that TorchSharp 0.107's native library asks for and Debian 12 lacks.</summary>
    public const string TorchSharpMissingVersion = "GLIBCXX_3.4.32";

    /// <summary>The file name of TorchSharp's native library on Linux.</summary>
    public const string TorchSharpNativeLibrary = "libLibTorchSharp.so";

    private const ushort VerFlagWeak = 0x2;
    private const uint SectionTypeVerneed = 0x6ffffffe;
    private const int ElfHeaderSize = 64, SectionHeaderSize = 64, VerneedSize = 16, VernauxSize = 16;

    /// <summary>What <see cref="MarkVersionWeak"/> found.</summary>
    public enum Outcome
    {
        /// <summary>The flag was clear and has been set.</summary>
        Patched,
        /// <summary>The flag was already set; the file was not written.</summary>
        AlreadyWeak,
        /// <summary>The file requires no such version; the file was not written.</summary>
        NotRequired,
    }

    /// <summary>
    /// Patches every copy of <see cref="TorchSharpNativeLibrary"/> under <paramref name="baseDirectory"/>
    /// (the application directory itself and runtimes/linux-x64/native, where the SDK places NuGet native
    /// assets) on Linux; does nothing on other systems. Must run before the first TorchSharp call.
    /// </summary>
    /// <returns>Each patched or inspected file with its outcome.</returns>
    public static IReadOnlyList<(string Path, Outcome Outcome)> PatchTorchSharp(string baseDirectory)
    {
        var results = new List<(string, Outcome)>();
        if (!OperatingSystem.IsLinux()) return results;
        foreach (string dir in new[] { baseDirectory, Path.Combine(baseDirectory, "runtimes", "linux-x64", "native") })
        {
            string file = Path.Combine(dir, TorchSharpNativeLibrary);
            if (File.Exists(file)) results.Add((file, MarkVersionWeak(file, TorchSharpMissingVersion)));
        }
        return results;
    }

    /// <summary>
    /// Sets VER_FLG_WEAK on every Vernaux entry of <paramref name="path"/> named <paramref name="versionName"/>.
    /// Idempotent: a flag already set is left alone and the file is then not written.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not a little-endian ELF64 file or its version
    /// section is malformed.</exception>
    public static Outcome MarkVersionWeak(string path, string versionName)
    {
        using SafeFileHandle file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        long length = RandomAccess.GetLength(file);

        Span<byte> header = stackalloc byte[ElfHeaderSize];
        ReadExactly(file, header, 0, length, path);
        // e_ident: 0x7f 'E' 'L' 'F', EI_CLASS = 2 (ELFCLASS64), EI_DATA = 1 (little-endian).
        if (header[0] != 0x7f || header[1] != (byte)'E' || header[2] != (byte)'L' || header[3] != (byte)'F'
            || header[4] != 2 || header[5] != 1)
            throw new InvalidDataException($"{path}: not a little-endian ELF64 file");
        long sectionTable = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[0x28..]);
        int sectionEntrySize = BinaryPrimitives.ReadUInt16LittleEndian(header[0x3a..]);
        int sectionCount = BinaryPrimitives.ReadUInt16LittleEndian(header[0x3c..]);
        if (sectionEntrySize < SectionHeaderSize)
            throw new InvalidDataException($"{path}: section header size {sectionEntrySize} < {SectionHeaderSize}");

        var sections = new byte[sectionCount * sectionEntrySize];
        ReadExactly(file, sections, sectionTable, length, path);
        var outcome = Outcome.NotRequired;
        for (int s = 0; s < sectionCount; s++)
        {
            ReadOnlySpan<byte> sh = sections.AsSpan(s * sectionEntrySize, SectionHeaderSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != SectionTypeVerneed) continue;
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]);
            long size = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x20..]);
            int link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            int needCount = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x2c..]);
            if (link >= sectionCount) throw new InvalidDataException($"{path}: verneed sh_link {link} out of range");
            ReadOnlySpan<byte> strSh = sections.AsSpan(link * sectionEntrySize, SectionHeaderSize);
            var strings = new byte[(long)BinaryPrimitives.ReadUInt64LittleEndian(strSh[0x20..])];
            ReadExactly(file, strings, (long)BinaryPrimitives.ReadUInt64LittleEndian(strSh[0x18..]), length, path);
            var verneed = new byte[size];
            ReadExactly(file, verneed, offset, length, path);
            outcome = Combine(outcome, PatchVerneed(file, path, verneed, offset, needCount, strings, versionName));
        }
        return outcome;
    }

    /// <summary>Walks one verneed section's chains and sets the weak flag on the matching Vernaux entries.</summary>
    private static Outcome PatchVerneed(SafeFileHandle file, string path, byte[] verneed, long sectionOffset,
        int needCount, byte[] strings, string versionName)
    {
        var outcome = Outcome.NotRequired;
        long need = 0;
        for (int n = 0; n < needCount; n++)
        {
            CheckEntry(need, VerneedSize, verneed.Length, path);
            ReadOnlySpan<byte> vn = verneed.AsSpan((int)need, VerneedSize);
            int auxCount = BinaryPrimitives.ReadUInt16LittleEndian(vn[2..]);
            long aux = need + BinaryPrimitives.ReadUInt32LittleEndian(vn[8..]);
            for (int a = 0; a < auxCount; a++)
            {
                CheckEntry(aux, VernauxSize, verneed.Length, path);
                Span<byte> vna = verneed.AsSpan((int)aux, VernauxSize);
                if (CString(strings, BinaryPrimitives.ReadUInt32LittleEndian(vna[8..]), path) == versionName)
                {
                    ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(vna[4..]);
                    if ((flags & VerFlagWeak) != 0)
                        outcome = Combine(outcome, Outcome.AlreadyWeak);
                    else
                    {
                        BinaryPrimitives.WriteUInt16LittleEndian(vna[4..], (ushort)(flags | VerFlagWeak));
                        RandomAccess.Write(file, vna.Slice(4, 2), sectionOffset + aux + 4);
                        outcome = Outcome.Patched;
                    }
                }
                aux += BinaryPrimitives.ReadUInt32LittleEndian(vna[12..]);
            }
            uint next = BinaryPrimitives.ReadUInt32LittleEndian(vn[12..]);
            if (next == 0) break;
            need += next;
        }
        return outcome;
    }

    /// <summary>The stronger of two outcomes: a write beats an already-set flag beats no match.</summary>
    private static Outcome Combine(Outcome a, Outcome b) => (Outcome)Math.Min((int)a, (int)b);

    private static void CheckEntry(long at, int size, int sectionSize, string path)
    {
        if (at < 0 || at + size > sectionSize)
            throw new InvalidDataException($"{path}: version entry at {at} runs past the section ({sectionSize} bytes)");
    }

    private static string CString(byte[] strings, uint at, string path)
    {
        if (at >= strings.Length) throw new InvalidDataException($"{path}: string index {at} out of range");
        int end = Array.IndexOf(strings, (byte)0, (int)at);
        return Encoding.ASCII.GetString(strings, (int)at, (end < 0 ? strings.Length : end) - (int)at);
    }

    private static void ReadExactly(SafeFileHandle file, Span<byte> into, long offset, long length, string path)
    {
        if (offset < 0 || offset + into.Length > length)
            throw new InvalidDataException($"{path}: {into.Length} bytes at {offset} run past the end ({length} bytes)");
        int done = 0;
        while (done < into.Length)
        {
            int read = RandomAccess.Read(file, into[done..], offset + done);
            if (read == 0) throw new InvalidDataException($"{path}: unexpected end of file at {offset + done}");
            done += read;
        }
    }
}
