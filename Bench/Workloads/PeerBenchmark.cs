using System.Reflection;
using BenchmarkDotNet.Attributes;
using DiffusionCore.Bench.Peer;

namespace DiffusionCore.Bench.Workloads;

/// <summary>Which part of a workload one benchmark times.</summary>
public enum Pass
{
    /// <summary>The forward computation alone, without recording an autograd graph.</summary>
    Forward,

    /// <summary>The forward with its graph recorded, then every gradient for a fixed upstream gradient.</summary>
    ForwardBackward,
}

/// <summary>
/// One implementation of a workload, built on inputs shared with the other implementations.
/// </summary>
/// <param name="Name">Who computes it ("ours", "ours kernel", "libtorch"), for messages.</param>
/// <param name="Run">One timed repetition; everything it allocates is freed before it returns.</param>
/// <param name="Results">Runs one more repetition and returns its outputs as host arrays: the forward output
/// first, then the gradients in the order of the workload's inputs.</param>
/// <param name="Release">Frees the inputs (native libtorch memory); null when the garbage collector suffices.</param>
/// <param name="ParameterCount">Scalar parameters of the model the side runs (end-to-end workloads), which
/// <see cref="PeerValidation"/> requires equal on every side; null for a workload without a model.</param>
public sealed record WorkloadSide(string Name, Action Run, Func<float[][]> Results, Action? Release = null, long? ParameterCount = null);

/// <summary>The implementations of one workload and pass: ours through the Engine, libtorch's, and
/// optionally ours as bare kernel calls on preallocated buffers (which shows the Engine's own cost).</summary>
/// <param name="Ours">DiffusionCore through the Engine.</param>
/// <param name="LibTorch">The peer, and the reference of the validation.</param>
/// <param name="Kernel">Our bare kernels, where the workload is one kernel.</param>
/// <param name="ZeroOutputs">Outputs that are zero in exact arithmetic, each mapped to the output (of the same
/// units) whose norm measures its error in <see cref="PeerValidation"/>: both sides return rounding noise
/// there, so an error relative to its own norm would mean nothing.</param>
/// <param name="ValuesComparable">False for an end-to-end workload whose sides run differently initialised
/// random models (each library's own initialisation): their outputs cannot agree in value, so
/// <see cref="PeerValidation"/> checks only that both sides' outputs are finite and have the same count and
/// lengths, and that their <see cref="WorkloadSide.ParameterCount"/>s are equal.</param>
public sealed record WorkloadSides(WorkloadSide Ours, WorkloadSide LibTorch, WorkloadSide? Kernel = null,
    IReadOnlyDictionary<int, int>? ZeroOutputs = null, bool ValuesComparable = true)
{
    /// <summary>Every side, libtorch first (the reference of the validation).</summary>
    public IEnumerable<WorkloadSide> All => Kernel is null ? [LibTorch, Ours] : [LibTorch, Ours, Kernel];
}

/// <summary>
/// Names a BENCHMARKS.md workload on its benchmark class and gives its standard flop count.
/// </summary>
/// <param name="id">The BENCHMARKS.md id, e.g. "K3".</param>
/// <param name="description">What is computed, with the shapes.</param>
/// <param name="forwardFlops">Floating-point operations of one forward (BENCHMARKS.md "How to measure":
/// 2·M·N·K for a GEMM, 2·N·Cout·Hout·Wout·Cin·kh·kw for a conv); 0 where no flop rate is meaningful
/// (memory-bound workloads). The backward counts twice the forward, so forward+backward is three times it.</param>
[AttributeUsage(AttributeTargets.Class)]
public sealed class WorkloadAttribute(string id, string description, double forwardFlops = 0) : Attribute
{
    /// <summary>The BENCHMARKS.md id.</summary>
    public string Id { get; } = id;

    /// <summary>What is computed, with the shapes.</summary>
    public string Description { get; } = description;

    /// <summary>Operations of one forward; 0 when not counted.</summary>
    public double ForwardFlops { get; } = forwardFlops;

    /// <summary>
    /// What one repetition is, as a rate unit for the summary (e.g. "steps/s", "NFE/s"), for workloads that
    /// BENCHMARKS.md measures as a rate; null when the summary gives times only.
    /// </summary>
    public string? RateUnit { get; set; }

    /// <summary>Items one repetition processes (e.g. E3's 64 images per network evaluation), or 0 for none.</summary>
    public int ItemsPerRepetition { get; set; }

