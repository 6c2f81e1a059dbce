using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// Op semantics against NumPy and torch: MatMul's batch broadcasting and rank-1 operands (torch.matmul), reductions
/// over empty axes (sum 0, mean NaN, max an error), and empty batches through Conv2d, GroupNorm and attention (empty
/// results; zero weight, bias, gamma and beta gradients), on the fused CPU kernels and on the primitive-only fallbacks.
/// Gradients of the new MatMul forms are checked by central differences in <see cref="OpGradientTests"/>.
/// </summary>
[TestFixture]
public class OpSemanticsTests
{
    private static readonly Device[] Devices = [Device.Cpu, PrimitiveBackend.Device];

    private static Tensor Random(int seed, params int[] shape)
    {
        var rng = new System.Random(seed);
        var v = Enumerable.Range(0, (int)ShapeUtil.Count(shape)).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        return Tensor.FromArray(v, shape);
    }

    /// <summary>The [.., m, n] product of the last two axes of a and b, summed by hand in float64.</summary>
    private static double[] Product(double[] a, int aOffset, double[] b, int bOffset, int m, int k, int n)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                for (int p = 0; p < k; p++)
                    c[i * n + j] += a[aOffset + i * k + p] * b[bOffset + p * n + j];
        return c;
    }

    [Test]
    public void MatMulBroadcastsBatchAxesAsNumPy()
    {
        using var scope = TensorScope.Begin();
        // [2, 1, 5, 7] x [3, 7, 4] -> [2, 3, 5, 4]: y[i, j] = a[i, 0] b[j].
        var a = Random(1, 2, 1, 5, 7);
        var b = Random(2, 3, 7, 4);
        var y = Ops.MatMul(a, b);
        Assert.That(y.Shape, Is.EqualTo(new[] { 2, 3, 5, 4 }));
        var av = a.ToDoubleArray();
        var bv = b.ToDoubleArray();
        var yv = y.ToDoubleArray();
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                // float64 sums of 7 products in the same order up to GEMM's blocking: within 1e-15 of |terms| <= 7.
                Assert.That(yv.Skip((i * 3 + j) * 20).Take(20), Is.EqualTo(Product(av, i * 35, bv, j * 28, 5, 7, 4)).Within(1e-14), $"batch ({i}, {j})");

        // [3, 5, 7] x [1, 7, 4] -> [3, 5, 4]: the single b is shared.
        var c = Random(3, 3, 5, 7);
        var d = Random(4, 1, 7, 4);
        var z = Ops.MatMul(c, d);
        Assert.That(z.Shape, Is.EqualTo(new[] { 3, 5, 4 }));
        var cv = c.ToDoubleArray();
        var dv = d.ToDoubleArray();
        var zv = z.ToDoubleArray();
        for (int i = 0; i < 3; i++)
            Assert.That(zv.Skip(i * 20).Take(20), Is.EqualTo(Product(cv, i * 35, dv, 0, 5, 7, 4)).Within(1e-14), $"batch {i}");

        var e = Assert.Throws<TensorException>(() => Ops.MatMul(Random(5, 2, 5, 7), Random(6, 3, 7, 4)))!;
        Assert.That(e.Message, Does.Contain("MatMul").And.Contain("[2]").And.Contain("[3]").And.Contain("do not broadcast"));
    }

    [Test]
    public void MatMulTreatsVectorsAsTorchMatmul()
    {
        using var scope = TensorScope.Begin();
        var v = Tensor.FromArray(new[] { 1.0, 2, 3 }, 3);
        var m = Tensor.FromArray(new[] { 1.0, 0, 2, -1, 3, 1 }, 3, 2);   // [[1, 0], [2, -1], [3, 1]]
        var mt = Tensor.FromArray(new[] { 1.0, 2, 3, 0, -1, 1 }, 2, 3);  // its transpose
        Assert.That(Ops.MatMul(v, m).Shape, Is.EqualTo(new[] { 2 }));
        Assert.That(Ops.MatMul(v, m).ToDoubleArray(), Is.EqualTo(new[] { 14.0, 1 }));
        Assert.That(Ops.MatMul(mt, v).Shape, Is.EqualTo(new[] { 2 }));
        Assert.That(Ops.MatMul(mt, v).ToDoubleArray(), Is.EqualTo(new[] { 14.0, 1 }));
        var dot = Ops.MatMul(v, v);
        Assert.That(dot.Shape, Is.Empty);
        Assert.That(dot.Item(), Is.EqualTo(14.0));
        Assert.That(Ops.MatMul(Random(7, 4, 2, 3), v).Shape, Is.EqualTo(new[] { 4, 2 }));
        Assert.That(Ops.MatMul(v, Random(8, 4, 3, 5)).Shape, Is.EqualTo(new[] { 4, 5 }));
        Assert.That(Ops.MatMul(v, m, transposeA: true).ToDoubleArray(), Is.EqualTo(new[] { 14.0, 1 }), "a vector's transpose is itself");
        Assert.Throws<TensorException>(() => Ops.MatMul(v, Random(9, 4, 2)));
        Assert.Throws<TensorException>(() => Ops.MatMul(Tensor.Scalar(1.0, DType.Float64), v));
    }

    [Test]
    public void ReductionsOverEmptyAxesFollowNumPy()
    {
        using var scope = TensorScope.Begin();
        var empty = Tensor.Zeros([0, 3]);
        empty.RequiresGrad = true;
        Assert.That(Ops.Sum(empty, [0]).ToArray(), Is.EqualTo(new float[] { 0, 0, 0 }));
        var mean = Ops.Mean(empty, [0]);
        Assert.That(mean.Shape, Is.EqualTo(new[] { 3 }));
        Assert.That(mean.ToArray().All(float.IsNaN), "mean over an empty axis is 0/0");
        Assert.That(float.IsNaN(Ops.Mean(empty).ToArray()[0]), "mean of an empty tensor");
        Assert.That(Ops.Mean(empty, [1]).Shape, Is.EqualTo(new[] { 0 }), "mean over a non-empty axis of an empty tensor is empty");
        var e = Assert.Throws<TensorException>(() => Ops.Max(empty, [0]))!;
        Assert.That(e.Message, Does.Contain("Max").And.Contain("[0,3]"));
        // Gradients with respect to no element: empty.
        var grads = Autograd.Grad([Ops.Sum(Ops.Sum(empty, [0]))], [empty]);
        Assert.That(grads[0]!.Shape, Is.EqualTo(new[] { 0, 3 }));
    }

    [TestCaseSource(nameof(Devices))]
    public void EmptyBatchesRunThroughConvNormAndAttention(Device device)
    {
        using var scope = TensorScope.Begin();
        Tensor Leaf(params int[] shape)
        {
            var t = Tensor.Full(shape, 0.5, DType.Float32, device);
            t.RequiresGrad = true;
            return t;
        }

        foreach (int stride in new[] { 1, 2 })
        {
            var x = Leaf(0, 3, 7, 6);
            var w = Leaf(4, 3, 3, 3);
            var b = Leaf(4);
            var y = Ops.Conv2d(x, w, b, stride, 1);
            Assert.That(y.Shape, Is.EqualTo(new[] { 0, 4, stride == 1 ? 7 : 4, stride == 1 ? 6 : 3 }), $"conv stride {stride}");
            var g = Autograd.Grad([Ops.Sum(y)], [x, w, b]);
            Assert.That(g[0]!.Shape, Is.EqualTo(x.Shape));
            Assert.That(g[1]!.ToArray(), Is.All.EqualTo(0f), "no sample: zero weight gradient");
            Assert.That(g[2]!.ToArray(), Is.All.EqualTo(0f), "no sample: zero bias gradient");
            Assert.That(Ops.Conv2dBackwardInput(Tensor.Zeros(y.Shape, DType.Float32, device), w, x.Shape, stride, 1).Shape, Is.EqualTo(x.Shape));
            Assert.That(Ops.Conv2dBackwardWeight(x, Tensor.Zeros(y.Shape, DType.Float32, device), w.Shape, stride, 1).ToArray(), Is.All.EqualTo(0f));
        }

        var xn = Leaf(0, 6, 4, 4);
        var gamma = Leaf(6);
        var beta = Leaf(6);
        var yn = Ops.GroupNormSilu(xn, 3, gamma, beta);
        Assert.That(yn.Shape, Is.EqualTo(xn.Shape));
        foreach (bool createGraph in new[] { false, true })
        {
            var gn = Autograd.Grad([Ops.Sum(yn)], [xn, gamma, beta], createGraph: createGraph);
            Assert.That(gn[0]!.Shape, Is.EqualTo(xn.Shape));
            Assert.That(gn[1]!.ToArray().Concat(gn[2]!.ToArray()), Is.All.EqualTo(0f), $"GroupNorm: zero gamma and beta gradients (createGraph {createGraph})");
            yn = Ops.GroupNormSilu(xn, 3, gamma, beta);
        }

        var q = Leaf(0, 5, 4);
        var o = Ops.ScaledDotProductAttention(q, q, q);
        Assert.That(o.Shape, Is.EqualTo(q.Shape));
        Assert.That(Autograd.Grad([Ops.Sum(o)], [q])[0]!.Shape, Is.EqualTo(q.Shape));
    }
}
