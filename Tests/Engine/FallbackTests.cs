using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Networks;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// The Engine's fallbacks for backends without fused kernels: every op that has an optional capability, run on
/// <see cref="PrimitiveBackend"/> (the primitive core only) against the fused CpuBackend kernels on the same random
/// inputs, forward values and gradients; and a full U-Net training step (forward, loss, backward, Adam) on both.
/// The central-difference gradient checks of the image ops and the optimizer tests also run on the primitive-only
/// device (<see cref="ImageOpGradientTestsOnPrimitives"/>, <see cref="OptimizerTestsOnPrimitives"/>).
/// </summary>
[TestFixture]
public class FallbackTests
{
    private static Tensor On(Device device, double[] values, int[] shape, DType dtype, bool leaf = true)
    {
        var t = Tensor.FromSpan<double>(values, shape, dtype, device);
        t.RequiresGrad = leaf;
        return t;
    }

    private static double[] Random(System.Random rng, long n, double lo = -1, double hi = 1)
        => Enumerable.Range(0, (int)n).Select(_ => lo + (hi - lo) * rng.NextDouble()).ToArray();

    /// <summary>f on tensors of <paramref name="device"/> and the gradients of sum(f * G), as float64 arrays.</summary>
    private static (double[] Y, double[][] Grads) Evaluate(Device device, Func<Tensor[], Tensor> f, double[][] inputs, int[][] shapes, int seed, DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = inputs.Select((v, i) => On(device, v, shapes[i], dtype)).ToArray();
        var y = f(x);
        var upstream = On(device, Random(new System.Random(seed), y.Count), y.Shape, dtype, leaf: false);
        var grads = Autograd.Grad([Ops.Sum(Ops.Mul(y, upstream))], x, allowUnused: true);
        return (y.ToDoubleArray(), grads.Select((g, i) => g?.ToDoubleArray() ?? new double[inputs[i].Length]).ToArray());
    }

