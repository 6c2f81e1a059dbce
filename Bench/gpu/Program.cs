using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using DiffusionCore.Engine;
using DiffusionCore.Kernels.Ilgpu;
using NUnit.Framework.Api;
using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;

namespace DiffusionCore.GpuBench;

/// <summary>
/// The CUDA runner of Bench/gpu/run-gpu.sh, published self-contained (the GPU machine has no .NET SDK):
/// <list type="bullet">
/// <item><c>parity</c>: the backend-parity suite (<see cref="CudaParityTests"/>) on CUDA device 0, through NUnit's
/// own runner; exit code 1 when a test fails;</item>
/// <item><c>compile</c>: compiles every float32 kernel of the registry on the device and prints the compile times;</item>
/// <item><c>bench [ids] [--peer peer.json] [--json ours.json]</c>: times the K workloads (<see cref="Workloads"/>) on
/// the device and, given peer.py's results, prints the ratio peer / ours (above 1: we are faster).</item>
/// </list>
/// </summary>
public static class Program
{
    /// <summary>Runs the mode named by the first argument.</summary>
    public static int Main(string[] args)
    {
        if (Device.CudaDeviceCount == 0)
        {
            Console.Error.WriteLine("no CUDA device found (ILGPU sees none): nothing to run");
            return 2;
        }
        return args switch
        {
            ["parity", ..] => Parity(),
            ["compile", ..] => Compile(),
            ["bench", .. var rest] => Bench(rest),
            _ => Usage(),
        };
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: DiffusionCore.GpuBench parity | compile | bench [K1 K3 ...] [--peer peer.json] [--json ours.json]");
        return 2;
    }

    private static int Parity()
    {
        var runner = new NUnitTestAssemblyRunner(new DefaultTestAssemblyBuilder());
        runner.Load(typeof(CudaParityTests).Assembly, new Dictionary<string, object>());
        var filter = TestFilter.FromXml($"<filter><class>{typeof(CudaParityTests).FullName}</class></filter>");
        var watch = Stopwatch.StartNew();
        var result = runner.Run(new FailurePrinter(), filter);
        Console.WriteLine($"parity on {Device.Cuda(0).Backend.Name} ({Workloads.Ilgpu(Device.Cuda(0)).Accelerator.Name}): " +
            $"{result.PassCount} passed, {result.FailCount} failed, {result.InconclusiveCount} inconclusive, {result.SkipCount} skipped in {watch.Elapsed.TotalSeconds:F1} s");
        PrintCompileTimes(Workloads.Ilgpu(Device.Cuda(0)), top: 5);
        return result.FailCount == 0 && result.PassCount > 0 ? 0 : 1;
    }

    /// <summary>Prints each failed test case with its message as the suite runs.</summary>
    private sealed class FailurePrinter : ITestListener
    {
        public void TestStarted(ITest test) { }

        public void TestFinished(ITestResult result)
        {
            if (result.Test.IsSuite || result.ResultState.Status == TestStatus.Passed) return;
            Console.WriteLine($"{result.ResultState.Status.ToString().ToUpperInvariant()} {result.Test.FullName}: {result.Message}");
        }

        public void TestOutput(TestOutput output) => Console.Write(output.Text);

        public void SendMessage(TestMessage message) { }
    }

    private static int Compile()
    {
        var backend = Workloads.Ilgpu(Device.Cuda(0));
        var watch = Stopwatch.StartNew();
        backend.Kernels.Precompile(typeof(float));
        Console.WriteLine($"{backend.Kernels.Count} float32 kernels compiled on {backend.Accelerator.Name} in {watch.Elapsed.TotalSeconds:F1} s");
        PrintCompileTimes(backend, top: int.MaxValue);
        return 0;
    }

    private static void PrintCompileTimes(IlgpuBackend backend, int top)
    {
        var records = backend.Kernels.Records;
        Console.WriteLine($"compile time: {records.Count} kernels, {backend.Kernels.TotalCompileTime.TotalSeconds:F2} s in all");
        foreach (var r in records.OrderByDescending(r => r.Elapsed).Take(top))
            Console.WriteLine($"  {r.Elapsed.TotalMilliseconds,9:F1} ms  {r.Kernel}");
    }

