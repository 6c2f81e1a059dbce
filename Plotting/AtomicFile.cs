using System.Diagnostics;
using System.Globalization;

namespace DiffusionCore.Plotting;

/// <summary>Writes a file so that readers see the old content or the complete new one, never a partial file.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// Creates the directory if missing, writes a temporary file beside <paramref name="path"/> (same directory,
    /// so the rename stays on one file system), then moves it over <paramref name="path"/>. The temporary file's
    /// name carries the writer's process id; temporary files of the same target left by a process that no longer
    /// runs (one killed mid-write) are deleted after the move, so killed runs do not pile them up.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{path}' has no directory", nameof(path));
        Directory.CreateDirectory(directory);
        string temp = Path.Combine(directory, TempName(Path.GetFileName(full), Environment.ProcessId));
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
        RemoveOrphans(directory, Path.GetFileName(full));
    }

    /// <summary>".&lt;file name&gt;.&lt;process id&gt;.&lt;32 hex digits&gt;.tmp".</summary>
    internal static string TempName(string fileName, int processId) =>
        $".{fileName}.{processId.ToString(CultureInfo.InvariantCulture)}.{Guid.NewGuid():N}.tmp";

    /// <summary>Deletes the temporary files of <paramref name="fileName"/> whose writer process is gone.</summary>
    internal static void RemoveOrphans(string directory, string fileName)
    {
        string prefix = $".{fileName}.";
        foreach (string candidate in Directory.EnumerateFiles(directory, prefix + "*.tmp"))
        {
            var parts = Path.GetFileName(candidate)[prefix.Length..].Split('.');
            // Older writers named the file ".<name>.<guid>.tmp", without a process id: always orphans now.
            bool running = parts.Length == 3 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && IsRunning(pid);
            if (running) continue;
            try { File.Delete(candidate); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