    public sealed record Case(string Name, int[][] Shapes, Func<Tensor[], Tensor> F)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<Case> Cases()
    {
        // Conv2d: strides that do and do not divide the padded extent, non-square and 1x1 kernels, with and without
        // bias; the backward ops as ops of their own.
        yield return new("Conv2d 3x3 s1 p1 bias", [[2, 3, 7, 6], [4, 3, 3, 3], [4]], x => Ops.Conv2d(x[0], x[1], x[2], 1, 1));
        yield return new("Conv2d 3x3 s2 p1", [[1, 2, 8, 9], [3, 2, 3, 3]], x => Ops.Conv2d(x[0], x[1], null, 2, 1));
        yield return new("Conv2d 3x3 s3 p0", [[1, 2, 7, 8], [2, 2, 3, 3], [2]], x => Ops.Conv2d(x[0], x[1], x[2], 3, 0));
        yield return new("Conv2d 2x3 s2 p1", [[2, 1, 5, 5], [2, 1, 2, 3]], x => Ops.Conv2d(x[0], x[1], null, 2, 1));
        yield return new("Conv2d 1x1 bias", [[3, 5, 4, 3], [7, 5, 1, 1], [7]], x => Ops.Conv2d(x[0], x[1], x[2]));
        yield return new("Conv2d 5x5 p2 bias", [[2, 3, 6, 5], [2, 3, 5, 5], [2]], x => Ops.Conv2d(x[0], x[1], x[2], 1, 2));
        yield return new("Conv2dBackwardInput s2 p1", [[1, 2, 3, 3], [2, 2, 3, 3]], x => Ops.Conv2dBackwardInput(x[0], x[1], [1, 2, 6, 5], 2, 1));
        yield return new("Conv2dBackwardWeight s2 p1", [[2, 2, 6, 5], [2, 3, 3, 3]], x => Ops.Conv2dBackwardWeight(x[0], x[1], [3, 2, 3, 3], 2, 1));
        yield return new("GroupNorm", [[3, 6, 5, 3], [6], [6]], x => Ops.GroupNorm(x[0], 3, x[1], x[2]));
        yield return new("GroupNormSilu rank 3", [[2, 8, 17], [8], [8]], x => Ops.GroupNormSilu(x[0], 4, x[1], x[2]));
        yield return new("GroupNorm no spatial axis", [[4, 6], [6], [6]], x => Ops.GroupNorm(x[0], 2, x[1], x[2]));
        yield return new("Attention", [[2, 7, 5], [2, 7, 5], [2, 7, 5]], x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], 2.5));
        yield return new("Attention one token", [[3, 1, 4], [3, 1, 4], [3, 1, 4]], x => Ops.ScaledDotProductAttention(x[0], x[1], x[2]));
        yield return new("UpsampleNearest2x", [[2, 3, 5, 7]], x => Ops.UpsampleNearest2x(x[0]));
        yield return new("UpsampleNearest2xBackward", [[1, 2, 4, 6]], x => Ops.UpsampleNearest2xBackward(x[0]));
        yield return new("AvgPool2d 2", [[1, 2, 4, 10]], x => Ops.AvgPool2d(x[0], 2));
        yield return new("AvgPool2d 3", [[2, 3, 6, 9]], x => Ops.AvgPool2d(x[0], 3));
        yield return new("AvgPool2dBackward 2", [[1, 2, 2, 3]], x => Ops.AvgPool2dBackward(x[0], 2));
        yield return new("Softmax", [[3, 5]], x => Ops.Softmax(Ops.Scale(x[0], 4.0)));
        yield return new("Softmax axis 0", [[4, 3, 2]], x => Ops.Softmax(x[0], 0));
        yield return new("LogSoftmax", [[3, 5]], x => Ops.LogSoftmax(Ops.Scale(x[0], 4.0)));
        yield return new("CrossEntropy", [[4, 3]], x => Ops.CrossEntropy(x[0], [0, 2, 1, 2]));
    }

    [TestCaseSource(nameof(Cases))]
    public void FallbackMatchesFusedKernelsInFloat64(Case c)
    {
        var rng = new System.Random(c.Name.Length * 31 + c.Shapes.Length);
        var inputs = c.Shapes.Select(s => Random(rng, ShapeUtil.Count(s))).ToArray();
        var fused = Evaluate(Device.Cpu, c.F, inputs, c.Shapes, 7, DType.Float64);
        var fallback = Evaluate(PrimitiveBackend.Device, c.F, inputs, c.Shapes, 7, DType.Float64);
        // Two float64 evaluations of one function in different orders. The longest sums here are the 75-term conv
        // sums (Cin KH KW = 3 x 5 x 5) of terms |x w| <= 1, and the GroupNorm statistics over 45 values: any order is
        // within gamma_n sum|terms| <= 75 * 75 * 1.1e-16 ~ 6e-13 of the exact value (Higham 2002, eq. 4.4), so the two
        // paths differ by at most ~1.2e-12. 1e-11 of the output's largest value (at least 1) leaves a margin of 8.
        AssertClose(fallback.Y, fused.Y, 1e-11, $"{c} y");
        for (int k = 0; k < inputs.Length; k++) AssertClose(fallback.Grads[k], fused.Grads[k], 1e-11, $"{c} grad {k}");
    }

    [Test]
    public void SoftmaxFallbackHandlesInfinities()
    {
        // A row with -inf entries (weight 0) and a row of -inf only (0/0: NaN, as the fused kernel gives).
        double ninf = double.NegativeInfinity;
        double[] x = [0.5, ninf, 1.5, ninf, ninf, ninf];
        foreach (bool log in new[] { false, true })
        {
            double[] Run(Device d)
            {
                using var scope = TensorScope.Begin();
                var t = Tensor.FromSpan<double>(x, [2, 3], DType.Float64, d);
                return (log ? Ops.LogSoftmax(t) : Ops.Softmax(t)).ToDoubleArray();
            }
            var fused = Run(Device.Cpu);
            var fallback = Run(PrimitiveBackend.Device);
            for (int i = 0; i < x.Length; i++)
            {
                if (double.IsNaN(fused[i])) Assert.That(fallback[i], Is.NaN, $"log={log} [{i}]");
                else Assert.That(fallback[i], Is.EqualTo(fused[i]).Within(1e-15), $"log={log} [{i}]");
            }
        }
    }

    private static void AssertClose(double[] actual, double[] expected, double relative, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        double scale = Math.Max(1, expected.Where(double.IsFinite).Select(Math.Abs).DefaultIfEmpty(0).Max());
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double e = Math.Abs(actual[i] - expected[i]);
            Assert.That(e, Is.LessThanOrEqualTo(relative * scale), $"{what}[{i}]: {actual[i]:R} vs fused {expected[i]:R}");
            worst = Math.Max(worst, e / (relative * scale));
        }
        TestContext.Out.WriteLine($"{what}: largest difference {worst:P2} of the tolerance");
    }

    /// <summary>unet-s's layout (three levels, 1 res block each, attention at the lowest level and in the middle), scaled down.</summary>
    private static readonly UNetConfig SmallUnet = new()
    {
        Name = "unet-s-small", InChannels = 1, ImageSize = 16, Channels = 16, ChannelMult = [1, 2, 2], NumResBlocks = 1,
        AttentionResolutions = [4], NormGroups = 8,
    };

    private sealed record StepResult(double Loss, double[][] Before, double[][] Grads, double[][] After);

    /// <summary>One training step of the small U-Net on <paramref name="device"/>: eps-prediction MSE, backward, Adam.</summary>
    private static StepResult TrainingStep(Device device, double learningRate)
    {
        using var scope = TensorScope.Begin();
        var net = new UNet(SmallUnet, new Generator(41), device);
        var parameters = net.Parameters();
        var before = parameters.Select(p => p.ToDoubleArray()).ToArray();
        var noise = new Generator(42);
        var x = noise.Normal([2, 1, 16, 16], device: device);
        var target = noise.Normal([2, 1, 16, 16], device: device);
        var t = Tensor.FromSpan<double>([37.0, 611.0], [2], DType.Float32, device);
        var optimizer = new Adam(parameters, learningRate);
        var loss = Ops.MseLoss(net.Forward(x, t), target);
        double lossValue = loss.Item();
        loss.Backward();
        var grads = parameters.Select(p => p.Grad!.ToDoubleArray()).ToArray();
        optimizer.Step();
        var after = parameters.Select(p => p.ToDoubleArray()).ToArray();
        foreach (var p in parameters)
        {
            p.Grad!.Dispose();
            p.Dispose();
        }
        return new StepResult(lossValue, before, grads, after);
    }

    [Test]
    public void UNetTrainingStepOnPrimitivesMatchesTheFusedKernels()
    {
        const double lr = 1e-3, eps = 1e-8, u = 1.0 / (1 << 24);
        var fused = TrainingStep(Device.Cpu, lr);
        var primitives = TrainingStep(PrimitiveBackend.Device, lr);
        // Same seed, same Philox stream on both: bit-identical initial weights.
        for (int k = 0; k < fused.Before.Length; k++) Assert.That(primitives.Before[k], Is.EqualTo(fused.Before[k]), $"initial parameter {k}");

        // float32 forward and backward through ~40 layers, each summing up to Cin KH KW = 864 products in another order
        // (im2col + GEMM against the fused conv, reductions against the fused GroupNorm, MatMul + softmax against the
        // tiled attention): typical relative differences grow like sqrt(n) u per layer, ~1e-6 at the loss.
        Assert.That(primitives.Loss, Is.EqualTo(fused.Loss).Within(1e-5 * fused.Loss), "loss");
        // Gradients: within 1e-4 of each tensor's largest gradient (seen: below 5e-6; rounding differences of the forward
        // pass grow through the backward pass). The key projection's bias has a true gradient of 0 (adding q · b to every
        // score of a query leaves its softmax unchanged), so its computed gradient is rounding noise on both paths: a
        // tensor's scale is at least 1e-3 of the network's largest gradient.
        double networkScale = fused.Grads.Max(g => g.Max(Math.Abs));
        double worstGrad = 0;
        for (int k = 0; k < fused.Grads.Length; k++)
        {
            double scale = Math.Max(fused.Grads[k].Max(Math.Abs), 1e-3 * networkScale);
            for (int i = 0; i < fused.Grads[k].Length; i++)
            {
                double d = Math.Abs(primitives.Grads[k][i] - fused.Grads[k][i]);
                Assert.That(d, Is.LessThanOrEqualTo(1e-4 * scale), $"parameter {k} gradient [{i}]: {primitives.Grads[k][i]:G9} vs fused {fused.Grads[k][i]:G9}");
                worstGrad = Math.Max(worstGrad, d / scale);
            }
        }
        TestContext.Out.WriteLine($"loss {fused.Loss:G9} vs {primitives.Loss:G9}; largest gradient difference {worstGrad:G3} of the tensor's largest gradient");

        // First Adam step from zero moments: m̂ = g, v̂ = g², so p1 = p0 - lr g / (|g| + eps) on both paths. With eps = 1e-8
        // that is ±lr for every gradient well above 1e-8, and a gradient entry near 0 may change sign between the paths;
        // so each path's update is checked against this formula on its own gradient, and the two paths' parameters
        // differ by the difference of the formula on their gradients. Rounding: 8u of |p0| and of the step, plus the
        // float32 rounding of beta1 and beta2, which 1 - beta amplifies: m̂ = (1 - b1) g / (1 - b1^1) is off by up to
        // u b1 / (1 - b1) relative, v̂ by u b2 / (1 - b2) and its square root by half that.
        const double beta1 = 0.9, beta2 = 0.999;
        double stepRounding = u * (8 + beta1 / (1 - beta1) + beta2 / (2 * (1 - beta2)));
        for (int k = 0; k < fused.After.Length; k++)
        {
            for (int i = 0; i < fused.After[k].Length; i++)
            {
                double p0 = fused.Before[k][i], gf = fused.Grads[k][i], gp = primitives.Grads[k][i];
                double stepF = lr * gf / (Math.Abs(gf) + eps), stepP = lr * gp / (Math.Abs(gp) + eps);
                double rounding = 8 * u * Math.Abs(p0) + stepRounding * lr;
                Assert.That(fused.After[k][i], Is.EqualTo(p0 - stepF).Within(rounding), $"fused Adam, parameter {k} [{i}]");
                Assert.That(primitives.After[k][i], Is.EqualTo(p0 - stepP).Within(rounding), $"fallback Adam, parameter {k} [{i}]");
                Assert.That(Math.Abs(primitives.After[k][i] - fused.After[k][i]), Is.LessThanOrEqualTo(Math.Abs(stepP - stepF) + 2 * rounding),
                    $"parameter {k} [{i}] after the step");
            }
        }
    }
}

/// <summary>The central-difference gradient checks of the image ops, on the primitive-only device (the Engine's fallbacks).</summary>
[TestFixture]
public sealed class ImageOpGradientTestsOnPrimitives : ImageOpGradientTests
{
    private IDisposable? _default;

    [SetUp]
    public void UsePrimitives() => _default = PrimitiveBackend.AsDefault();

    [TearDown]
    public void RestoreDevice() => _default?.Dispose();
}

/// <summary>The optimizer tests (hand-computed steps and recurrences) on the primitive-only device (the elementwise fallbacks).</summary>
[TestFixture]
public sealed class OptimizerTestsOnPrimitives : OptimizerTests
{
    private IDisposable? _default;

    [SetUp]
    public void UsePrimitives() => _default = PrimitiveBackend.AsDefault();

    [TearDown]
    public void RestoreDevice() => _default?.Dispose();
}
