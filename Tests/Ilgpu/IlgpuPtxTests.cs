using NUnit.Framework;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace DiffusionCore.Tests.Ilgpu;

/// <summary>
/// Every kernel of <see cref="IlgpuKernelRegistry"/> (each instantiation, float and double) compiles to PTX for
/// sm_80 (A100) and sm_90 (H100) through ILGPU's PTX backend, which needs no GPU: a kernel that uses something
/// CUDA cannot run (a managed object, an unsupported intrinsic, a dynamic shared-memory size where a constant is
/// required) fails here, on CI. The context is built as <see cref="IlgpuBackend.CreateCuda"/> builds it
/// (algorithms enabled, no assertions), so the PTX is what a GPU would load.
/// </summary>
[TestFixture]
public sealed class IlgpuPtxTests
{
    private static readonly CudaArchitecture[] Architectures = [CudaArchitecture.SM_80, CudaArchitecture.SM_90];
    private Context _context = null!;
    private readonly Dictionary<CudaArchitecture, PTXBackend> _backends = [];

    [OneTimeSetUp]
    public void CreateBackends()
    {
        _context = Context.Create(b => b.EnableAlgorithms());
        foreach (var arch in Architectures)
            _backends[arch] = new PTXBackend(_context, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_80, null);
    }

    [OneTimeTearDown]
    public void DisposeBackends()
    {
        foreach (var backend in _backends.Values) backend.Dispose();
        _context.Dispose();
    }

    private static IEnumerable<TestCaseData> Kernels() =>
        IlgpuKernelRegistry.All.Select(spec => new TestCaseData(spec).SetArgDisplayNames(spec.Name));

    private string CompilePtx(IlgpuKernelSpec spec, CudaArchitecture arch)
    {
        var entry = spec.Grouping == KernelGrouping.Explicit
            ? EntryPointDescription.FromExplicitlyGroupedKernel(spec.Method)
            : EntryPointDescription.FromImplicitlyGroupedKernel(spec.Method);
        return ((PTXCompiledKernel)_backends[arch].Compile(entry, default)).PTXAssembly;
    }

    [TestCaseSource(nameof(Kernels))]
    public void Kernel_CompilesToPtx(IlgpuKernelSpec spec)
    {
        foreach (var arch in Architectures)
        {
            string ptx = CompilePtx(spec, arch);
            Assert.That(ptx, Does.Contain(".entry"), $"{spec.Name} for {arch}");
            // ILGPU 1.5.3 writes the lowest target the kernel needs (sm_80 here, for both backends: the driver
            // JIT-compiles sm_80 PTX for an sm_90 device), never one above the backend's architecture.
            var target = ptx.Split('\n').Single(l => l.StartsWith(".target sm_", StringComparison.Ordinal));
            int sm = int.Parse(target[".target sm_".Length..].TrimEnd(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.That(sm, Is.LessThanOrEqualTo(arch.Major * 10 + arch.Minor), $"{spec.Name} for {arch}: {target}");
        }
    }

    [Test]
    public void Gemm_KeepsItsAccumulatorsInRegisters()
    {
        // The 64 accumulators of a thread are struct fields, not an array, so that they live in registers; PTX
        // that declared .local memory would mean they spilled to (slow, off-chip) local memory.
        var spec = IlgpuKernelRegistry.All.Single(s => s.Name == "GemmIlgpu.Gemm<Single>");
        string ptx = CompilePtx(spec, CudaArchitecture.SM_90);
        Assert.That(ptx, Does.Not.Contain(".local"));
        Assert.That(ptx, Does.Contain(".shared"));
    }

    [Test]
    public void Registry_InstantiatesEveryMarkedKernelAndEveryOp()
    {
        var specs = IlgpuKernelRegistry.All;
        foreach (var method in IlgpuKernelRegistry.MarkedMethods())
            Assert.That(specs.Any(s => (s.Method.IsGenericMethod ? s.Method.GetGenericMethodDefinition() : s.Method) == method),
                $"{method.DeclaringType!.Name}.{method.Name} is marked [IlgpuKernel] but no instantiation satisfies its constraints");
        // Each elementwise op struct reaches its kernel for both element types (the registry finds them by their interfaces).
        foreach (var name in new[] { "ElementwiseIlgpu.Map<Single, ExpOp<Single>>", "ElementwiseIlgpu.Map<Double, SoftplusOp<Double>>",
                     "ElementwiseIlgpu.ZipStrided<Single, MaxOp<Single>>", "ElementwiseIlgpu.Zip3<Double, WhereOp<Double>>",
                     "ReduceIlgpu.ReduceRows<Single, SumOp<Single>>", "PhiloxIlgpu.Fill<Double, DoubleFromSingle>" })
            Assert.That(specs.Select(s => s.Name), Does.Contain(name));
        Assert.That(specs.Select(s => s.Name), Does.Not.Contain("PhiloxIlgpu.Fill<Single, DoubleFromSingle>"), "constraints must exclude mismatched conversions");
        Assert.That(specs.Select(s => s.Name).Distinct().Count(), Is.EqualTo(specs.Count));
    }
}
