using System.Globalization;
using System.Text;
using BenchmarkDotNet.Reports;
using DiffusionCore.Bench.Workloads;

namespace DiffusionCore.Bench;

/// <summary>
/// The side-by-side table after a BenchmarkDotNet run: one row per workload and pass with our median,
/// libtorch's median, the ratio libtorch / ours (above 1: we are faster), both flop rates, our bare-kernel
/// median where there is one, and the validation's largest relative difference (or, for end-to-end workloads,
/// what was checked instead); then, for workloads measured as rates (<see cref="WorkloadAttribute.RateUnit"/>),
/// each side's rate at its median. Printed to the console and
/// written as markdown to <c>peer-summary.md</c> in the run's results folder (BenchmarkDotNet.Artifacts/results
/// unless <c>--artifacts</c> says otherwise).
/// </summary>
public static class PeerSummary
{
    private static readonly string[] Header =
        ["workload", "pass", "ours ms", "libtorch ms", "libtorch/ours", "ours GFLOP/s", "libtorch GFLOP/s", "ours kernel ms", "libtorch/kernel", "max rel. diff"];

    /// <summary>Prints and writes the table for <paramref name="summaries"/>.</summary>
    /// <param name="summaries">The summaries BenchmarkDotNet returned.</param>
    /// <param name="torch">libtorch's set-up line (<see cref="Peer.LibTorchPeer.Initialise"/>).</param>
    /// <returns>False when a workload failed its validation or a benchmark produced no result.</returns>
    public static bool Report(IReadOnlyList<Summary> summaries, string torch)
    {
        var reports = summaries.SelectMany(s => s.Reports).ToList();
        var failed = reports.Where(r => r.ResultStatistics is null).Select(r => r.BenchmarkCase.DisplayInfo).ToList();
        var rows = reports
            .Where(r => r.BenchmarkCase.Parameters["Pass"] is Pass && WorkloadAttribute.Of(r.BenchmarkCase.Descriptor.Type) is not null)
            .GroupBy(r => (Type: WorkloadAttribute.DeclaringType(r.BenchmarkCase.Descriptor.Type), Pass: (Pass)r.BenchmarkCase.Parameters["Pass"]))
            .OrderBy(g => WorkloadAttribute.Of(g.Key.Type)!.Id, StringComparer.Ordinal).ThenBy(g => g.Key.Pass)
            .Select(g => Row(g.Key.Type, g.Key.Pass, g.ToList()))
            .ToList();
        var rates = rows.Select(r => r.Rate).OfType<string>().ToList();
        if (rows.Count == 0 && failed.Count == 0) return true;

        var validationFailures = rows.Select(r => r.Failure).OfType<string>().ToList();
        var jobs = reports.Select(r => r.BenchmarkCase.Job.DisplayInfo).Distinct().ToList();
        var notes = Notes(torch, jobs);
        string markdown = Markdown(notes, rows, rates, validationFailures, failed);
        Console.WriteLine();
        Console.WriteLine("// * DiffusionCore vs libtorch *");
        foreach (string line in notes) Console.WriteLine(line);
        Console.WriteLine();
        Console.WriteLine(Aligned(rows));
        if (rates.Count > 0) Console.WriteLine();
        foreach (string r in rates) Console.WriteLine(r);
        foreach (string f in validationFailures) Console.WriteLine($"VALIDATION FAILED: {f}");
        foreach (string f in failed) Console.WriteLine($"NO RESULT: {f}");

        string? folder = summaries.FirstOrDefault()?.ResultsDirectoryPath;
        if (folder is not null)
        {
            Directory.CreateDirectory(folder);
            string path = Path.Combine(folder, "peer-summary.md");
            File.WriteAllText(path, markdown);
            Console.WriteLine($"written: {path}");
        }
        return validationFailures.Count == 0 && failed.Count == 0;
    }

    /// <summary>One table row: the cells in <see cref="Header"/> order, the validation failure if any, and the
    /// line of rates at the medians for a workload measured as a rate.</summary>
    private sealed record TableRow(string[] Cells, string? Failure, string? Rate);

    private static TableRow Row(Type type, Pass pass, IReadOnlyList<BenchmarkReport> reports)
    {
        var workload = WorkloadAttribute.Of(type)!;
        double? Median(string method) => reports.FirstOrDefault(r => r.BenchmarkCase.Descriptor.WorkloadMethod.Name == method)
            ?.ResultStatistics?.Median;
        double? ours = Median(nameof(PeerBenchmark.Ours)), torch = Median(nameof(PeerBenchmark.LibTorch));
        double? kernel = Median(nameof(KernelPeerBenchmark.Kernel));
        double? flops = workload.Flops(pass);
        var validation = PeerValidation.Of(type, pass);
        string check = validation is null ? "not run"
            : validation.Failure is not null ? "FAILED"
            : validation.Note ?? string.Join(", ", validation.WorstError.Select(e => $"{e.Key} {e.Value:E1}"));
        return new TableRow(
        [
            $"{workload.Id} {workload.Description}", pass == Pass.Forward ? "fwd" : "fwd+bwd",
            Ms(ours), Ms(torch), Ratio(torch, ours), Rate(flops, ours), Rate(flops, torch),
            Ms(kernel), Ratio(torch, kernel), check,
        ], validation?.Failure, RateLine(workload, ours, torch));
    }