    /// <summary>The rate unit of <see cref="ItemsPerRepetition"/> (e.g. "images/s").</summary>
    public string? ItemUnit { get; set; }

    /// <summary>Operations of one repetition of <paramref name="pass"/>, or null when not counted.</summary>
    public double? Flops(Pass pass) => ForwardFlops <= 0 ? null : pass == Pass.Forward ? ForwardFlops : 3 * ForwardFlops;

    /// <summary>The attribute on <paramref name="type"/> or its nearest base class that has one, or null.</summary>
    public static WorkloadAttribute? Of(Type type) => type.GetCustomAttribute<WorkloadAttribute>(inherit: true);

    /// <summary>
    /// The class that declares the workload: <paramref name="type"/> or its nearest base class with the attribute.
    /// BenchmarkDotNet's in-process toolchain runs a generated subclass of the benchmark class, so an instance's
    /// GetType() is not the benchmark class.
    /// </summary>
    public static Type DeclaringType(Type type)
    {
        for (Type? t = type; t is not null; t = t.BaseType)
            if (t.IsDefined(typeof(WorkloadAttribute), inherit: false)) return t;
        return type;
    }
}

/// <summary>
/// A BENCHMARKS.md workload timed for DiffusionCore and for libtorch (TorchSharp-cpu) in the same
/// BenchmarkDotNet run: <see cref="LibTorch"/> is the baseline, <see cref="Ours"/> runs the same computation
/// through the Engine's tensor ops on the CpuBackend, on the same input values. Before any timing, the
/// global set-up compares every side's outputs and gradients with libtorch's (<see cref="PeerValidation"/>)
/// and throws when they disagree, so a benchmark of a wrong result never runs.
/// </summary>
public abstract class PeerBenchmark
{
    private WorkloadSides? _sides;

    /// <summary>The pass this benchmark case times.</summary>
    [ParamsSource(nameof(Passes))]
    public Pass Pass { get; set; }

    /// <summary>The passes BENCHMARKS.md measures for this workload: forward and forward+backward unless overridden.</summary>
    public virtual IEnumerable<Pass> Passes => [Pass.Forward, Pass.ForwardBackward];

    /// <summary>The sides, once <see cref="Setup"/> has run.</summary>
    protected WorkloadSides Sides => _sides ?? throw new InvalidOperationException($"{GetType().Name}: GlobalSetup has not run");

    /// <summary>
    /// Loads libtorch (<see cref="LibTorchPeer.Initialise"/>: patched native library, all cores), builds every
    /// side on shared inputs, and validates them against each other once per workload and pass.
    /// </summary>
    [GlobalSetup]
    public void Setup()
    {
        LibTorchPeer.Initialise();
        _sides = Build(Pass);
        PeerValidation.ValidateOnce(WorkloadAttribute.DeclaringType(GetType()), Pass, _sides);
    }

    /// <summary>Frees the libtorch inputs, which the garbage collector does not see.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (_sides is null) return;
        foreach (var side in _sides.All) side.Release?.Invoke();
        _sides = null;
    }

    /// <summary>libtorch 2.10 through TorchSharp-cpu 0.107: the peer, and the baseline of the ratio.</summary>
    [Benchmark(Baseline = true, Description = "libtorch")]
    public void LibTorch() => Sides.LibTorch.Run();

    /// <summary>DiffusionCore: Engine tensors and ops on the CpuBackend, autograd for the backward.</summary>
    [Benchmark(Description = "ours")]
    public void Ours() => Sides.Ours.Run();

    /// <summary>Allocates the inputs (seeded) and builds every side of the workload for <paramref name="pass"/>.</summary>
    protected abstract WorkloadSides Build(Pass pass);
}

/// <summary>
/// A <see cref="PeerBenchmark"/> whose workload is also timed as bare kernel calls on preallocated buffers
/// (the Kernels project, no Tensor): the difference to <see cref="PeerBenchmark.Ours"/> is what the Engine's
/// allocation, dispatch and autograd cost.
/// </summary>
public abstract class KernelPeerBenchmark : PeerBenchmark
{
    /// <summary>Our kernels called directly.</summary>
    [Benchmark(Description = "ours kernel")]
    public void Kernel() => (Sides.Kernel ?? throw new InvalidOperationException($"{GetType().Name}: no kernel side built")).Run();
}
