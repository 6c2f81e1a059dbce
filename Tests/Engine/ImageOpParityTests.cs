using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// float32 parity of the fused image ops (Conv2dCpu, GroupNormCpu, the tiled AttentionCpu, ResampleCpu behind
/// Ops) with a float64 reference of the same function on the same (float32-rounded) inputs: the naive float64
/// kernels for conv and resampling, and the composite op graphs (<see cref="Ops.GroupNormComposite"/>,
/// <see cref="Ops.AttentionComposite"/>) for GroupNorm and attention. Forward values and the gradients of
/// L = sum(y * G) for a random G are compared, at small awkward sizes (1, odd, not multiples of the kernels'
/// tiles). Also checks that the createGraph path (recorded composite) gives the fused gradient, and that shape
/// errors name the op and the shapes.
/// </summary>
[TestFixture]
public class ImageOpParityTests
{
    private static Tensor Random32(System.Random rng, params int[] shape)
    {
        var v = new float[ShapeUtil.Count(shape)];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(rng.NextDouble() * 2 - 1);
        return Tensor.FromArray(v, shape);
    }

    private static Tensor Leaf(Tensor t)
    {
        t.RequiresGrad = true;
        return t;
    }

    /// <summary>f(inputs) and the gradients of sum(f * G) w.r.t. the inputs, as float64 arrays.</summary>
    private static (double[] Y, double[][] Grads) Evaluate(Func<Tensor[], Tensor> f, Tensor[] inputs, Tensor upstream, bool createGraph = false)
    {
        var y = f(inputs);
        var loss = Ops.Sum(Ops.Mul(y, upstream));
        var grads = Autograd.Grad([loss], inputs, createGraph: createGraph);
        return (y.ToDoubleArray(), grads.Select(g => g!.ToDoubleArray()).ToArray());
    }

    /// <summary>Runs f on float32 inputs and on the same values in float64 (through <paramref name="reference"/>).</summary>
    private static ((double[] Y, double[][] Grads) Fast, (double[] Y, double[][] Grads) Ref) Compare(
        Func<Tensor[], Tensor> fast, Func<Tensor[], Tensor> reference, Tensor[] inputs32, Tensor upstream32)
    {
        var fastResult = Evaluate(fast, inputs32.Select(Leaf).ToArray(), upstream32);
        var inputs64 = inputs32.Select(t => Leaf(Tensor.FromArray(t.ToDoubleArray(), t.Shape))).ToArray();
        var refResult = Evaluate(reference, inputs64, Tensor.FromArray(upstream32.ToDoubleArray(), upstream32.Shape));
        return (fastResult, refResult);
    }

