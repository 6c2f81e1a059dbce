using System.Diagnostics;
using System.Reflection;
using ILGPU.Runtime;

namespace DiffusionCore.Kernels.Ilgpu;

/// <summary>Time ILGPU took to compile and load one kernel on one accelerator.</summary>
/// <param name="Kernel">The kernel's registry name.</param>
/// <param name="Accelerator">The accelerator's name.</param>
/// <param name="Elapsed">Wall time of the compile and load.</param>
public readonly record struct KernelCompileRecord(string Kernel, string Accelerator, TimeSpan Elapsed);

/// <summary>
/// The kernels of one accelerator, each compiled once on first use and kept (with its typed launcher) for the
/// life of the backend. ILGPU's own kernel cache is weakly referenced and would recompile after a collection
/// (shared/ARCHITECTURE.md, "ILGPU facts and pitfalls"); this one holds strong references.
/// Every compile is timed: see <see cref="Records"/>, <see cref="TotalCompileTime"/> and <see cref="KernelCompiled"/>.
/// </summary>
public sealed class IlgpuKernelCache
{
    private readonly Accelerator _accelerator;
    private readonly Dictionary<MethodInfo, Kernel> _kernels = [];
    private readonly Dictionary<MethodInfo, Delegate> _launchers = [];
    private readonly List<KernelCompileRecord> _records = [];
    private readonly Lock _lock = new();

    /// <summary>An empty cache for <paramref name="accelerator"/> (each <see cref="IlgpuBackend"/> owns one).</summary>
    public IlgpuKernelCache(Accelerator accelerator) => _accelerator = accelerator;

    /// <summary>The accelerator the kernels are compiled for.</summary>
    public Accelerator Accelerator => _accelerator;

    /// <summary>Raised after each kernel compile, on any accelerator (for logs and the CLI's report).</summary>
    public static event Action<KernelCompileRecord>? KernelCompiled;

    /// <summary>Compile times of the kernels loaded so far, in load order.</summary>
    public IReadOnlyList<KernelCompileRecord> Records
    {
        get { lock (_lock) return _records.ToArray(); }
    }

    /// <summary>Sum of the compile times so far.</summary>
    public TimeSpan TotalCompileTime
    {
        get { lock (_lock) return TimeSpan.FromTicks(_records.Sum(r => r.Elapsed.Ticks)); }
    }

    /// <summary>Number of kernels compiled and held.</summary>
    public int Count
    {
        get { lock (_lock) return _kernels.Count; }
    }

    /// <summary>
    /// The launcher of <paramref name="kernel"/> (a registered kernel method), compiling it on first use.
    /// <typeparamref name="TLauncher"/> is the kernel's signature with an <see cref="AcceleratorStream"/> first and
    /// then its index (implicitly grouped) or a <c>KernelConfig</c> (explicitly grouped).
    /// </summary>
    public TLauncher Get<TLauncher>(Delegate kernel) where TLauncher : Delegate
    {
        var method = kernel.Method;
        lock (_lock)
        {
            if (_launchers.TryGetValue(method, out var cached)) return (TLauncher)cached;
            var launcher = LoadLocked(method).CreateLauncherDelegate<TLauncher>();
            _launchers.Add(method, launcher);
            return launcher;
        }
    }

    /// <summary>Compiles every registered kernel whose element type is <paramref name="elementType"/> (start-up warm-up).</summary>
    public void Precompile(Type elementType)
    {
        foreach (var spec in IlgpuKernelRegistry.All)
            if (!spec.Method.IsGenericMethod || spec.Method.GetGenericArguments()[0] == elementType)
                lock (_lock) LoadLocked(spec.Method);
    }

    private Kernel LoadLocked(MethodInfo method)
    {
        if (_kernels.TryGetValue(method, out var kernel)) return kernel;
        var spec = IlgpuKernelRegistry.Find(method)
            ?? throw new KernelException("IlgpuKernelCache", $"kernel {IlgpuKernelRegistry.Describe(method)} is not registered: mark it [IlgpuKernel] (Kernels/Ilgpu/IlgpuKernelRegistry.cs) so the PTX test compiles it");
        var watch = Stopwatch.StartNew();
        kernel = spec.Grouping == KernelGrouping.Explicit ? _accelerator.LoadKernel(method) : _accelerator.LoadAutoGroupedKernel(method);
        watch.Stop();
        _kernels.Add(method, kernel);
        var record = new KernelCompileRecord(spec.Name, _accelerator.Name, watch.Elapsed);
        _records.Add(record);
        KernelCompiled?.Invoke(record);
        return kernel;
    }
}
