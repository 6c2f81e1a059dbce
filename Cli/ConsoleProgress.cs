using System.Diagnostics;

namespace DiffusionCore.Cli;

/// <summary>
/// A one-line progress bar on an interactive terminal; on a redirected output (CI, logs) a plain line
/// every few seconds instead, so logs stay readable.
/// </summary>
internal sealed class ConsoleProgress
{
    private readonly string _label;
    private readonly long _total;
    private readonly long _start;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _interactive = !Console.IsOutputRedirected;
    private double _lastPrint = double.NegativeInfinity;

    /// <summary>A bar for <paramref name="total"/> units of which <paramref name="start"/> were done before (a resumed run), so that the rate counts this run's work only.</summary>
    public ConsoleProgress(string label, long total, long start = 0)
    {
        _label = label;
        _total = Math.Max(1, total);
        _start = start;
    }

    public void Update(long done, string detail = "")
    {
        double now = _clock.Elapsed.TotalSeconds;
        bool last = done >= _total;
        if (!last && now - _lastPrint < (_interactive ? 0.1 : 5.0)) return;
        _lastPrint = now;
        double fraction = Math.Min(1.0, (double)done / _total);
        double rate = (done - _start) / Math.Max(1e-9, now);
        double eta = rate > 0 ? (_total - done) / rate : 0;
        const int width = 30;
        int filled = (int)(fraction * width);
        string bar = new string('#', filled) + new string('.', width - filled);
        string line = $"{_label} [{bar}] {done}/{_total} {fraction * 100,5:F1}% {rate:F1}/s eta {eta:F0}s {detail}";
        if (_interactive)
        {
            Console.Write("\r" + line.PadRight(Math.Max(0, Console.BufferWidth - 1)));
            if (last) Console.WriteLine();
        }
        else Console.WriteLine(line);
    }
}
