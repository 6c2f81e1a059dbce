using NUnit.Framework;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Conv;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Tests.Ilgpu;

/// <summary>
/// The argument contract of every backend entry point, primitives and capabilities: one table of bad calls run on
/// CpuBackend and on the ILGPU backend (CPU accelerator), each expected to throw the same <see cref="KernelException"/>,
/// word for word, naming the kernel, the argument and the sizes, before any kernel runs (every buffer keeps its
/// contents). The checks live in one place, <see cref="CheckedBackend{TBuffer}"/> and the capability bases, so the
/// two backends cannot drift apart; this table is what a new backend is held to.
/// </summary>
[TestFixture]
public sealed class BackendContractTests
{
    private const float Sentinel = 7777f;

    /// <summary>
    /// One bad call: the buffers it gets (float32 of the given lengths unless <paramref name="Types"/> says otherwise;
    /// with <paramref name="Foreign"/> buffer 0 belongs to the other backend, with <paramref name="Disposed"/> it is
    /// disposed first) and the exact message, where {self} and {other} stand for the backends' names.
    /// </summary>
    public sealed record BadCall(string Name, string Message, long[] Lengths, Action<IBackend, DeviceBuffer[]> Call,
        DType[]? Types = null, bool Foreign = false, bool Disposed = false)
    {
        public override string ToString() => Name;
    }

    private static T Cap<T>(IBackend backend) where T : class => backend.GetCapability<T>()!;

    private static readonly Conv2dShape Conv = new(N: 1, Cin: 2, H: 4, W: 4, Cout: 3, KH: 3, KW: 3, Stride: 1, Pad: 1);
    private const string ConvText = "x[1,2,4,4] w[3,2,3,3] stride 1 pad 1 -> y[1,3,4,4]";

