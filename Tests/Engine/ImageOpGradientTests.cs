using NUnit.Framework;
using DiffusionCore.Engine;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// Gradient checks (float64, central differences) of the image ops: Conv2d and its two backward ops, GroupNorm
/// (with and without the fused SiLU), scaled-dot-product attention, nearest x2 upsampling and average pooling with
/// their adjoint ops. In float64 the CPU backend runs the plain loops (Conv2dNaive, AttentionNaive) and the generic
/// GroupNorm and resample kernels. A first-order check differentiates without a graph, so it tests the fused
/// backward kernels; a second-order check records the backward pass, so it tests the recorded backward ops (conv,
/// resampling) or the composite recomputation (GroupNorm, attention), while its central differences of the first
/// derivative run the fused kernels again: both paths are checked against each other.
/// </summary>
[TestFixture]
public class ImageOpGradientTests
{
    public sealed record Case(string Name, int[][] Shapes, Func<Tensor[], Tensor> F, bool Linear = false)
    {
        public override string ToString() => Name;
    }

    public static IEnumerable<Case> Cases()
    {
        // Conv2d: 3x3 stride 1 pad 1, 3x3 stride 2 pad 1 on odd sizes (the last input row and column are read by no
        // output, so BackInput must leave them zero), 1x1 (the kernel's no-im2col path in float32), with and without
        // bias. Squaring the output makes the upstream gradient depend on x and w, so the second-order check also
        // runs the d/ddy rules of both backward ops.
        yield return new("Conv2d 3x3 s1 p1 bias", [[2, 2, 5, 4], [3, 2, 3, 3], [3]], x => Ops.Square(Ops.Conv2d(x[0], x[1], x[2], 1, 1)));
        yield return new("Conv2d 3x3 s1 p1 no bias", [[1, 3, 4, 4], [2, 3, 3, 3]], x => Ops.Square(Ops.Conv2d(x[0], x[1], null, 1, 1)));
        yield return new("Conv2d 3x3 s2 p1 bias", [[1, 2, 6, 5], [2, 2, 3, 3], [2]], x => Ops.Square(Ops.Conv2d(x[0], x[1], x[2], 2, 1)));
        yield return new("Conv2d 3x3 s2 p1 no bias", [[2, 1, 5, 5], [3, 1, 3, 3]], x => Ops.Square(Ops.Conv2d(x[0], x[1], null, 2, 1)));
        yield return new("Conv2d 1x1 bias", [[2, 3, 3, 2], [4, 3, 1, 1], [4]], x => Ops.Square(Ops.Conv2d(x[0], x[1], x[2])));
        yield return new("Conv2d 1x1 no bias", [[1, 2, 2, 3], [3, 2, 1, 1]], x => Ops.Square(Ops.Conv2d(x[0], x[1])));
        yield return new("Conv2d plain (bilinear)", [[1, 2, 4, 3], [2, 2, 3, 3], [2]], x => Ops.Conv2d(x[0], x[1], x[2], 1, 1));
        // The backward ops as ops of their own: dy [1, 2, 3, 3] is the output of a 3x3 s2 p1 conv of a [1, 2, 6, 5] input.
        yield return new("Conv2dBackwardInput", [[1, 2, 3, 3], [2, 2, 3, 3]], x => Ops.Square(Ops.Conv2dBackwardInput(x[0], x[1], [1, 2, 6, 5], 2, 1)));
        yield return new("Conv2dBackwardWeight", [[1, 2, 6, 5], [1, 2, 3, 3]], x => Ops.Square(Ops.Conv2dBackwardWeight(x[0], x[1], [2, 2, 3, 3], 2, 1)));

        yield return new("GroupNorm", [[2, 4, 3, 2], [4], [4]], x => Ops.GroupNorm(x[0], 2, x[1], x[2]));
        yield return new("GroupNorm one group per channel", [[2, 3, 2, 2], [3], [3]], x => Ops.GroupNorm(x[0], 3, x[1], x[2]));
        yield return new("GroupNormSilu", [[2, 4, 3, 2], [4], [4]], x => Ops.GroupNormSilu(x[0], 2, x[1], x[2]));
        yield return new("GroupNormSilu rank 3", [[2, 6, 3], [6], [6]], x => Ops.GroupNorm(x[0], 3, x[1], x[2], eps: 1e-3, fuseSilu: true));
        // The same parameters used twice: the inner output depends on gamma, so the recomputed gradient of the outer
        // op must stop at its own inputs and not flow on into gamma a second time.
        yield return new("GroupNorm shared parameters", [[1, 4, 2, 2], [4], [4]], x => Ops.GroupNormSilu(Ops.GroupNorm(x[0], 2, x[1], x[2]), 2, x[1], x[2]));

        yield return new("Attention", [[2, 3, 4], [2, 3, 4], [2, 3, 4]], x => Ops.ScaledDotProductAttention(x[0], x[1], x[2]));
        yield return new("Attention scale 1.7", [[1, 4, 2], [1, 4, 2], [1, 4, 2]], x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], 1.7));
        yield return new("Attention one token", [[2, 1, 3], [2, 1, 3], [2, 1, 3]], x => Ops.ScaledDotProductAttention(x[0], x[1], x[2]) * x[0]);
        yield return new("Attention self (q = k = v)", [[1, 3, 3]], x => Ops.ScaledDotProductAttention(x[0], x[0], x[0]));

        yield return new("UpsampleNearest2x", [[2, 2, 3, 2]], x => Ops.UpsampleNearest2x(x[0]), Linear: true);
        yield return new("UpsampleNearest2x squared", [[1, 2, 2, 3]], x => Ops.UpsampleNearest2x(x[0]) * Ops.UpsampleNearest2x(x[0]));
        yield return new("UpsampleNearest2xBackward squared", [[1, 2, 4, 2]], x => Ops.Square(Ops.UpsampleNearest2xBackward(x[0])));
        yield return new("AvgPool2d 2", [[2, 2, 4, 6]], x => Ops.AvgPool2d(x[0], 2), Linear: true);
        yield return new("AvgPool2d 3 squared", [[1, 2, 3, 6]], x => Ops.Square(Ops.AvgPool2d(x[0], 3)));
        yield return new("AvgPool2dBackward squared", [[1, 2, 2, 3]], x => Ops.Square(Ops.AvgPool2dBackward(x[0], 2)));
    }

    [TestCaseSource(nameof(Cases))]
    public void FirstOrderMatchesCentralDifferences(Case c)
    {
        var x = GradCheck.MakeInputs(c.Name.Length, c.Shapes);
        // Smooth functions of O(1) inputs in double: the central difference is good to ~1e-9 here.
        GradCheck.FirstOrder(c.F, x, tolerance: 1e-6);
    }

    public static IEnumerable<Case> NonLinearCases() => Cases().Where(c => !c.Linear);

    [TestCaseSource(nameof(NonLinearCases))]
    public void SecondOrderMatchesCentralDifferences(Case c)
    {
        var x = GradCheck.MakeInputs(c.Name.Length + 7, c.Shapes);
        // Differences of first derivatives computed by autograd: one more O(h^2) layer of error.
        GradCheck.SecondOrder(c.F, x, tolerance: 1e-5);
    }

    [Test]
    public void ThirdOrderThroughGroupNormAndAttentionIsRecorded()
    {
        // The recomputed composite gradient is itself recorded, so a gradient of a second-order gradient exists:
        // d/dx of sum(d²L/dx² · v) for L = sum(f(x) * w) is checked against a central difference of the
        // second-order quantity, computed by autograd at x ± h e_i (h = 1e-5: a difference of second derivatives).
        foreach (var f in new Func<Tensor, Tensor>[]
                 {
                     x => Ops.GroupNormSilu(x, 2, Tensor.FromArray(new[] { 0.7, -1.1, 1.3, 0.4 }, 4), Tensor.FromArray(new[] { 0.1, 0.2, -0.3, 0.5 }, 4)),
                     x => Ops.Reshape(Ops.ScaledDotProductAttention(Ops.Reshape(x, 2, 4, 2), Ops.Reshape(x, 2, 4, 2), Ops.Reshape(x, 2, 4, 2)), x.Shape),
                 })
        {
            using var scope = TensorScope.Begin();
            var x0 = GradCheck.MakeInputs(3, [[1, 4, 2, 2]])[0];
            var rng = new System.Random(5);
            var w = Tensor.FromArray(Enumerable.Range(0, 16).Select(_ => rng.NextDouble() - 0.5).ToArray(), 1, 4, 2, 2);
            var v = Tensor.FromArray(Enumerable.Range(0, 16).Select(_ => rng.NextDouble() - 0.5).ToArray(), 1, 4, 2, 2);
            var u = Tensor.FromArray(Enumerable.Range(0, 16).Select(_ => rng.NextDouble() - 0.5).ToArray(), 1, 4, 2, 2);

            // S(x) = sum(d/dx [sum(dL/dx · v)] · u): a third-order quantity through two recorded backward passes.
            double SecondOrderProbe(Tensor at, out Tensor? grad)
            {
                var l = Ops.Sum(Ops.Mul(f(at), w));
                var g1 = Autograd.Grad([l], [at], createGraph: true)[0]!;
                var g2 = Autograd.Grad([Ops.Sum(Ops.Mul(g1, v))], [at], createGraph: true)[0]!;
                var s = Ops.Sum(Ops.Mul(g2, u));
                grad = s.TracksGrad ? Autograd.Grad([s], [at])[0] : null;
                return s.Item();
            }

            SecondOrderProbe(x0, out var analytic);
            Assert.That(analytic, Is.Not.Null);
            var a = analytic!.ToDoubleArray();
            var x0v = x0.ToDoubleArray();
            const double h = 1e-5;
            for (int i = 0; i < x0v.Length; i++)
            {
                var plus = (double[])x0v.Clone();
                var minus = (double[])x0v.Clone();
                plus[i] += h;
                minus[i] -= h;
                var tp = Tensor.FromArray(plus, x0.Shape);
                tp.RequiresGrad = true;
                var tm = Tensor.FromArray(minus, x0.Shape);
                tm.RequiresGrad = true;
                double numeric = (SecondOrderProbe(tp, out _) - SecondOrderProbe(tm, out _)) / (2 * h);
                // Truncation O(h^2) ~ 1e-10 and rounding ~1e-16 |S| / h ~ 1e-11 relative: 1e-6 leaves a wide margin.
                Assert.That(Math.Abs(numeric - a[i]) / Math.Max(1.0, Math.Abs(numeric)), Is.LessThan(1e-6), $"element {i}: autograd {a[i]:G10}, central difference {numeric:G10}");
            }
        }
    }
}
