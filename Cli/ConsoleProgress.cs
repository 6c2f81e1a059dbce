using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace DiffusionCore.Cli;

/// <summary>
/// Progress of one long operation. On an interactive terminal a Spectre.Console bar with the percentage, the rate
/// and the time left; on a redirected output (CI, logs, tests) a plain line every few seconds and at the end, so
/// logs stay readable. DIFFUSION_PROGRESS=plain forces the plain lines.
/// </summary>
internal sealed class ConsoleProgress : IDisposable
{
    private const double PlainInterval = 5.0;

    private readonly string _label;
    private readonly double _total;
    private readonly double _start;
    private readonly string _unit;
    private readonly bool _timed;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Live? _live;
    private double _lastPrint = double.NegativeInfinity;
    private bool _finished;

    private ConsoleProgress(string label, double total, double start, string unit, bool timed)
    {
        _label = label;
        _total = Math.Max(1e-9, total);
        _start = start;
        _unit = unit;
        _timed = timed;
        if (Interactive) _live = new Live(label, _total, start);
    }

    /// <summary>True when progress is drawn as a live bar (a terminal, not redirected, not forced plain).</summary>
    public static bool Interactive =>
        !Console.IsOutputRedirected && Environment.GetEnvironmentVariable("DIFFUSION_PROGRESS") != "plain" && AnsiConsole.Profile.Capabilities.Interactive;

    /// <summary>A bar for <paramref name="total"/> units of which <paramref name="start"/> were done before (a resumed run), so that the rate counts this run's work only.</summary>
    public static ConsoleProgress Start(string label, long total, long start = 0, string unit = "steps") => new(label, total, start, unit, timed: false);

    /// <summary>A bar over a time budget (a run that stops when its time is up): the bar is the time used, its end the budget's.</summary>
    public static ConsoleProgress ForDuration(string label, TimeSpan budget) => new(label, budget.TotalSeconds, 0, "s", timed: true);

    /// <summary>Reports <paramref name="done"/> units (seconds for a timed bar) with a detail such as the loss.</summary>
    public void Update(double done, string detail = "")
    {
        double now = _clock.Elapsed.TotalSeconds;
        double rate = (done - _start) / Math.Max(1e-9, now);
        string line = _timed ? detail : $"{Count(done)}/{Count(_total)} {_unit} {rate.ToString("F1", CultureInfo.InvariantCulture)}/s {detail}".TrimEnd();
        if (_live is not null)
        {
            _live.Set(done, $"{_label} {line}");
            return;
        }
        bool last = done >= _total;
        if (last && _finished) return;
        if (!last && now - _lastPrint < PlainInterval) return;
        _lastPrint = now;
        _finished |= last;
        double fraction = Math.Min(1.0, done / _total);
        double left = _timed ? _total - done : rate > 0 ? (_total - done) / rate : 0;
        const int width = 30;
        int filled = (int)(fraction * width);
        Console.WriteLine($"{_label} [{new string('#', filled)}{new string('.', width - filled)}] {(fraction * 100).ToString("F1", CultureInfo.InvariantCulture),5}% {line}, {Duration(left)} left");
    }

    /// <summary>Ends the bar (the live display closes; a plain bar prints its last line if it has not).</summary>
    public void Dispose()
    {
        _live?.Dispose();
    }

    private static string Count(double v) => Math.Abs(v - Math.Round(v)) < 1e-9 ? ((long)Math.Round(v)).ToString(CultureInfo.InvariantCulture) : v.ToString("F0", CultureInfo.InvariantCulture);

    private static string Duration(double seconds) => seconds switch
    {
        < 90 => $"{seconds.ToString("F0", CultureInfo.InvariantCulture)} s",
        < 5400 => $"{(seconds / 60).ToString("F1", CultureInfo.InvariantCulture)} min",
        _ => $"{(seconds / 3600).ToString("F1", CultureInfo.InvariantCulture)} h",
    };

    /// <summary>The Spectre.Console live bar, drawn by a thread of its own while the work runs on the caller's.</summary>
    private sealed class Live : IDisposable
    {
        private readonly ManualResetEventSlim _ready = new(), _done = new();
        private readonly Thread _thread;
        private ProgressTask? _task;

        public Live(string label, double total, double start)
        {
            _thread = new Thread(() => Draw(label, total, start)) { IsBackground = true, Name = "progress" };
            _thread.Start();
            _ready.Wait();
        }

        // A failure of the display (e.g. the terminal went away) must not stop the work: the bar just stops drawing.
        private void Draw(string label, double total, double start)
        {
            try
            {
                AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    _task = ctx.AddTask(label, true, total);
                    _task.Value = start;
                    _ready.Set();
                    while (!_done.Wait(100)) ctx.Refresh();
                    ctx.Refresh();
                });
            }
            catch (Exception e) when (e is IOException or InvalidOperationException)
            {
                _task = null;
            }
            finally
            {
                _ready.Set();
            }
        }

        public void Set(double value, string description)
        {
            if (_task is not { } task) return;
            task.Value = Math.Min(value, task.MaxValue);
            task.Description = Markup.Escape(description);
        }

        public void Dispose()
        {
            _done.Set();
            _thread.Join();
            _ready.Dispose();
            _done.Dispose();
        }
    }
}
