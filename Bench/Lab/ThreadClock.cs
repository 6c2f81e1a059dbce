using System.Diagnostics;
using System.Runtime.InteropServices;

namespace DiffusionCore.Bench.Lab;

/// <summary>
/// CPU time of the calling thread (Linux clock_gettime(CLOCK_THREAD_CPUTIME_ID)), falling back to wall-clock time
/// elsewhere. On a machine shared with other jobs, the thread's CPU time is what a single-threaded kernel costs;
/// wall-clock time also counts the time the scheduler gave other processes.
/// </summary>
internal static partial class ThreadClock
{
    private const int ClockThreadCpuTime = 3;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);

    private static readonly bool s_available = OperatingSystem.IsLinux() && TryRead(out _);

    /// <summary>True when <see cref="Seconds"/> reads the thread's CPU time, false when it reads the wall clock.</summary>
    public static bool IsThreadTime => s_available;

    /// <summary>Seconds of CPU time this thread has used (or wall-clock seconds, see <see cref="IsThreadTime"/>).</summary>
    public static double Seconds()
    {
        if (s_available && TryRead(out double s)) return s;
        return Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
    }

    private static bool TryRead(out double seconds)
    {
        try
        {
            if (ClockGetTime(ClockThreadCpuTime, out var t) == 0)
            {
                seconds = t.Seconds + t.Nanoseconds * 1e-9;
                return true;
            }
        }
        catch (DllNotFoundException)
        {
        }
        catch (EntryPointNotFoundException)
        {
        }
        seconds = 0;
        return false;
    }
}
