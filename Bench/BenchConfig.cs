using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using DiffusionCore.Bench.Workloads;
using Perfolizer.Horology;
using Perfolizer.Metrology;

namespace DiffusionCore.Bench;

/// <summary>Settings shared by every benchmark in this project.</summary>
public static class BenchConfig
{
    /// <summary>Warm-up iterations of the default job.</summary>
    public const int WarmupIterations = 3;

    /// <summary>Measured iterations of the default job; the median of these is reported.</summary>
    public const int MeasuredIterations = 9;

    /// <summary>Target length of one iteration; BenchmarkDotNet repeats a short call until an iteration lasts this long.</summary>
    public const int IterationMilliseconds = 250;

    /// <summary>
    /// A short job (3 warm-up and 9 measured iterations of about 250 ms, median reported) run in-process:
    /// the libtorch peer needs its native library patched in this build's output (LibTorchPeer), and a child
    /// process per benchmark would add a full build each time. The ratio column reads "x faster/slower than
    /// libtorch" (the baseline); the GFLOP/s column reads <see cref="WorkloadAttribute"/>.
    /// </summary>
    public static IConfig Create() => ManualConfig.Create(DefaultConfig.Instance)
        .AddJob(Job.Default
            .WithWarmupCount(WarmupIterations)
            .WithIterationCount(MeasuredIterations)
            .WithIterationTime(TimeInterval.FromMilliseconds(IterationMilliseconds))
            .WithToolchain(InProcessEmitToolchain.Instance)
            .AsDefault())
        .AddColumn(StatisticColumn.Median, new GflopsColumn())
        .WithSummaryStyle(SummaryStyle.Default.WithRatioStyle(RatioStyle.Trend));
}

/// <summary>BenchmarkDotNet column: GFLOP/s at the median time, for workloads whose <see cref="WorkloadAttribute"/> counts flops.</summary>
public sealed class GflopsColumn : IColumn
{
    /// <summary>Operations of one invocation of <paramref name="benchmarkCase"/>, or null when not counted.</summary>
    public static double? Flops(BenchmarkCase benchmarkCase)
        => benchmarkCase.Parameters["Pass"] is Pass pass ? WorkloadAttribute.Of(benchmarkCase.Descriptor.Type)?.Flops(pass) : null;

    /// <summary>GFLOP/s of <paramref name="benchmarkCase"/> at <paramref name="nanoseconds"/> per invocation, or null.</summary>
    public static double? Gflops(BenchmarkCase benchmarkCase, double nanoseconds)
        => Flops(benchmarkCase) is { } flops && nanoseconds > 0 ? flops / nanoseconds : null;

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
    public string Legend => "Billions of floating-point operations per second at the median time (BENCHMARKS.md counts)";

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