    public static IEnumerable<BadCall> Calls()
    {
        DType f = DType.Float32, d = DType.Float64;
        // Host copies and allocation.
        yield return new("Upload past the end", "Upload: range [3, 6) outside a buffer of 5 elements", [5], (b, v) => b.Upload<float>(v[0], new float[3], 3));
        yield return new("Upload of ints", "Upload: host elements of Int32 cannot be copied to or from a Float32 buffer (float or double only)", [5], (b, v) => b.Upload<int>(v[0], new int[2]));
        yield return new("Download before the start", "Download: range [-1, 1) outside a buffer of 5 elements", [5], (b, v) => b.Download<float>(v[0], new float[2], -1));
        yield return new("Allocate a negative length", "Allocate: negative length -1", [], (b, _) => b.Allocate(-1, DType.Float32));
        yield return new("Fill a disposed buffer", "Fill: buffer was disposed", [5], (b, v) => b.Fill(v[0], 1), Disposed: true);
        yield return new("FillRandom an unknown distribution", "FillRandom: unknown RandomDistribution 9", [5], (b, v) => b.FillRandom(v[0], (RandomDistribution)9, 1, 0));
        // Elementwise maps.
        yield return new("Unary count 8", "Unary: x holds 5 elements, count 8 needs 8", [5, 8], (b, v) => b.Unary(UnaryOp.Exp, v[0], v[1], 8));
        yield return new("Unary unknown op", "Unary: unknown UnaryOp 99", [5, 5], (b, v) => b.Unary((UnaryOp)99, v[0], v[1], 5));
        yield return new("Unary of another backend's buffer", "Unary: buffer belongs to backend '{other}', not '{self}'", [5, 5], (b, v) => b.Unary(UnaryOp.Neg, v[0], v[1], 5), Foreign: true);
        yield return new("Affine short output", "Affine: y holds 5 elements, count 6 needs 6", [8, 5], (b, v) => b.Affine(v[0], v[1], 6, 2, 1));
        yield return new("PowScalar negative count", "PowScalar: negative count -1", [5, 5], (b, v) => b.PowScalar(v[0], v[1], -1, 2));
        yield return new("Clamp mixed dtypes", "Clamp: mixed dtypes Float32 and Float64", [5, 5], (b, v) => b.Clamp(v[0], v[1], 5, 0, 1), Types: [f, d]);
        // Binary, Where: strided reads and contiguous writes.
        yield return new("Binary [8]", "Binary: a is read or written at elements [0, 7] (shape [8], strides [1], offset 0) but holds 5",
            [5, 8, 8], (b, v) => b.Binary(BinaryOp.Add, v[0], [1], v[1], [1], v[2], [8]));
        yield return new("Binary broadcast past b", "Binary: b is read or written at elements [0, 6] (shape [2, 3], strides [0, 3], offset 0) but holds 5",
            [6, 5, 6], (b, v) => b.Binary(BinaryOp.Mul, v[0], [3, 1], v[1], [0, 3], v[2], [2, 3]));
        yield return new("Binary negative stride", "Binary: a is read or written at elements [-2, 0] (shape [3], strides [-1], offset 0) but holds 5",
            [5, 5, 5], (b, v) => b.Binary(BinaryOp.Sub, v[0], [-1], v[1], [1], v[2], [3]));
        yield return new("Binary short output", "Binary: y holds 5 elements, shape [2, 3] needs 6", [6, 6, 5], (b, v) => b.Binary(BinaryOp.Div, v[0], [3, 1], v[1], [3, 1], v[2], [2, 3]));
        yield return new("Binary strides per axis", "Binary: shape [2, 3] has 2 axes but a has 1 strides and b 2", [6, 6, 6], (b, v) => b.Binary(BinaryOp.Add, v[0], [1], v[1], [3, 1], v[2], [2, 3]));
        yield return new("Binary negative extent", "Binary: negative extent in shape [2, -3]", [6, 6, 6], (b, v) => b.Binary(BinaryOp.Add, v[0], [3, 1], v[1], [3, 1], v[2], [2, -3]));
        yield return new("Where count 8", "Where: b holds 5 elements, count 8 needs 8", [8, 8, 5, 8], (b, v) => b.Where(v[0], v[1], v[2], v[3], 8));
        // Reduce.
        yield return new("Reduce [1, 8, 1]", "Reduce: x holds 5 elements, shape [1, 8, 1] needs 8", [5, 1], (b, v) => b.Reduce(ReduceOp.Sum, v[0], v[1], 1, 8, 1));
        yield return new("Reduce short output", "Reduce: y holds 3 elements, shape [2, 3, 2] needs 4", [12, 3], (b, v) => b.Reduce(ReduceOp.Max, v[0], v[1], 2, 3, 2));
        yield return new("Reduce negative size", "Reduce: negative size in shape [1, -1, 1]", [5, 5], (b, v) => b.Reduce(ReduceOp.Sum, v[0], v[1], 1, -1, 1));
        // GEMM: matrices, offsets, batch strides, transposed storage.
        yield return new("Gemm reading 8 elements of A", "Gemm: A: 1 matrices of 2 x 4 from offset 0 with batch stride 0 end at 8, beyond its 5 elements",
            [5, 4, 2], (b, v) => b.Gemm(false, false, 1, 2, 1, 4, 1, v[0], 0, 0, v[1], 0, 0, 0, v[2], 0, 0));
        yield return new("Gemm batch stride of B", "Gemm: B: 2 matrices of 2 x 2 from offset 0 with batch stride 4 end at 8, beyond its 5 elements",
            [8, 5, 8], (b, v) => b.Gemm(false, false, 2, 2, 2, 2, 1, v[0], 0, 4, v[1], 0, 4, 0, v[2], 0, 4));
        yield return new("Gemm offset of a transposed A", "Gemm: A: 1 matrices of 2 x 3 from offset 1 with batch stride 0 end at 7, beyond its 6 elements",
            [6, 8, 12], (b, v) => b.Gemm(true, false, 1, 3, 4, 2, 1, v[0], 1, 0, v[1], 0, 0, 0, v[2], 0, 0));
        yield return new("Gemm short C", "Gemm: C: 1 matrices of 2 x 2 from offset 0 with batch stride 0 end at 4, beyond its 3 elements",
            [4, 4, 3], (b, v) => b.Gemm(false, true, 1, 2, 2, 2, 1, v[0], 0, 0, v[1], 0, 0, 1, v[2], 0, 0));
        yield return new("Gemm negative batch stride", "Gemm: A: negative offset 0 or batch stride -1", [8, 8, 8], (b, v) => b.Gemm(false, false, 2, 2, 2, 1, 1, v[0], 0, -1, v[1], 0, 0, 0, v[2], 0, 4));
        yield return new("Gemm negative size", "Gemm: negative size in batch 1, m -1, n 2, k 2", [8, 8, 8], (b, v) => b.Gemm(false, false, 1, -1, 2, 2, 1, v[0], 0, 0, v[1], 0, 0, 0, v[2], 0, 0));
        // CopyStrided: the largest offset reached from offset, strides and shape.
        yield return new("CopyStrided [8]", "CopyStrided: src is read or written at elements [0, 7] (shape [8], strides [1], offset 0) but holds 5",
            [5, 8], (b, v) => b.CopyStrided(v[0], 0, [1], v[1], 0, [1], [8]));
        yield return new("CopyStrided past the end of dst", "CopyStrided: dst is read or written at elements [2, 6] (shape [2, 2], strides [3, 1], offset 2) but holds 5",
            [4, 5], (b, v) => b.CopyStrided(v[0], 0, [2, 1], v[1], 2, [3, 1], [2, 2]));
        yield return new("CopyStrided broadcast from past the end", "CopyStrided: src is read or written at elements [5, 5] (shape [3], strides [0], offset 5) but holds 5",
            [5, 3], (b, v) => b.CopyStrided(v[0], 5, [0], v[1], 0, [1], [3]));
        // Capabilities: softmax and the optimizer updates.
        yield return new("Softmax [2, 3]", "Softmax: x holds 5 elements, shape [2, 3] needs 6", [5, 6], (b, v) => Cap<ISoftmaxKernels>(b).Softmax(v[0], v[1], 2, 3, false));
        yield return new("Axpby short y", "Axpby: y holds 5 elements, count 6 needs 6", [6, 5], (b, v) => Cap<IOptimizerKernels>(b).Axpby(v[0], v[1], 6, 1, 1));
        yield return new("AdamUpdate short v", "AdamUpdate: v holds 5 elements, count 6 needs 6", [6, 6, 6, 5],
            (b, v) => Cap<IOptimizerKernels>(b).AdamUpdate(v[0], v[1], v[2], v[3], 6, new AdamStep(1e-3, 0.9, 0.999, 1e-8, 0, false, 0.1, 0.001)));
        yield return new("AdamUpdate param as grad", "AdamUpdate: output param is also passed as grad: outputs must not overlap other arguments", [6, 6, 6],
            (b, v) => Cap<IOptimizerKernels>(b).AdamUpdate(v[0], v[0], v[1], v[2], 6, new AdamStep(1e-3, 0.9, 0.999, 1e-8, 0, false, 0.1, 0.001)));
        // Convolution: shape-derived lengths, the kernel against the padded input, outputs apart from inputs.
        yield return new("Conv2dForward short x", $"Conv2dForward: x holds 20 elements, {ConvText} needs 32", [20, 54, 3, 48],
            (b, v) => Cap<IConvolutionKernels>(b).Conv2dForward(Conv, v[0], v[1], v[2], v[3]));
        yield return new("Conv2dForward short bias", $"Conv2dForward: bias holds 2 elements, {ConvText} needs 3", [32, 54, 2, 48],
            (b, v) => Cap<IConvolutionKernels>(b).Conv2dForward(Conv, v[0], v[1], v[2], v[3]));
        yield return new("Conv2dForward in place", "Conv2dForward: output y is also passed as x: outputs must not overlap other arguments", [64, 54],
            (b, v) => Cap<IConvolutionKernels>(b).Conv2dForward(Conv, v[0], v[1], null, v[0]));
        yield return new("Conv2dForward kernel larger than the input", "Conv2dForward: kernel 7x7 is larger than the padded input 6x6: x[1,2,4,4] w[3,2,7,7] stride 1 pad 1 -> y[1,3,0,0]",
            [32, 294, 48], (b, v) => Cap<IConvolutionKernels>(b).Conv2dForward(Conv with { KH = 7, KW = 7 }, v[0], v[1], null, v[2]));
        yield return new("Conv2dForward negative batch", "Conv2dForward: needs N >= 0, positive channels, image, kernel and stride, padding >= 0: x[-1,2,4,4] w[3,2,3,3] stride 1 pad 1 -> y[-1,3,4,4]",
            [32, 54, 48], (b, v) => Cap<IConvolutionKernels>(b).Conv2dForward(Conv with { N = -1 }, v[0], v[1], null, v[2]));
        yield return new("Conv2dBackwardInput short dx", $"Conv2dBackwardInput: dx holds 31 elements, {ConvText} needs 32", [48, 54, 31],
            (b, v) => Cap<IConvolutionKernels>(b).Conv2dBackwardInput(Conv, v[0], v[1], v[2]));
        yield return new("Conv2dBackwardWeight short db", $"Conv2dBackwardWeight: db holds 1 elements, {ConvText} needs 3", [32, 48, 54, 1],
            (b, v) => Cap<IConvolutionKernels>(b).Conv2dBackwardWeight(Conv, v[0], v[1], v[2], v[3]));
        // GroupNorm.
        yield return new("GroupNormForward groups", "GroupNormForward: C=6 is not divisible into 4 groups: N=2, C=6, spatial=3, groups=4", [36, 6, 6, 36, 8, 8],
            (b, v) => Cap<IGroupNormKernels>(b).GroupNormForward(2, 6, 3, 4, 1e-5, v[0], v[1], v[2], v[3], v[4], v[5], false));
        yield return new("GroupNormForward short mean", "GroupNormForward: mean holds 5 elements, N=2, C=6, spatial=3, groups=3 needs 6", [36, 6, 6, 36, 5, 6],
            (b, v) => Cap<IGroupNormKernels>(b).GroupNormForward(2, 6, 3, 3, 1e-5, v[0], v[1], v[2], v[3], v[4], v[5], true));
        yield return new("GroupNormForward negative eps", "GroupNormForward: eps must be finite and >= 0, got -1", [36, 6, 6, 36, 6, 6],
            (b, v) => Cap<IGroupNormKernels>(b).GroupNormForward(2, 6, 3, 3, -1, v[0], v[1], v[2], v[3], v[4], v[5], false));
        yield return new("GroupNormBackward short dgamma", "GroupNormBackward: dgamma holds 5 elements, N=2, C=6, spatial=3, groups=3 needs 6", [36, 6, 6, 6, 6, 36, 36, 5, 6],
            (b, v) => Cap<IGroupNormKernels>(b).GroupNormBackward(2, 6, 3, 3, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], false));
        // Attention.
        yield return new("AttentionForward short lse", "AttentionForward: lse holds 7 elements, B=2, N=4, D=3 needs 8", [24, 24, 24, 24, 7],
            (b, v) => Cap<IAttentionKernels>(b).AttentionForward(2, 4, 3, 0.5, v[0], v[1], v[2], v[3], v[4]));
        yield return new("AttentionForward scale NaN", "AttentionForward: scale NaN is not finite: B=2, N=4, D=3", [24, 24, 24, 24, 8],
            (b, v) => Cap<IAttentionKernels>(b).AttentionForward(2, 4, 3, double.NaN, v[0], v[1], v[2], v[3], v[4]));
        yield return new("AttentionBackward short dv", "AttentionBackward: dv holds 23 elements, B=2, N=4, D=3 needs 24", [24, 24, 24, 24, 8, 24, 24, 24, 23],
            (b, v) => Cap<IAttentionKernels>(b).AttentionBackward(2, 4, 3, 0.5, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]));
        // Resampling.
        yield return new("UpsampleNearest2x short y", "UpsampleNearest2x: y holds 23 elements, N=1, C=1, H=2, W=3 needs 24", [6, 23],
            (b, v) => Cap<IResampleKernels>(b).UpsampleNearest2x(1, 1, 2, 3, v[0], v[1]));
        yield return new("UpsampleNearest2xBackward short dy", "UpsampleNearest2xBackward: dy holds 20 elements, N=1, C=1, H=2, W=3 needs 24", [20, 6],
            (b, v) => Cap<IResampleKernels>(b).UpsampleNearest2xBackward(1, 1, 2, 3, v[0], v[1]));
        yield return new("AvgPool2d window", "AvgPool2d: H and W must be multiples of k: N=1, C=2, H=5, W=4, k=2", [40, 10],
            (b, v) => Cap<IResampleKernels>(b).AvgPool2d(1, 2, 5, 4, 2, v[0], v[1]));
        yield return new("AvgPool2dBackward short dx", "AvgPool2dBackward: dx holds 31 elements, N=1, C=2, H=4, W=4, k=2 needs 32", [8, 31],
            (b, v) => Cap<IResampleKernels>(b).AvgPool2dBackward(1, 2, 4, 4, 2, v[0], v[1]));
    }

    private static IBackend Backend(string name) => name == "cpu" ? CpuBackend.Instance : IlgpuTestDevices.Small;

    private static IBackend Other(string name) => name == "cpu" ? IlgpuTestDevices.Small : CpuBackend.Instance;

    public static IEnumerable<TestCaseData> Runs()
    {
        foreach (var call in Calls())
            foreach (var backend in new[] { "cpu", "ilgpu-cpu" })
                yield return new TestCaseData(call, backend).SetArgDisplayNames(call.Name, backend);
    }

    [TestCaseSource(nameof(Runs))]
    public void BadCallThrowsTheSameErrorBeforeAnyKernelRuns(BadCall call, string backendName)
    {
        var backend = Backend(backendName);
        var other = Other(backendName);
        var buffers = new List<DeviceBuffer>();
        try
        {
            for (int i = 0; i < call.Lengths.Length; i++)
            {
                var owner = call.Foreign && i == 0 ? other : backend;
                var b = owner.Allocate(call.Lengths[i], call.Types?[i] ?? DType.Float32, zero: false);
                owner.Upload<float>(b, Enumerable.Repeat(Sentinel, (int)b.Length).ToArray());
                buffers.Add(b);
            }
            if (call.Disposed) buffers[0].Dispose();
            var e = Assert.Throws<KernelException>(() => call.Call(backend, buffers.ToArray()))!;
            Assert.That(e.Message, Is.EqualTo(call.Message.Replace("{self}", backend.Name).Replace("{other}", other.Name)));
            foreach (var b in buffers.Where(b => !b.IsDisposed))
            {
                var host = new float[b.Length];
                b.Backend.Download<float>(b, host);
                Assert.That(host, Is.All.EqualTo(Sentinel), "a refused call must not write");
            }
        }
        finally
        {
            foreach (var b in buffers) b.Dispose();
        }
    }

    [Test]
    public void EveryEntryPointIsInTheTable()
    {
        // The entry points of IBackend and of every capability interface; a new member must get a row above.
        var covered = Calls().Select(c => c.Name.Split(' ')[0]).ToHashSet();
        var entryPoints = new[] { typeof(IBackend), typeof(IConvolutionKernels), typeof(IGroupNormKernels), typeof(IAttentionKernels),
                typeof(IResampleKernels), typeof(ISoftmaxKernels), typeof(IOptimizerKernels) }
            .SelectMany(t => t.GetMethods()).Where(m => !m.IsSpecialName && m.Name is not ("GetCapability" or "Dispose")).Select(m => m.Name);
        Assert.That(entryPoints.Where(name => !covered.Contains(name)), Is.Empty);
    }
}