    /// <summary>"E3 at the median: ours 1.20 NFE/s (76.8 images/s), libtorch ..."; null for a workload without a rate unit.</summary>
    private static string? RateLine(WorkloadAttribute workload, double? ours, double? torch)
    {
        if (workload.RateUnit is null) return null;
        string Side(double? ns)
        {
            if (ns is null) return "-";
            double perSecond = 1e9 / ns.Value;
            string items = workload.ItemsPerRepetition > 0
                ? string.Create(CultureInfo.InvariantCulture, $" ({workload.ItemsPerRepetition * perSecond:F1} {workload.ItemUnit})") : "";
            return string.Create(CultureInfo.InvariantCulture, $"{perSecond:F3} {workload.RateUnit}{items}");
        }
        return $"{workload.Id} at the median: ours {Side(ours)}, libtorch {Side(torch)}";
    }

    private static List<string> Notes(string torch, IReadOnlyList<string> jobs) =>
    [
        $"date {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {CpuName()}, {Environment.ProcessorCount} logical cores; {Environment.OSVersion}; .NET {Environment.Version}",
        $"GLIBC_TUNABLES={Env("GLIBC_TUNABLES")} OMP_WAIT_POLICY={Env("OMP_WAIT_POLICY")} GOMP_SPINCOUNT={Env("GOMP_SPINCOUNT")}",
        $"TorchSharp-cpu 0.107.0 (libtorch 2.10); {torch}",
        $"BenchmarkDotNet medians in ms; job {string.Join("; ", jobs)}",
        "libtorch/ours > 1: ours is faster; GFLOP/s by the BENCHMARKS.md counts " +
            "(fwd+bwd = 3x fwd); \"ours\" = Engine ops with autograd, \"ours kernel\" = bare kernel calls on preallocated buffers; " +
            $"max rel. diff = ||side - libtorch||2 / ||libtorch||2 over all outputs and gradients (tolerance {PeerValidation.RelativeTolerance:E0})",
    ];

    private static string Markdown(List<string> notes, List<TableRow> rows, List<string> rates, List<string> validationFailures, List<string> failed)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# DiffusionCore vs libtorch (CPU)").AppendLine();
        foreach (string line in notes) sb.AppendLine($"- {line}");
        sb.AppendLine();
        sb.AppendLine("| " + string.Join(" | ", Header) + " |");
        sb.AppendLine("|" + string.Concat(Header.Select((_, i) => i < 2 ? "---|" : "---:|")));
        foreach (var row in rows) sb.AppendLine("| " + string.Join(" | ", row.Cells) + " |");
        if (rates.Count > 0) sb.AppendLine();
        foreach (string r in rates) sb.AppendLine($"- {r}");
        if (validationFailures.Count > 0 || failed.Count > 0) sb.AppendLine();
        foreach (string f in validationFailures) sb.AppendLine($"- VALIDATION FAILED: {f}");
        foreach (string f in failed) sb.AppendLine($"- NO RESULT: {f}");
        return sb.ToString();
    }

    private static string Aligned(List<TableRow> rows)
    {
        var all = new List<string[]> { Header };
        all.AddRange(rows.Select(r => r.Cells));
        var widths = Enumerable.Range(0, Header.Length).Select(i => all.Max(c => c[i].Length)).ToArray();
        return string.Join(Environment.NewLine, all.Select(cells => string.Join("  ",
            cells.Select((c, i) => i < 2 || i == cells.Length - 1 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd()));
    }

    private static string CpuName()
    {
        const string cpuinfo = "/proc/cpuinfo";
        if (!File.Exists(cpuinfo)) return "CPU unknown";
        string? line = File.ReadLines(cpuinfo).FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
        return line is null ? "CPU unknown" : line[(line.IndexOf(':') + 1)..].Trim();
    }

    private static string Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : "(unset)";
    private static string Ms(double? ns) => ns is null ? "-" : (ns.Value / 1e6).ToString("F3", CultureInfo.InvariantCulture);
    private static string Ratio(double? peer, double? ours) => peer is null || ours is null ? "-" : (peer.Value / ours.Value).ToString("F2", CultureInfo.InvariantCulture);
    private static string Rate(double? flops, double? ns) => flops is null || ns is null ? "-" : (flops.Value / ns.Value).ToString("F1", CultureInfo.InvariantCulture);
}
