using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using DiffusionCore.Kernels.Attention;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Elementwise;
using DiffusionCore.Kernels.Gemm;
using DiffusionCore.Kernels.Memory;
using DiffusionCore.Kernels.Norm;
using DiffusionCore.Kernels.Optim;
using DiffusionCore.Kernels.Random;
using DiffusionCore.Kernels.Resample;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace DiffusionCore.Kernels.Ilgpu;

/// <summary>
/// The ILGPU backend: every primitive as an ILGPU kernel on one accelerator (CUDA on NVIDIA GPUs; ILGPU's CPU
/// accelerator, an emulator of GPU threads, for parity tests at small sizes). Buffers come from a caching pool
/// (<see cref="Pool"/>), kernels are compiled once on first use and kept (<see cref="Kernels"/>), and every
/// launch goes to the accelerator's default stream in order: an op returns as soon as its kernels are queued,
/// and only <see cref="CheckedBackend{TBuffer}.Download{T}"/> (a scalar or result asked for by the host) waits for the device.
/// float32 and float64 buffers are both supported (float64 for gradient checks). Arguments are checked by
/// <see cref="CheckedBackend{TBuffer}"/> before the cores below run; every fused capability is provided.
/// </summary>
public sealed partial class IlgpuBackend : CheckedBackend<IlgpuBuffer>
{
    private readonly Context? _context;
    private readonly bool _ownsAccelerator;
    private readonly int _groupSize;

    /// <summary>Smallest thread group the backend needs (the reduction kernels' group on the CPU emulator).</summary>
    private const int MinGroupSize = 32;

    /// <summary>
    /// Wraps an accelerator the caller owns (and disposes after this backend). Its groups must allow 32 threads,
    /// and <see cref="GemmIlgpu.GroupSize"/> for <see cref="Gemm"/>: ILGPU's default CPU device allows 16, so build
    /// CPU contexts with <c>CPU(CPUDeviceKind.Nvidia)</c>; the context needs <c>EnableAlgorithms()</c> for the math functions.
    /// </summary>
    public IlgpuBackend(Accelerator accelerator, string? name = null) : this(null, accelerator, name ?? accelerator.Name, ownsAccelerator: false)
    {
    }

    private IlgpuBackend(Context? context, Accelerator accelerator, string name, bool ownsAccelerator)
    {
        if (accelerator.MaxNumThreadsPerGroup < MinGroupSize)
            throw new KernelException("IlgpuBackend", $"accelerator '{accelerator.Name}' allows {accelerator.MaxNumThreadsPerGroup} threads per group, the reduction kernels need {MinGroupSize} (for ILGPU's CPU accelerator use CPUDeviceKind.Nvidia or a CPUDevice with 32-thread warps)");
        _context = context;
        _ownsAccelerator = ownsAccelerator;
        Accelerator = accelerator;
        Name = name;
        Pool = new IlgpuMemoryPool(accelerator);
        Kernels = new IlgpuKernelCache(accelerator);
        // The image loaders, each created (its kernels compiled) on the first call that needs it.
        _conv = new(() => new Conv2dIlgpu.Kernels(Kernels));
        _groupNorm = new(() => new GroupNormIlgpu.Kernels(Kernels));
        _attention = new(() => new AttentionIlgpu.Kernels(Kernels));
        _resample = new(() => new ResampleIlgpu.Kernels(Kernels));
        AddCapability<IConvolutionKernels>(new IlgpuConvolution(this));
        AddCapability<IGroupNormKernels>(new IlgpuGroupNorm(this));
        AddCapability<IAttentionKernels>(new IlgpuAttention(this));
        AddCapability<IResampleKernels>(new IlgpuResample(this));
        AddCapability<ISoftmaxKernels>(new IlgpuSoftmax(this));
        AddCapability<IOptimizerKernels>(new IlgpuOptimizer(this));
        // Group size of the reduction kernels: 256 threads on a GPU (8 warps, enough loads in flight per group);
        // 32 on the CPU emulator, where every thread of a group is an OS thread and every barrier waits for all of
        // them to be scheduled. Both are powers of two, as the shared-memory tree needs.
        int limit = Math.Min(ReduceIlgpu.MaxGroupSize, accelerator.MaxNumThreadsPerGroup);
        _groupSize = accelerator.AcceleratorType == AcceleratorType.CPU ? MinGroupSize : 1 << BitOperations.Log2((uint)limit);
    }

