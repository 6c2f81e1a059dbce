using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using NUnit.Framework;

namespace DiffusionCore.Tests.Engine;

[TestFixture]
public class TensorTests
{
    private static Tensor T(float[] v, params int[] shape) => Tensor.FromArray(v, shape);

    [Test]
    public void BroadcastingFollowsNumPyRules()
    {
        Assert.That(ShapeUtil.Broadcast("op", [3, 1, 5], [4, 1]), Is.EqualTo(new[] { 3, 4, 5 }));
        Assert.That(ShapeUtil.Broadcast("op", [], [2, 3]), Is.EqualTo(new[] { 2, 3 }));
        Assert.That(ShapeUtil.Broadcast("op", [0, 1], [1, 3]), Is.EqualTo(new[] { 0, 3 }));
        var a = T([1, 2, 3], 3, 1);
        var b = T([10, 20], 2);
        Assert.That((a + b).ToArray(), Is.EqualTo(new float[] { 11, 21, 12, 22, 13, 23 }));
        Assert.That((a - b).Shape, Is.EqualTo(new[] { 3, 2 }));
        Assert.That((b * a).ToArray(), Is.EqualTo(new float[] { 10, 20, 20, 40, 30, 60 }));
    }

    [Test]
    public void BadShapesNameTheOpAndBothShapes()
    {
        var a = Tensor.Zeros([2, 3]);
        var b = Tensor.Zeros([4]);
        var e = Assert.Throws<TensorException>(() => Ops.Add(a, b))!;
        Assert.That(e.Message, Does.Contain("Add").And.Contain("[2,3]").And.Contain("[4]"));
        e = Assert.Throws<TensorException>(() => Ops.MatMul(a, Tensor.Zeros([2, 5])))!;
        Assert.That(e.Message, Does.Contain("MatMul").And.Contain("[2,3]").And.Contain("[2,5]"));
        e = Assert.Throws<TensorException>(() => Ops.Reshape(a, 4, 2))!;
        Assert.That(e.Message, Does.Contain("Reshape").And.Contain("[2,3]").And.Contain("[4,2]"));
        e = Assert.Throws<TensorException>(() => Ops.Concat([a, Tensor.Zeros([3, 3])], 1))!;
        Assert.That(e.Message, Does.Contain("Concat").And.Contain("[2,3]").And.Contain("[3,3]"));
        e = Assert.Throws<TensorException>(() => Ops.MseLoss(a, Tensor.Zeros([3, 2])))!;
        Assert.That(e.Message, Does.Contain("MseLoss").And.Contain("[2,3]").And.Contain("[3,2]"));
        e = Assert.Throws<TensorException>(() => Ops.Linear(a, Tensor.Zeros([5, 4])))!;
        Assert.That(e.Message, Does.Contain("Linear").And.Contain("[2,3]").And.Contain("[5,4]"));
        e = Assert.Throws<TensorException>(() => Ops.Sum(a, [2]))!;
        Assert.That(e.Message, Does.Contain("Sum").And.Contain("axis 2"));
        e = Assert.Throws<TensorException>(() => Ops.Add(a, Tensor.Zeros([2, 3], DType.Float64)))!;
        Assert.That(e.Message, Does.Contain("Add").And.Contain("Float32").And.Contain("Float64"));
    }

    [Test]
    public void ShapeOpsMoveTheRightElements()
    {
        var x = T([0, 1, 2, 3, 4, 5], 2, 3);
        Assert.That(x.Transpose(0, 1).ToArray(), Is.EqualTo(new float[] { 0, 3, 1, 4, 2, 5 }));
        Assert.That(Ops.Slice(x, 1, 1, 2).ToArray(), Is.EqualTo(new float[] { 1, 2, 4, 5 }));
        Assert.That(Ops.Pad(x, [0, 1], [1, 0], -1).ToArray(), Is.EqualTo(new float[] { -1, 0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1 }));
        Assert.That(Ops.Concat([x, x], 0).Shape, Is.EqualTo(new[] { 4, 3 }));
        var parts = Ops.Split(x, [1, 2], 1);
        Assert.That(parts[1].ToArray(), Is.EqualTo(new float[] { 1, 2, 4, 5 }));
        Assert.That(Ops.Expand(T([7, 8], 2, 1), [2, 3]).ToArray(), Is.EqualTo(new float[] { 7, 7, 7, 8, 8, 8 }));
        var y = T(Enumerable.Range(0, 24).Select(i => (float)i).ToArray(), 2, 3, 4);
        var p = y.Permute(2, 0, 1);
        Assert.That(p.Shape, Is.EqualTo(new[] { 4, 2, 3 }));
        Assert.That(p.ToArray()[1], Is.EqualTo(4f)); // p[0,0,1] = y[0,1,0]
        Assert.That(Ops.Max(y, [2]).ToArray(), Is.EqualTo(new float[] { 3, 7, 11, 15, 19, 23 }));
        Assert.That(Ops.Sum(y, [0, 2]).ToArray(), Is.EqualTo(new float[] { 60, 92, 124 }));
    }

