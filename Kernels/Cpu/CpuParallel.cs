namespace DiffusionCore.Kernels.Cpu;

/// <summary>Splits a range of work over the cores, or runs it inline when it is too small to split.</summary>
public static class CpuParallel
{
    /// <summary>Number of worker threads kernels split over (defaults to the core count).</summary>
    public static int Threads { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// Runs <paramref name="body"/>(start, end) over [0, count) in at most <see cref="Threads"/> pieces of at
    /// least <paramref name="minPerTask"/> items each.
    /// </summary>
    public static void For(long count, long minPerTask, Action<long, long> body)
    {
        int tasks = (int)Math.Min(Threads, Math.Max(1, count / Math.Max(1, minPerTask)));
        if (tasks <= 1)
        {
            if (count > 0) body(0, count);
            return;
        }
        Parallel.For(0, tasks, t => body(count * t / tasks, count * (t + 1) / tasks));
    }
}
