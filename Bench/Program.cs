using BenchmarkDotNet.Running;
using DiffusionCore.Bench.Peer;

namespace DiffusionCore.Bench;

/// <summary>
/// Entry point: BenchmarkDotNet over the BENCHMARKS.md workloads K1-K7, E1, E2, E3 and E5, each timed for DiffusionCore and for
/// libtorch (TorchSharp-cpu) in the same run, then the side-by-side table of <see cref="PeerSummary"/>.
/// <c>Bench/run-peer.sh</c> runs it with the tuned and the as-shipped libtorch environment; directly:
/// <c>dotnet run -c Release --project Bench -- --filter '*K6*'</c> (any BenchmarkDotNet option).
/// <c>dotnet run -c Release --project Bench -- flow-memory</c> prints the continuous flow's adjoint-vs-backprop
/// memory table instead (<see cref="FlowMemory"/>).
/// </summary>
public static class Program
{
    /// <summary>Runs the benchmarks chosen by <paramref name="args"/> and prints and writes the summary table.</summary>
    /// <returns>0, or 1 when a workload failed its validation or a benchmark failed to run.</returns>
    public static int Main(string[] args)
    {
        if (args is [FlowMemory.Mode]) return FlowMemory.Run();
        if (args is ["lab", .. var lab]) return Lab.ConvLab.Run(lab);
        // Patch and load libtorch before BenchmarkDotNet touches any benchmark type (see LibTorchPeer.Initialise).
        string torch = LibTorchPeer.Initialise();
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create()).ToList();
        return PeerSummary.Report(summaries, torch) ? 0 : 1;
    }
}