    /// <summary>
    /// A backend on CUDA device <paramref name="ordinal"/>, owning its ILGPU context and accelerator. Throws
    /// <see cref="KernelException"/> when there is no such device.
    /// </summary>
    public static IlgpuBackend CreateCuda(int ordinal = 0)
    {
        var context = Context.Create(b => b.Cuda().EnableAlgorithms());
        var devices = context.GetCudaDevices();
        if (ordinal < 0 || ordinal >= devices.Count)
        {
            context.Dispose();
            throw new KernelException("IlgpuBackend.CreateCuda", $"no CUDA device {ordinal}: {devices.Count} found");
        }
        var accelerator = context.CreateCudaAccelerator(ordinal);
        return new IlgpuBackend(context, accelerator, $"cuda:{ordinal}", ownsAccelerator: true);
    }

    /// <summary>
    /// A backend on ILGPU's CPU accelerator configured as one NVIDIA-like multiprocessor (32-wide warps, groups of up
    /// to <paramref name="maxThreadsPerGroup"/> threads), with ILGPU's debug assertions on so that an out-of-bounds
    /// access in a kernel fails. For parity tests only: it runs every GPU thread of a group as an OS thread, and each
    /// launch and barrier waits for all of them, so it is orders of magnitude slower than <c>CpuBackend</c>. The
    /// default allows the GEMM kernel's <see cref="GemmIlgpu.GroupSize"/>-thread groups; 32 makes every other kernel's
    /// launch far cheaper (ILGPU keeps the largest group's threads in every later launch) but refuses <see cref="Gemm"/>
    /// and the float32 conv, group norm and attention kernels (256-thread groups too).
    /// </summary>
    public static IlgpuBackend CreateCpuEmulator(int maxThreadsPerGroup = GemmIlgpu.GroupSize)
    {
        if (maxThreadsPerGroup < MinGroupSize || maxThreadsPerGroup % 32 != 0)
            throw new KernelException("IlgpuBackend.CreateCpuEmulator", $"group size {maxThreadsPerGroup} must be a positive multiple of 32");
        var device = new CPUDevice(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: maxThreadsPerGroup / 32, numMultiprocessors: 1);
        var context = Context.Create(b => b.CPU(device).Assertions().EnableAlgorithms());
        // Parallel, not Sequential: the sequential mode hands a baton from thread to thread at every barrier, which
        // measured many times slower here on two loaded cores.
        var accelerator = context.CreateCPUAccelerator(0, CPUAcceleratorMode.Parallel);
        return new IlgpuBackend(context, accelerator, "ilgpu-cpu", ownsAccelerator: true);
    }