    /// <summary>Batches timed per workload; the median batch is reported (shared/BENCHMARKS.md asks for at least 5).</summary>
    private const int Batches = 7;

    /// <summary>Each batch runs the call enough times to last about this long, so launch jitter averages out.</summary>
    private static readonly TimeSpan BatchTarget = TimeSpan.FromMilliseconds(50);

    private static int Bench(string[] args)
    {
        string? peerPath = null, jsonPath = null;
        var names = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--peer" && i + 1 < args.Length) peerPath = args[++i];
            else if (args[i] == "--json" && i + 1 < args.Length) jsonPath = args[++i];
            else names.Add(args[i]);
        }
        var device = Device.Cuda(0);
        var backend = Workloads.Ilgpu(device);
        var peer = peerPath is null ? null : JsonNode.Parse(File.ReadAllText(peerPath));
        var ours = new JsonObject();
        Console.WriteLine($"DiffusionCore on {backend.Accelerator.Name} ({DateTime.UtcNow:yyyy-MM-dd}); peer: {peer?["torch"] ?? "none"} on {peer?["device"] ?? "-"}");
        Console.WriteLine($"{"workload",-15} {"ours ms",9} {"peer ms",9} {"ratio",6} {"ours GF/s",10} {"peer GF/s",10} {"compile s",9}  description");
        foreach (var w in Workloads.Select(names))
        {
            var (ms, compile) = Time(w, device, backend);
            double? peerMs = peer?["workloads"]?[w.Id]?["ms"]?.GetValue<double>();
            ours[w.Id] = new JsonObject { ["ms"] = ms, ["compile_s"] = compile };
            Console.WriteLine($"{w.Id,-15} {ms,9:F3} {Format(peerMs, "F3"),9} {Format(peerMs / ms, "F2"),6} {Rate(w.Flops, ms),10} {Rate(w.Flops, peerMs),10} {compile,9:F2}  {w.Description}");
        }
        PrintCompileTimes(backend, top: 5);
        if (jsonPath is not null)
        {
            var doc = new JsonObject { ["device"] = backend.Accelerator.Name, ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), ["workloads"] = ours };
            File.WriteAllText(jsonPath, doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        return 0;
    }

    /// <summary>
    /// Median milliseconds per call after warm-up, and the seconds the first call spent compiling kernels (kept out of
    /// the timing). Each batch ends with a device synchronisation, so queued work is counted.
    /// </summary>
    private static (double Ms, double CompileSeconds) Time(Workload w, Device device, IlgpuBackend backend)
    {
        var before = backend.Kernels.TotalCompileTime;
        var call = w.Create(device);
        call();
        backend.Synchronize();
        double compile = (backend.Kernels.TotalCompileTime - before).TotalSeconds;
        for (int i = 0; i < 3; i++) call();
        backend.Synchronize();
        var watch = Stopwatch.StartNew();
        call();
        backend.Synchronize();
        int perBatch = (int)Math.Clamp(Math.Ceiling(BatchTarget.TotalMilliseconds / Math.Max(watch.Elapsed.TotalMilliseconds, 1e-3)), 1, 1000);
        var samples = new double[Batches];
        for (int b = 0; b < Batches; b++)
        {
            watch.Restart();
            for (int i = 0; i < perBatch; i++) call();
            backend.Synchronize();
            samples[b] = watch.Elapsed.TotalMilliseconds / perBatch;
        }
        Array.Sort(samples);
        return (samples[Batches / 2], compile);
    }

    private static string Format(double? value, string format) => value is null ? "-" : value.Value.ToString(format, CultureInfo.InvariantCulture);

    private static string Rate(double flops, double? ms) => flops == 0 || ms is null ? "-" : (flops / (ms.Value * 1e6)).ToString("F0", CultureInfo.InvariantCulture);
}