    private static void AssertClose(double[] actual, double[] expected, Func<int, double> tolerance, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        double worst = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]), tol = tolerance(i);
            Assert.That(error, Is.LessThanOrEqualTo(tol), $"{what}[{i}]: {actual[i]:G9} vs reference {expected[i]:G9}");
            worst = Math.Max(worst, error / tol);
        }
        TestContext.Out.WriteLine($"{what}: largest error is {worst:P1} of its tolerance");
    }

    private static double MaxAbs(double[] v) => v.Length == 0 ? 0 : v.Max(a => Math.Abs(a));

    public static IEnumerable<TestCaseData> ConvCases()
    {
        // N, Cin, H, W, Cout, K, stride, pad, bias
        yield return new TestCaseData(1, 3, 7, 5, 5, 3, 1, 1, true).SetName("Conv2d 3x3 s1 p1 [1,3,7,5] -> 5");
        yield return new TestCaseData(2, 2, 8, 9, 3, 3, 2, 1, false).SetName("Conv2d 3x3 s2 p1 [2,2,8,9] -> 3");
        yield return new TestCaseData(3, 5, 4, 3, 7, 1, 1, 0, true).SetName("Conv2d 1x1 [3,5,4,3] -> 7");
        yield return new TestCaseData(1, 1, 1, 1, 1, 1, 1, 0, true).SetName("Conv2d 1x1 [1,1,1,1] -> 1");
        yield return new TestCaseData(2, 3, 6, 5, 2, 5, 1, 2, true).SetName("Conv2d 5x5 s1 p2 [2,3,6,5] -> 2");
    }

    [TestCaseSource(nameof(ConvCases))]
    public void Conv2dFloat32MatchesNaiveFloat64(int n, int cin, int h, int w, int cout, int k, int stride, int pad, bool bias)
    {
        using var scope = TensorScope.Begin();
        var rng = new System.Random(n * 1000 + cin * 100 + h * 10 + w);
        var inputs = bias
            ? new[] { Random32(rng, n, cin, h, w), Random32(rng, cout, cin, k, k), Random32(rng, cout) }
            : new[] { Random32(rng, n, cin, h, w), Random32(rng, cout, cin, k, k) };
        Tensor F(Tensor[] t) => Ops.Conv2d(t[0], t[1], bias ? t[2] : null, stride, pad);
        var probe = F(inputs.Select(t => t.Detach()).ToArray());
        var upstream = Random32(rng, probe.Shape);
        var (fast, reference) = Compare(F, F, inputs, upstream);

        // Any summation order of m float32 products has error <= gamma_m * sum|terms| (Higham, eq. 3.5), gamma_m ~ m u,
        // u = 6e-8. sum|terms| of each output is the same convolution applied to |x|, |w| and |dy|, computed in
        // float64. At most Cin K^2 = 75 terms per y and dx element and N OutH OutW = 60 per dw and db element here,
        // so 1e-5 * sum|terms| (gamma_166) is a bound with margin, plus 1e-7 for the rounding of the result.
        var abs = inputs.Select(t => Tensor.FromArray(t.ToDoubleArray().Select(Math.Abs).ToArray(), t.Shape)).ToArray();
        var absUp = Tensor.FromArray(upstream.ToDoubleArray().Select(Math.Abs).ToArray(), upstream.Shape);
        double[] yAbs = Ops.Conv2d(abs[0], abs[1], bias ? abs[2] : null, stride, pad).ToDoubleArray();
        double[] dxAbs = Ops.Conv2dBackwardInput(absUp, abs[1], inputs[0].Shape, stride, pad).ToDoubleArray();
        double[] dwAbs = Ops.Conv2dBackwardWeight(abs[0], absUp, inputs[1].Shape, stride, pad).ToDoubleArray();
        double dbAbs = absUp.ToDoubleArray().Sum();
        const double relative = 1e-5, absolute = 1e-7;
        AssertClose(fast.Y, reference.Y, i => relative * yAbs[i] + absolute, "y");
        AssertClose(fast.Grads[0], reference.Grads[0], i => relative * dxAbs[i] + absolute, "dx");
        AssertClose(fast.Grads[1], reference.Grads[1], i => relative * dwAbs[i] + absolute, "dw");
        if (bias) AssertClose(fast.Grads[2], reference.Grads[2], _ => relative * dbAbs + absolute, "db");
    }

    public static IEnumerable<TestCaseData> GroupNormCases()
    {
        // shape, groups, SiLU
        yield return new TestCaseData(new[] { 3, 6, 5, 3 }, 3, false).SetName("GroupNorm [3,6,5,3] groups 3");
        yield return new TestCaseData(new[] { 3, 6, 5, 3 }, 3, true).SetName("GroupNormSilu [3,6,5,3] groups 3");
        yield return new TestCaseData(new[] { 1, 5, 1, 7 }, 5, true).SetName("GroupNormSilu [1,5,1,7] groups 5");
        yield return new TestCaseData(new[] { 2, 4, 9, 9 }, 1, false).SetName("GroupNorm [2,4,9,9] groups 1");
        yield return new TestCaseData(new[] { 2, 8, 17 }, 4, true).SetName("GroupNormSilu [2,8,17] groups 4");
    }

    [TestCaseSource(nameof(GroupNormCases))]
    public void GroupNormFusedMatchesCompositeFloat64(int[] shape, int groups, bool silu)
    {
        using var scope = TensorScope.Begin();
        var rng = new System.Random(shape.Sum() + groups);
        int c = shape[1];
        var inputs = new[] { Random32(rng, shape), Random32(rng, c), Random32(rng, c) };
        var upstream = Random32(rng, shape);
        var (fast, reference) = Compare(
            t => Ops.GroupNorm(t[0], groups, t[1], t[2], 1e-5, silu),
            t => Ops.GroupNormComposite(t[0], groups, t[1], t[2], 1e-5, silu), inputs, upstream);
        // The statistics of a group of M <= 324 values are sums with relative error <= M u ~ 2e-5 in the worst case
        // and ~sqrt(M) u ~ 1e-6 in practice (the kernel sums blocks in double); |xhat| <= sqrt(M) and |gamma|, |beta|,
        // |x| <= 1, so 2e-5 of the tensor's largest value (at least 1) bounds the worst case. dgamma and dbeta sum
        // N HW terms of |G xhat| <= sqrt(M), scaled the same way by their largest value. (Errors seen: below 2% of it.)
        AssertClose(fast.Y, reference.Y, _ => 2e-5 * Math.Max(1, MaxAbs(reference.Y)), "y");
        string[] names = ["dx", "dgamma", "dbeta"];
        for (int k = 0; k < 3; k++)
        {
            double scale = Math.Max(1, MaxAbs(reference.Grads[k]));
            AssertClose(fast.Grads[k], reference.Grads[k], _ => 2e-5 * scale, names[k]);
        }
    }

    public static IEnumerable<TestCaseData> AttentionCases()
    {
        // B, N, D: N = 1; N = 67 crosses the 64-row query and key blocks; N = 130 crosses the 128-key forward tile.
        yield return new TestCaseData(2, 1, 3).SetName("Attention [2,1,3]");
        yield return new TestCaseData(1, 7, 5).SetName("Attention [1,7,5]");
        yield return new TestCaseData(2, 67, 5).SetName("Attention [2,67,5]");
        yield return new TestCaseData(3, 130, 8).SetName("Attention [3,130,8]");
    }

    [TestCaseSource(nameof(AttentionCases))]
    public void AttentionTiledMatchesCompositeFloat64(int b, int n, int d)
    {
        using var scope = TensorScope.Begin();
        var rng = new System.Random(b * 1000 + n * 10 + d);
        var inputs = new[] { Random32(rng, b, n, d), Random32(rng, b, n, d), Random32(rng, b, n, d) };
        var upstream = Random32(rng, b, n, d);
        // A larger scale than 1/sqrt(D) makes the softmax peaked, so the online max and rescaling matter.
        const double scale = 2.5;
        var (fast, reference) = Compare(
            t => Ops.ScaledDotProductAttention(t[0], t[1], t[2], scale),
            t => Ops.AttentionComposite(t[0], t[1], t[2], scale), inputs, upstream);
        // o is a convex combination of rows of v (|v| <= 1); its float32 error comes from the D-term scores
        // (|s| <= 2.5 D, error ~ D u |s|, which exp turns into a relative error of the weights ~1e-5 for D = 8) and the
        // N-term weighted sums (~N u with N <= 130, ~8e-6). 5e-5 absolute covers both with margin. The gradients are
        // sums of the same kind scaled by at most 2.5 |k| and |q|, compared relative to their largest value.
        // (Errors seen: below 2% of the tolerance, the typical sqrt(N) rather than N growth of rounding errors.)
        AssertClose(fast.Y, reference.Y, _ => 5e-5, "o");
        string[] names = ["dq", "dk", "dv"];
        for (int k = 0; k < 3; k++)
        {
            double s = Math.Max(1, MaxAbs(reference.Grads[k]));
            AssertClose(fast.Grads[k], reference.Grads[k], _ => 5e-5 * s, names[k]);
        }
    }

    [Test]
    public void ResampleFloat32MatchesFloat64()
    {
        using var scope = TensorScope.Begin();
        var rng = new System.Random(11);
        foreach (var (shape, k) in new[] { (new[] { 1, 1, 1, 1 }, 1), (new[] { 2, 3, 5, 7 }, 0), (new[] { 2, 3, 6, 9 }, 3), (new[] { 1, 2, 4, 10 }, 2) })
        {
            var x = new[] { Random32(rng, shape) };
            Func<Tensor[], Tensor> f = k == 0 ? t => Ops.UpsampleNearest2x(t[0]) : t => Ops.AvgPool2d(t[0], k);
            var upstream = Random32(rng, f(x.Select(t => t.Detach()).ToArray()).Shape);
            var (fast, reference) = Compare(f, f, x, upstream);
            // Copies are exact; each sum has at most k^2 = 9 terms of |value| <= 1: error <= 9 u * 9 ~ 5e-6 absolute.
            AssertClose(fast.Y, reference.Y, _ => 5e-6, $"y of {ShapeUtil.Format(shape)} k {k}");
            AssertClose(fast.Grads[0], reference.Grads[0], _ => 5e-6, $"dx of {ShapeUtil.Format(shape)} k {k}");
        }
    }

    [Test]
    public void CreateGraphGradientsMatchFusedGradientsInFloat32()
    {
        // With createGraph the GroupNorm and attention gradients come from the recomputed composite, without it from
        // the fused kernels; both are float32 computations of one quantity, equal to the tolerances argued above
        // (5e-5 of the largest gradient; errors seen: below 1% of it). Conv's recorded backward ops are the same kernels.
        using var scope = TensorScope.Begin();
        var rng = new System.Random(21);
        var cases = new (Func<Tensor[], Tensor> F, Tensor[] Inputs)[]
        {
            (t => Ops.GroupNormSilu(t[0], 3, t[1], t[2]), [Random32(rng, 2, 6, 5, 3), Random32(rng, 6), Random32(rng, 6)]),
            (t => Ops.ScaledDotProductAttention(t[0], t[1], t[2]), [Random32(rng, 2, 67, 5), Random32(rng, 2, 67, 5), Random32(rng, 2, 67, 5)]),
            (t => Ops.Conv2d(t[0], t[1], t[2], 2, 1), [Random32(rng, 2, 3, 7, 6), Random32(rng, 4, 3, 3, 3), Random32(rng, 4)]),
        };
        foreach (var (f, inputs) in cases)
        {
            var leaves = inputs.Select(Leaf).ToArray();
            var upstream = Random32(rng, f(inputs.Select(t => t.Detach()).ToArray()).Shape);
            var plain = Evaluate(f, leaves, upstream, createGraph: false);
            var recorded = Evaluate(f, leaves, upstream, createGraph: true);
            for (int k = 0; k < leaves.Length; k++)
            {
                double s = Math.Max(1, MaxAbs(plain.Grads[k]));
                AssertClose(recorded.Grads[k], plain.Grads[k], _ => 5e-5 * s, $"input {k} of {ShapeUtil.Format(inputs[0].Shape)}");
            }
        }
    }

    [Test]
    public void ShapeErrorsNameTheOpAndTheShapes()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([2, 3, 5, 5]);
        var e = Assert.Throws<TensorException>(() => Ops.Conv2d(x, Tensor.Zeros([4, 2, 3, 3])))!;
        Assert.That(e.Message, Does.Contain("Conv2d").And.Contain("[2,3,5,5]").And.Contain("[4,2,3,3]"));
        e = Assert.Throws<TensorException>(() => Ops.Conv2d(x, Tensor.Zeros([4, 3, 3, 3]), Tensor.Zeros([5])))!;
        Assert.That(e.Message, Does.Contain("Conv2d").And.Contain("bias [5]").And.Contain("[4,3,3,3]"));
        e = Assert.Throws<TensorException>(() => Ops.Conv2d(x, Tensor.Zeros([4, 3, 9, 9]), null, 1, 1))!;
        Assert.That(e.Message, Does.Contain("Conv2d").And.Contain("[2,3,5,5]").And.Contain("[4,3,9,9]"));
        e = Assert.Throws<TensorException>(() => Ops.Conv2d(Tensor.Zeros([3, 5, 5]), Tensor.Zeros([4, 3, 3, 3])))!;
        Assert.That(e.Message, Does.Contain("Conv2d").And.Contain("[3,5,5]"));
        e = Assert.Throws<TensorException>(() => Ops.Conv2dBackwardInput(Tensor.Zeros([2, 4, 4, 4]), Tensor.Zeros([4, 3, 3, 3]), [2, 3, 5, 5], 1, 1))!;
        Assert.That(e.Message, Does.Contain("Conv2dBackwardInput").And.Contain("[2,4,4,4]").And.Contain("[2,4,5,5]"));
        e = Assert.Throws<TensorException>(() => Ops.Conv2dBackwardWeight(x, Tensor.Zeros([2, 4, 3, 3]), [4, 3, 3, 3], 1, 1))!;
        Assert.That(e.Message, Does.Contain("Conv2dBackwardWeight").And.Contain("[2,4,3,3]").And.Contain("[2,4,5,5]"));

        e = Assert.Throws<TensorException>(() => Ops.GroupNorm(Tensor.Zeros([2, 6, 4, 4]), 4, Tensor.Ones([6]), Tensor.Zeros([6])))!;
        Assert.That(e.Message, Does.Contain("GroupNorm").And.Contain("[2,6,4,4]").And.Contain("groups 4"));
        e = Assert.Throws<TensorException>(() => Ops.GroupNormSilu(Tensor.Zeros([2, 6, 4, 4]), 3, Tensor.Ones([5]), Tensor.Zeros([6])))!;
        Assert.That(e.Message, Does.Contain("GroupNormSilu").And.Contain("gamma [5]").And.Contain("[2,6,4,4]"));

        e = Assert.Throws<TensorException>(() => Ops.ScaledDotProductAttention(Tensor.Zeros([2, 5, 4]), Tensor.Zeros([2, 6, 4]), Tensor.Zeros([2, 6, 4])))!;
        Assert.That(e.Message, Does.Contain("ScaledDotProductAttention").And.Contain("[2,5,4]").And.Contain("[2,6,4]"));
        e = Assert.Throws<TensorException>(() => Ops.ScaledDotProductAttention(Tensor.Zeros([5, 4]), Tensor.Zeros([5, 4]), Tensor.Zeros([5, 4])))!;
        Assert.That(e.Message, Does.Contain("ScaledDotProductAttention").And.Contain("[5,4]"));

        e = Assert.Throws<TensorException>(() => Ops.AvgPool2d(Tensor.Zeros([1, 2, 5, 4]), 2))!;
        Assert.That(e.Message, Does.Contain("AvgPool2d").And.Contain("[1,2,5,4]"));
        e = Assert.Throws<TensorException>(() => Ops.UpsampleNearest2x(Tensor.Zeros([2, 3, 4])))!;
        Assert.That(e.Message, Does.Contain("UpsampleNearest2x").And.Contain("[2,3,4]"));
        e = Assert.Throws<TensorException>(() => Ops.UpsampleNearest2xBackward(Tensor.Zeros([1, 1, 3, 4])))!;
        Assert.That(e.Message, Does.Contain("UpsampleNearest2xBackward").And.Contain("[1,1,3,4]"));
        e = Assert.Throws<TensorException>(() => Ops.Conv2d(x, Tensor.Zeros([4, 3, 3, 3], DType.Float64)))!;
        Assert.That(e.Message, Does.Contain("Conv2d").And.Contain("Float32").And.Contain("Float64"));
    }
}