    private static readonly Lazy<int> s_cudaDevices = new(() =>
    {
        // Creating a CUDA context needs the driver library; without it (or without a device) there is no CUDA.
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException or AcceleratorException or InvalidOperationException)
        {
            return 0;
        }
    });

    /// <summary>Number of CUDA devices ILGPU finds (0 without a driver or GPU).</summary>
    public static int CudaDeviceCount => s_cudaDevices.Value;

    /// <inheritdoc />
    public override string Name { get; }

    /// <summary>The accelerator the kernels run on.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The stream every launch goes to.</summary>
    public AcceleratorStream Stream => Accelerator.DefaultStream;

    /// <summary>The caching allocator of this backend's buffers.</summary>
    public IlgpuMemoryPool Pool { get; }

    /// <summary>The compiled kernels and their compile times.</summary>
    public IlgpuKernelCache Kernels { get; }

    /// <summary>Waits until every queued kernel has finished (for timing; ops never need it).</summary>
    public void Synchronize() => Accelerator.Synchronize();

    /// <inheritdoc />
    protected override IlgpuBuffer AllocateCore(long length, DType dtype, bool zero)
    {
        var block = Pool.Rent(length * dtype.SizeInBytes());
        var buffer = new IlgpuBuffer(this, length, dtype, block);
        if (zero && length > 0) block.View.SubView(0, length * dtype.SizeInBytes()).MemSetToZero(Stream);
        return buffer;
    }

    /// <inheritdoc />
    protected override void UploadCore<T>(IlgpuBuffer b, ReadOnlySpan<T> src, long offset)
    {
        if (typeof(T) == typeof(float) && b.DType == DType.Float64)
        {
            var s = MemoryMarshal.Cast<T, float>(src);
            var wide = new double[s.Length];
            for (int i = 0; i < s.Length; i++) wide[i] = s[i];
            CopyIn<double>(b, wide, offset);
        }
        else if (typeof(T) == typeof(double) && b.DType == DType.Float32)
        {
            var s = MemoryMarshal.Cast<T, double>(src);
            var narrow = new float[s.Length];
            for (int i = 0; i < s.Length; i++) narrow[i] = (float)s[i];
            CopyIn<float>(b, narrow, offset);
        }
        else CopyIn(b, src, offset);
    }

    /// <summary>
    /// Copies host memory into the buffer. The host memory is pinned for the whole copy: ILGPU's
    /// <c>CopyFromCPU(stream, ref T, length)</c> turns the reference into a raw address without pinning it, so a
    /// garbage collection that moved the (usually fresh, gen-0) array during the copy made it read and, in
    /// <see cref="CopyOut{T}"/>, write memory the array had left: the managed-heap corruption that crashed the test
    /// host (issue 12).
    /// </summary>
    private unsafe void CopyIn<T>(IlgpuBuffer b, ReadOnlySpan<T> src, long offset) where T : unmanaged
    {
        fixed (T* pinned = src)
            b.View<T>().SubView(offset, src.Length).CopyFromCPU(Stream, ref Unsafe.AsRef<T>(pinned), src.Length);
    }

    /// <inheritdoc />
    protected override void DownloadCore<T>(IlgpuBuffer b, Span<T> dst, long offset)
    {
        if (typeof(T) == typeof(float) && b.DType == DType.Float64)
        {
            var wide = new double[dst.Length];
            CopyOut<double>(b, wide, offset);
            var d = MemoryMarshal.Cast<T, float>(dst);
            for (int i = 0; i < d.Length; i++) d[i] = (float)wide[i];
        }
        else if (typeof(T) == typeof(double) && b.DType == DType.Float32)
        {
            var narrow = new float[dst.Length];
            CopyOut<float>(b, narrow, offset);
            var d = MemoryMarshal.Cast<T, double>(dst);
            for (int i = 0; i < d.Length; i++) d[i] = narrow[i];
        }
        else CopyOut(b, dst, offset);
    }

    /// <summary>Copies buffer elements into host memory, pinned for the whole copy (see <see cref="CopyIn{T}"/>).</summary>
    private unsafe void CopyOut<T>(IlgpuBuffer b, Span<T> dst, long offset) where T : unmanaged
    {
        fixed (T* pinned = dst)
            b.View<T>().SubView(offset, dst.Length).CopyToCPU(Stream, ref Unsafe.AsRef<T>(pinned), dst.Length);
    }

    /// <inheritdoc />
    protected override void FillCore(IlgpuBuffer b, double value)
    {
        if (b.DType == DType.Float32) Map<float, ConstantOp<float>>(b, b, b.Length, new() { Value = (float)value });
        else Map<double, ConstantOp<double>>(b, b, b.Length, new() { Value = value });
    }

    /// <inheritdoc />
    protected override void UnaryCore(UnaryOp op, IlgpuBuffer x, IlgpuBuffer y, long count)
    {
        if (x.DType == DType.Float32) Unary<float>(op, x, y, count);
        else Unary<double>(op, x, y, count);
    }

    private void Unary<T>(UnaryOp op, IlgpuBuffer x, IlgpuBuffer y, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case UnaryOp.Neg: Map<T, NegOp<T>>(x, y, n, default); break;
            case UnaryOp.Exp: Map<T, ExpOp<T>>(x, y, n, default); break;
            case UnaryOp.Log: Map<T, LogOp<T>>(x, y, n, default); break;
            case UnaryOp.Sqrt: Map<T, SqrtOp<T>>(x, y, n, default); break;
            case UnaryOp.Rsqrt: Map<T, RsqrtOp<T>>(x, y, n, default); break;
            case UnaryOp.Square: Map<T, SquareOp<T>>(x, y, n, default); break;
            case UnaryOp.Abs: Map<T, AbsOp<T>>(x, y, n, default); break;
            case UnaryOp.Tanh: Map<T, TanhOp<T>>(x, y, n, default); break;
            case UnaryOp.Sigmoid: Map<T, SigmoidOp<T>>(x, y, n, default); break;
            case UnaryOp.Silu: Map<T, SiluOp<T>>(x, y, n, default); break;
            case UnaryOp.Softplus: Map<T, SoftplusOp<T>>(x, y, n, default); break;
            case UnaryOp.Sign: Map<T, SignOp<T>>(x, y, n, default); break;
            case UnaryOp.Step: Map<T, StepOp<T>>(x, y, n, default); break;
            case UnaryOp.Relu: Map<T, ReluOp<T>>(x, y, n, default); break;
            case UnaryOp.Reciprocal: Map<T, ReciprocalOp<T>>(x, y, n, default); break;
            case UnaryOp.Sin: Map<T, SinOp<T>>(x, y, n, default); break;
            case UnaryOp.Cos: Map<T, CosOp<T>>(x, y, n, default); break;
            default: throw new KernelException("Unary", $"unknown op {op}");
        }
    }

    /// <inheritdoc />
    protected override void AffineCore(IlgpuBuffer x, IlgpuBuffer y, long count, double scale, double shift)
    {
        if (x.DType == DType.Float32) Map<float, AffineOp<float>>(x, y, count, new() { Scale = (float)scale, Shift = (float)shift });
        else Map<double, AffineOp<double>>(x, y, count, new() { Scale = scale, Shift = shift });
    }

    /// <inheritdoc />
    protected override void PowScalarCore(IlgpuBuffer x, IlgpuBuffer y, long count, double exponent)
    {
        if (x.DType == DType.Float32) Pow<float>(x, y, count, (float)exponent);
        else Pow<double>(x, y, count, exponent);
    }

    private void Pow<T>(IlgpuBuffer x, IlgpuBuffer y, long n, T p) where T : unmanaged, IFloatingPointIeee754<T>
    {
        // The CPU backend's special cases: x^2 is a product and x^1 a copy, exactly.
        if (p == T.One + T.One) Map<T, SquareOp<T>>(x, y, n, default);
        else if (p == T.One) Map<T, IdentityOp<T>>(x, y, n, default);
        else Map<T, PowOp<T>>(x, y, n, new() { Exponent = p });
    }

    /// <inheritdoc />
    protected override void ClampCore(IlgpuBuffer x, IlgpuBuffer y, long count, double lo, double hi)
    {
        if (x.DType == DType.Float32) Map<float, ClampOp<float>>(x, y, count, new() { Lo = (float)lo, Hi = (float)hi });
        else Map<double, ClampOp<double>>(x, y, count, new() { Lo = lo, Hi = hi });
    }

    /// <inheritdoc />
    protected override void BinaryCore(BinaryOp op, IlgpuBuffer a, ReadOnlySpan<long> aStrides, IlgpuBuffer b, ReadOnlySpan<long> bStrides, IlgpuBuffer y, ReadOnlySpan<int> shape)
    {
        const string kernel = "Binary";
        var layout = NdLayout.Create(kernel, shape, aStrides, bStrides);
        long count = Count(kernel, shape);
        if (a.DType == DType.Float32) Binary<float>(op, a, b, y, layout, count);
        else Binary<double>(op, a, b, y, layout, count);
    }

    private void Binary<T>(BinaryOp op, IlgpuBuffer a, IlgpuBuffer b, IlgpuBuffer y, NdLayout l, long n) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case BinaryOp.Add: Zip<T, AddOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Sub: Zip<T, SubOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Mul: Zip<T, MulOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Div: Zip<T, DivOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Max: Zip<T, MaxOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Min: Zip<T, MinOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Greater: Zip<T, GreaterOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.GreaterEqual: Zip<T, GreaterEqualOp<T>>(a, b, y, l, n, default); break;
            case BinaryOp.Equal: Zip<T, EqualOp<T>>(a, b, y, l, n, default); break;
            default: throw new KernelException("Binary", $"unknown op {op}");
        }
    }

    /// <inheritdoc />
    protected override void WhereCore(IlgpuBuffer cond, IlgpuBuffer a, IlgpuBuffer b, IlgpuBuffer y, long count)
    {
        if (a.DType == DType.Float32) Zip3<float, WhereOp<float>>(cond, a, b, y, count, default);
        else Zip3<double, WhereOp<double>>(cond, a, b, y, count, default);
    }

    /// <inheritdoc />
    protected override void ReduceCore(ReduceOp op, IlgpuBuffer x, IlgpuBuffer y, int outer, int reduce, int inner)
    {
        bool sum = op == ReduceOp.Sum;
        if (x.DType == DType.Float32)
        {
            if (sum) Reduce<float, SumOp<float>>(x, y, outer, reduce, inner);
            else Reduce<float, MaxOp<float>>(x, y, outer, reduce, inner);
        }
        else
        {
            if (sum) Reduce<double, SumOp<double>>(x, y, outer, reduce, inner);
            else Reduce<double, MaxOp<double>>(x, y, outer, reduce, inner);
        }
    }

    /// <summary>Fewest output groups that keep a GPU busy without splitting each reduction in two passes.</summary>
    private const int OnePassOutputs = 128;

    /// <summary>Elements each thread should reduce in a split pass before another split pays.</summary>
    private const int ElementsPerThread = 16;

    /// <summary>Most parts a single reduction is split into for the two-pass path.</summary>
    private const int MaxSplits = 256;

    /// <summary>Outputs from which one thread per output (coalesced along inner) beats one group per output.</summary>
    private const int ColumnOutputs = 2048;

    private void Reduce<T, TOp>(IlgpuBuffer x, IlgpuBuffer y, int outer, int reduce, int inner)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IReduceOp<T>
    {
        int outputs = outer * inner;
        if (outputs == 0) return;
        if (reduce == 0)
        {
            Map<T, ConstantOp<T>>(y, y, outputs, new() { Value = default(TOp).Identity });
            return;
        }
        if (inner > 1 && outputs >= ColumnOutputs)
        {
            Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<T>, ArrayView<T>, int, int>>(ReduceIlgpu.ReduceColumns<T, TOp>)(
                Stream, outputs, x.View<T>(), y.View<T>(), reduce, inner);
            return;
        }
        int splits = Splits(outputs, reduce);
        var rows = Kernels.Get<Action<AcceleratorStream, KernelConfig, ArrayView<T>, ArrayView<T>, int, int, int, int>>(ReduceIlgpu.ReduceRows<T, TOp>);
        if (splits == 1)
        {
            rows(Stream, new KernelConfig(outputs, _groupSize), x.View<T>(), y.View<T>(), reduce, inner, 1, reduce);
            return;
        }
        int chunk = (reduce + splits - 1) / splits;
        using var partial = (IlgpuBuffer)Allocate((long)outputs * splits, x.DType, zero: false);
        rows(Stream, new KernelConfig(outputs * splits, _groupSize), x.View<T>(), partial.View<T>(), reduce, inner, splits, chunk);
        rows(Stream, new KernelConfig(outputs, _groupSize), partial.View<T>(), y.View<T>(), splits, 1, 1, splits);
    }

    /// <summary>Parts to split each of <paramref name="outputs"/> reductions of <paramref name="reduce"/> elements into: 1 when there are enough outputs to fill the device.</summary>
    private int Splits(int outputs, int reduce)
    {
        if (outputs >= OnePassOutputs) return 1;
        long perGroup = (long)_groupSize * ElementsPerThread;
        return (int)Math.Clamp((reduce + perGroup - 1) / perGroup, 1, MaxSplits);
    }

    /// <summary>The row softmax kernel (of <see cref="IlgpuSoftmax"/>), one group per row.</summary>
    private void Softmax(IlgpuBuffer x, IlgpuBuffer y, int rows, int cols, bool log)
    {
        var config = new KernelConfig(rows, _groupSize);
        if (x.DType == DType.Float32)
            Kernels.Get<Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, int, int>>(ReduceIlgpu.Softmax<float>)(
                Stream, config, x.View<float>(), y.View<float>(), cols, log ? 1 : 0);
        else
            Kernels.Get<Action<AcceleratorStream, KernelConfig, ArrayView<double>, ArrayView<double>, int, int>>(ReduceIlgpu.Softmax<double>)(
                Stream, config, x.View<double>(), y.View<double>(), cols, log ? 1 : 0);
    }

    /// <summary>Largest grid extent along y and z on CUDA devices: batches beyond it are launched in chunks.</summary>
    private const int MaxGridYZ = 65535;

    /// <inheritdoc />
    protected override void GemmCore(bool transA, bool transB, int batch, int m, int n, int k, double alpha,
        IlgpuBuffer a, long aOffset, long aBatchStride, IlgpuBuffer b, long bOffset, long bBatchStride,
        double beta, IlgpuBuffer c, long cOffset, long cBatchStride)
    {
        if ((long)m * n > int.MaxValue) throw new KernelException("Gemm", $"C of {m} x {n} exceeds the kernels' 32-bit indexing");
        if (c.DType == DType.Float32)
            Gemm(transA, transB, batch, m, n, k, (float)alpha, a, aOffset, aBatchStride, b, bOffset, bBatchStride, (float)beta, c, cOffset, cBatchStride);
        else
            Gemm(transA, transB, batch, m, n, k, alpha, a, aOffset, aBatchStride, b, bOffset, bBatchStride, beta, c, cOffset, cBatchStride);
    }

    private void Gemm<T>(bool transA, bool transB, int batch, int m, int n, int k, T alpha,
        IlgpuBuffer a, long aOffset, long aStride, IlgpuBuffer b, long bOffset, long bStride,
        T beta, IlgpuBuffer c, long cOffset, long cStride) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (k == 0 || alpha == T.Zero)
        {
            // C = beta C without reading A and B (BLAS semantics); beta = 0 overwrites C, NaN included.
            for (int i = 0; i < batch; i++)
            {
                var view = c.View<T>().SubView(cOffset + i * cStride, (long)m * n);
                if (beta == T.Zero) MapView<T, ConstantOp<T>>(view, view, new());
                else if (beta != T.One) MapView<T, AffineOp<T>>(view, view, new() { Scale = beta });
            }
            return;
        }
        if (Accelerator.MaxNumThreadsPerGroup < GemmIlgpu.GroupSize)
            throw new KernelException("Gemm", $"accelerator '{Accelerator.Name}' allows {Accelerator.MaxNumThreadsPerGroup} threads per group, the GEMM kernel needs {GemmIlgpu.GroupSize}");
        var launch = Kernels.Get<Action<AcceleratorStream, KernelConfig, ArrayView<T>, ArrayView<T>, ArrayView<T>, GemmParams<T>>>(GemmIlgpu.Gemm<T>);
        for (int first = 0; first < batch; first += MaxGridYZ)
        {
            int count = Math.Min(MaxGridYZ, batch - first);
            var p = new GemmParams<T>
            {
                TransA = transA ? 1 : 0, TransB = transB ? 1 : 0, M = m, N = n, K = k,
                Lda = transA ? m : k, Ldb = transB ? k : n,
                AOffset = aOffset + first * aStride, ABatchStride = aStride,
                BOffset = bOffset + first * bStride, BBatchStride = bStride,
                COffset = cOffset + first * cStride, CBatchStride = cStride,
                Alpha = alpha, Beta = beta,
            };
            var grid = new Index3D((n + GemmIlgpu.TileN - 1) / GemmIlgpu.TileN, (m + GemmIlgpu.TileM - 1) / GemmIlgpu.TileM, count);
            launch(Stream, new KernelConfig(grid, new Index3D(GemmIlgpu.GroupSize, 1, 1)), a.View<T>(), b.View<T>(), c.View<T>(), p);
        }
    }

    /// <inheritdoc />
    protected override void CopyStridedCore(IlgpuBuffer src, long srcOffset, ReadOnlySpan<long> srcStrides, IlgpuBuffer dst, long dstOffset, ReadOnlySpan<long> dstStrides, ReadOnlySpan<int> shape)
    {
        const string kernel = "CopyStrided";
        var layout = NdLayout.Create(kernel, shape, srcStrides, dstStrides);
        long count = Count(kernel, shape);
        if (src.DType == DType.Float32)
            Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, NdLayout, long, long>>(ElementwiseIlgpu.CopyStrided<float>)(
                Stream, (int)count, src.View<float>(), dst.View<float>(), layout, srcOffset, dstOffset);
        else
            Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<double>, ArrayView<double>, NdLayout, long, long>>(ElementwiseIlgpu.CopyStrided<double>)(
                Stream, (int)count, src.View<double>(), dst.View<double>(), layout, srcOffset, dstOffset);
    }

    /// <inheritdoc />
    protected override void FillRandomCore(IlgpuBuffer b, RandomDistribution distribution, ulong seed, ulong blockOffset)
    {
        long blocks = (b.Length + 3) / 4;
        CheckInt("FillRandom", blocks);
        if (b.DType == DType.Float32)
            Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<float>, long, ulong, ulong, int>>(PhiloxIlgpu.Fill<float, SingleFromSingle>)(
                Stream, (int)blocks, b.View<float>(), b.Length, seed, blockOffset, (int)distribution);
        else
            Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<double>, long, ulong, ulong, int>>(PhiloxIlgpu.Fill<double, DoubleFromSingle>)(
                Stream, (int)blocks, b.View<double>(), b.Length, seed, blockOffset, (int)distribution);
    }

    /// <summary>y = alpha x + beta y (of <see cref="IlgpuOptimizer"/>).</summary>
    private void Axpby(IlgpuBuffer x, IlgpuBuffer y, long count, double alpha, double beta)
    {
        if (x.DType == DType.Float32) ZipContiguous<float, AxpbyOp<float>>(x, y, y, count, new() { Alpha = (float)alpha, Beta = (float)beta });
        else ZipContiguous<double, AxpbyOp<double>>(x, y, y, count, new() { Alpha = alpha, Beta = beta });
    }

    /// <summary>One Adam step (of <see cref="IlgpuOptimizer"/>).</summary>
    private void AdamUpdate(IlgpuBuffer p, IlgpuBuffer g, IlgpuBuffer m, IlgpuBuffer v, long count, AdamStep step)
    {
        CheckInt("AdamUpdate", count);
        if (p.DType == DType.Float32) Adam<float>(p, g, m, v, count, step);
        else Adam<double>(p, g, m, v, count, step);
    }

    private void Adam<T>(IlgpuBuffer p, IlgpuBuffer g, IlgpuBuffer m, IlgpuBuffer v, long count, AdamStep step) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T lr = T.CreateTruncating(step.LearningRate), wd = T.CreateTruncating(step.WeightDecay);
        var s = new AdamParams<T>
        {
            LearningRate = lr,
            Beta1 = T.CreateTruncating(step.Beta1),
            Beta2 = T.CreateTruncating(step.Beta2),
            Epsilon = T.CreateTruncating(step.Epsilon),
            Decay = step.Decoupled ? T.One - lr * wd : T.One,
            L2 = step.Decoupled ? T.Zero : wd,
            InverseCorrection1 = T.One / T.CreateTruncating(step.BiasCorrection1),
            InverseCorrection2 = T.One / T.CreateTruncating(step.BiasCorrection2),
        };
        Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, AdamParams<T>>>(OptimIlgpu.Adam<T>)(
            Stream, (int)count, p.View<T>(), g.View<T>(), m.View<T>(), v.View<T>(), s);
    }

    /// <summary>Frees the idle pooled device memory.</summary>
    public void Trim() => Pool.Trim();

    /// <inheritdoc />
    public override void Dispose()
    {
        Accelerator.Synchronize();
        DisposeImageKernels();
        Pool.Dispose();
        if (_ownsAccelerator) Accelerator.Dispose();
        _context?.Dispose();
    }

    private void Map<T, TOp>(IlgpuBuffer x, IlgpuBuffer y, long count, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IUnaryOp<T>
    {
        if (count == 0) return;
        CheckInt("Map", count);
        MapView(x.View<T>().SubView(0, count), y.View<T>(), op);
    }

    private void MapView<T, TOp>(ArrayView<T> x, ArrayView<T> y, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IUnaryOp<T>
    {
        if (x.Length == 0) return;
        Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<T>, ArrayView<T>, TOp>>(ElementwiseIlgpu.Map<T, TOp>)(Stream, (int)x.Length, x, y, op);
    }

    private void Zip<T, TOp>(IlgpuBuffer a, IlgpuBuffer b, IlgpuBuffer y, NdLayout layout, long count, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IBinaryOp<T>
    {
        if (count == 0) return;
        // Same-shape contiguous operands (the common case after coalescing) skip the index arithmetic.
        if (layout.Rank == 1 && layout.A0 == 1 && layout.B0 == 1)
        {
            ZipContiguous<T, TOp>(a, b, y, count, op);
            return;
        }
        Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<T>, ArrayView<T>, ArrayView<T>, NdLayout, TOp>>(ElementwiseIlgpu.ZipStrided<T, TOp>)(
            Stream, (int)count, a.View<T>(), b.View<T>(), y.View<T>(), layout, op);
    }

    private void ZipContiguous<T, TOp>(IlgpuBuffer a, IlgpuBuffer b, IlgpuBuffer y, long count, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, IBinaryOp<T>
    {
        if (count == 0) return;
        CheckInt("Zip", count);
        Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<T>, ArrayView<T>, ArrayView<T>, TOp>>(ElementwiseIlgpu.Zip<T, TOp>)(
            Stream, (int)count, a.View<T>(), b.View<T>(), y.View<T>(), op);
    }

    private void Zip3<T, TOp>(IlgpuBuffer a, IlgpuBuffer b, IlgpuBuffer c, IlgpuBuffer y, long count, TOp op)
        where T : unmanaged, IFloatingPointIeee754<T> where TOp : struct, ITernaryOp<T>
    {
        if (count == 0) return;
        CheckInt("Zip3", count);
        Kernels.Get<Action<AcceleratorStream, Index1D, ArrayView<T>, ArrayView<T>, ArrayView<T>, ArrayView<T>, TOp>>(ElementwiseIlgpu.Zip3<T, TOp>)(
            Stream, (int)count, a.View<T>(), b.View<T>(), c.View<T>(), y.View<T>(), op);
    }

    private static void CheckInt(string kernel, long count)
    {
        if (count > int.MaxValue) throw new KernelException(kernel, $"{count} elements exceed the kernels' 32-bit thread indexing ({int.MaxValue})");
    }

    /// <summary>The element count of a checked, non-empty shape, within the kernels' 32-bit thread indexing.</summary>
    private static long Count(string kernel, ReadOnlySpan<int> shape)
    {
        long count = 1;
        foreach (int n in shape) count *= n;
        CheckInt(kernel, count);
        return count;
    }
}