    [Test]
    public void ReductionsHandleEmptyAndSpecialValues()
    {
        var empty = Tensor.Zeros([0, 3]);
        Assert.That(Ops.Sum(empty, [0]).ToArray(), Is.EqualTo(new float[] { 0, 0, 0 }));
        Assert.Throws<TensorException>(() => Ops.Max(empty, [0]));
        var x = T([1, float.NaN, 3], 3);
        Assert.That(float.IsNaN(Ops.Max(x).ToArray()[0]), "max propagates NaN");
        var inf = T([float.NegativeInfinity, float.NegativeInfinity], 1, 2);
        Assert.That(Ops.LogSumExp(inf, [1]).ToArray()[0], Is.EqualTo(float.NegativeInfinity));
        var big = T([1000, 1000], 1, 2);
        Assert.That(Ops.LogSumExp(big, [1]).ToArray()[0], Is.EqualTo(1000 + MathF.Log(2)).Within(1e-3));
        Assert.That(Ops.Softmax(big).ToArray(), Is.EqualTo(new float[] { 0.5f, 0.5f }));
        Assert.That(Ops.Softplus(T([100, -100], 2)).ToArray(), Is.EqualTo(new float[] { 100, 0 }).Within(1e-6));
    }

    [Test]
    public void ScopeReturnsEveryTemporaryToThePool()
    {
        var x = Tensor.FromArray(new float[4096], 64, 64);
        x.RequiresGrad = true;
        void Step()
        {
            using var scope = TensorScope.Begin();
            var loss = Ops.Sum(Ops.Silu(Ops.MatMul(x, x)));
            loss.Backward();
            x.Grad!.Dispose();
            x.Grad = null;
        }
        Step();
        long before = CpuBackend.Instance.AllocatedElements;
        for (int i = 0; i < 5; i++) Step();
        Assert.That(CpuBackend.Instance.AllocatedElements, Is.EqualTo(before), "a steady-state step must be served from the pool");
    }

    [Test]
    public void DisposedTensorsThrowInsteadOfReadingGarbage()
    {
        Tensor kept, lost;
        using (var scope = TensorScope.Begin())
        {
            kept = scope.Keep(Tensor.Ones([3]));
            lost = Tensor.Ones([3]);
        }
        Assert.That(kept.ToArray(), Is.EqualTo(new float[] { 1, 1, 1 }));
        Assert.Throws<ObjectDisposedException>(() => lost.ToArray());
    }

    [Test]
    public void BackwardAccumulatesAndNoGradRecordsNothing()
    {
        var w = Tensor.FromArray([1f, 2f], 2);
        w.RequiresGrad = true;
        Ops.Sum(w * w).Backward();
        Ops.Sum(w * 3.0).Backward();
        Assert.That(w.Grad!.ToArray(), Is.EqualTo(new float[] { 5, 7 }), "2w + 3, accumulated over two backward calls");
        using (Autograd.NoGrad())
        {
            var y = w * w;
            Assert.That(y.TracksGrad, Is.False);
        }
        Assert.That(w.Detach().TracksGrad, Is.False);
        var e = Assert.Throws<TensorException>(() => (w * w).Backward())!;
        Assert.That(e.Message, Does.Contain("output gradient"));
    }

    [Test]
    public void GradOfGradGivesTheHessianVectorProduct()
    {
        // f(x) = sum x^3: grad = 3x^2, Hessian diag 6x, so d/dx (grad . v) = 6 x v.
        var x = Tensor.FromArray([1.0, -2.0, 0.5], 3);
        x.RequiresGrad = true;
        var v = Tensor.FromArray([1.0, 1.0, 2.0], 3);
        var g = Autograd.Grad([Ops.Sum(Ops.Pow(x, 3))], [x], createGraph: true)[0]!;
        var hv = Autograd.Grad([Ops.Sum(g * v)], [x])[0]!;
        Assert.That(hv.ToDoubleArray(), Is.EqualTo(new[] { 6.0, -12.0, 6.0 }).Within(1e-12));
    }

    [Test]
    public void HutchinsonDivergenceOfALinearFieldIsUnbiasedForItsTrace()
    {
        // f(x) = A x has divergence tr(A). With Rademacher probes e, E[e^T A e] = tr(A) exactly, and
        // the estimate averaged over 4000 probes has standard error sqrt(2 sum_{i!=j} A_ij^2 / 4000) ~ 0.07.
        double[] a = [1.0, 0.5, -0.3, 0.2, 2.0, 0.1, 0.4, -0.6, -1.5];
        var A = Tensor.FromArray(a, 3, 3);
        var gen = new Generator(7);
        int probes = 4000;
        var x = gen.Normal([probes, 3], DType.Float64);
        x.RequiresGrad = true;
        var fx = Ops.MatMul(x, A, transposeB: true);
        var e = gen.Rademacher([probes, 3], DType.Float64);
        var vjp = Autograd.Grad([fx], [x], [e], createGraph: true)[0]!;
        var estimates = Ops.Sum(vjp * e, [1]);
        double mean = Ops.Mean(estimates).Item();
        Assert.That(mean, Is.EqualTo(1.5).Within(0.3), "4 standard errors");
        var dEstimate = Autograd.Grad([Ops.Sum(estimates)], [x], allowUnused: true)[0];
        Assert.That(dEstimate is null || dEstimate.ToDoubleArray().All(d => d == 0), "the divergence of a linear field does not depend on x");
    }
}
