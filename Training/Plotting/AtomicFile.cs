namespace DiffusionCore.Training.Plotting;

/// <summary>Writes a file so that readers see the old content or the complete new one, never a partial file.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// Creates the directory if missing, writes a temporary file beside <paramref name="path"/> (same directory,
    /// so the rename stays on one file system), then moves it over <paramref name="path"/>.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' has no directory", nameof(path));
        Directory.CreateDirectory(directory);
        string temp = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                write(stream);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
