namespace DiffusionCore.Cli.CommandLine;

/// <summary>Checks of output paths made before any work starts, so that a long run never fails at its end for a bad path.</summary>
internal static class OutputPaths
{
    /// <summary>
    /// <paramref name="path"/> must be a directory that exists or can be created: not a file, and no file on the way to
    /// it. The directory is created, and a probe file written and deleted, so a read-only place fails now.
    /// </summary>
    public static string CheckDirectory(string path, string option)
    {
        string full = Path.GetFullPath(path);
        if (System.IO.File.Exists(full)) throw new UsageException($"{option} {path} is an existing file, not a directory");
        CheckAncestors(full, option, path);
        try
        {
            System.IO.Directory.CreateDirectory(full);
            string probe = Path.Combine(full, $".diffusion-write-test-{Environment.ProcessId}");
            System.IO.File.WriteAllBytes(probe, []);
            System.IO.File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"{option} {path} cannot be written: {e.Message}");
        }
        return full;
    }

    /// <summary>
    /// <paramref name="path"/> must be a file that can be written: not a directory, its directory creatable and writable
    /// (created now), the file itself not read-only.
    /// </summary>
    public static string CheckFile(string path, string option, string? extension = null)
    {
        string full = Path.GetFullPath(path);
        if (System.IO.Directory.Exists(full) || path.EndsWith('/') || path.EndsWith(Path.DirectorySeparatorChar))
            throw new UsageException($"{option} {path} is a directory; give a file name{(extension is null ? "" : $" ending in {extension}")}");
        if (extension is not null && !full.EndsWith(extension, StringComparison.OrdinalIgnoreCase))
            throw new UsageException($"{option} {path} must end in {extension}");
        CheckDirectory(Path.GetDirectoryName(full)!, $"the directory of {option}");
        if (System.IO.File.Exists(full) && new FileInfo(full).IsReadOnly) throw new UsageException($"{option} {path} is read-only");
        return full;
    }

    private static void CheckAncestors(string full, string option, string path)
    {
        for (var dir = Path.GetDirectoryName(full); dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (System.IO.File.Exists(dir)) throw new UsageException($"{option} {path}: '{dir}' is a file, so no directory can be made under it");
            if (System.IO.Directory.Exists(dir)) return;
        }
    }
}
