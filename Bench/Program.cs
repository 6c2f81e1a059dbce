using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace DiffusionCore.Bench;

/// <summary>
/// Entry point: <c>dotnet run -c Release --project Bench -- --filter '*Gemm*'</c>, or <c>-- peer [K1 K3 ...]</c> for the side-by-side table against libtorch. Runs the selected
/// BenchmarkDotNet classes, then prints one line per workload: median time and GFLOP/s.
/// </summary>
public static class Program
{
    /// <summary>Runs the benchmarks chosen by <paramref name="args"/> and prints the summary table.</summary>
    public static void Main(string[] args)
    {
        // Peer mode (Bench/run-peer.sh): ours and libtorch alternating in one process, ratio table.
        if (args is ["peer", .. var workloads])
        {
            Peer.OursWorkloads.Register();
            Peer.PeerTable.Run(workloads);
            return;
        }
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create()).ToList();
        PrintSummary(summaries);
    }

    private static void PrintSummary(IReadOnlyList<Summary> summaries)
    {
        var rows = summaries.SelectMany(s => s.Reports).Where(r => r.ResultStatistics is not null).ToList();
        if (rows.Count == 0) return;
        Console.WriteLine();
        Console.WriteLine($"{"workload",-48} {"median ms",10} {"GFLOP/s",9}");
        foreach (var report in rows)
        {
            var benchmark = report.BenchmarkCase;
            double medianMs = report.ResultStatistics!.Median / 1e6;
            double? gflops = GflopsColumn.Gflops(benchmark, report.ResultStatistics.Median);
            string workload = benchmark.Descriptor.WorkloadMethodDisplayInfo.Trim('\'') +
                (benchmark.HasParameters ? " " + benchmark.Parameters.DisplayInfo : "");
            Console.WriteLine($"{workload,-48} {medianMs,10:F3} {(gflops is null ? "-" : gflops.Value.ToString("F1")),9}");
        }
    }
}

/// <summary>Settings shared by every benchmark in this project.</summary>
public static class BenchConfig
{
    /// <summary>
    /// A short job (3 warm-up and 9 measured iterations, median reported) run in-process: this machine has
    /// two cores shared with builds, and a child process per benchmark would add a full build each time.
    /// The GFLOP/s column reads <see cref="FlopsAttribute"/> from the benchmark method.
    /// </summary>
    public static IConfig Create() => ManualConfig.Create(DefaultConfig.Instance)
        .AddJob(Job.Default
            .WithWarmupCount(3)
            .WithIterationCount(9)
            .WithToolchain(InProcessEmitToolchain.Instance)
            .AsDefault())
        .AddColumn(StatisticColumn.Median, new GflopsColumn());
}

/// <summary>Floating-point operations done by one invocation of the benchmark method it marks.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class FlopsAttribute(double flops) : Attribute
{
    /// <summary>Operations per invocation (2·M·N·K for a GEMM).</summary>
    public double Flops { get; } = flops;
}

/// <summary>BenchmarkDotNet column: GFLOP/s at the median time, for methods marked with <see cref="FlopsAttribute"/>.</summary>
public sealed class GflopsColumn : IColumn
{
    /// <summary>GFLOP/s of <paramref name="benchmarkCase"/> at <paramref name="nanoseconds"/> per invocation, or null if unmarked.</summary>
    public static double? Gflops(BenchmarkCase benchmarkCase, double nanoseconds)
    {
        var flops = benchmarkCase.Descriptor.WorkloadMethod.GetCustomAttribute<FlopsAttribute>()?.Flops;
        return flops is null || nanoseconds <= 0 ? null : flops.Value / nanoseconds;
    }

    /// <inheritdoc />
    public string Id => nameof(GflopsColumn);

    /// <inheritdoc />
    public string ColumnName => "GFLOP/s";

    /// <inheritdoc />
    public bool AlwaysShow => true;

    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc />
    public int PriorityInCategory => 0;

    /// <inheritdoc />
    public bool IsNumeric => true;

    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc />
    public string Legend => "Billions of floating-point operations per second at the median time";

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var stats = summary[benchmarkCase]?.ResultStatistics;
        var gflops = stats is null ? null : Gflops(benchmarkCase, stats.Median);
        return gflops is null ? "-" : gflops.Value.ToString("F1");
    }

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
