using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using NUnit.Framework;

namespace DiffusionCore.Tests.Engine;

[TestFixture]
public class OptimizerTests
{
    private static Tensor Param(params double[] v)
    {
        var t = Tensor.FromArray(v, v.Length);
        t.RequiresGrad = true;
        return t;
    }

    [Test]
    public void AdamMatchesAHandComputedStep()
    {
        var p = Param(1.0, -2.0);
        var opt = new Adam([p], learningRate: 0.1);
        for (int step = 1; step <= 2; step++)
        {
            opt.ZeroGrad();
            p.Grad = Tensor.FromArray([0.5, -1.0], 2);
            opt.Step();
        }
        // Constant gradient g: m_t/(1-b1^t) = g and v_t/(1-b2^t) = g^2, so each step moves by lr * g/(|g| + eps).
        double eps = 1e-8;
        double[] expected = [1.0 - 2 * 0.1 * 0.5 / (0.5 + eps), -2.0 + 2 * 0.1 * 1.0 / (1.0 + eps)];
        Assert.That(p.ToDoubleArray(), Is.EqualTo(expected).Within(1e-12));
    }

    [Test]
    public void AdamWDecaysWeightsIndependentlyOfTheGradient()
    {
        var p = Param(2.0);
        var opt = Adam.AdamW([p], learningRate: 0.1, weightDecay: 0.5);
        p.Grad = Tensor.FromArray([0.0], 1);
        opt.Step();
        // Zero gradient: the moments stay 0, so only the decay p <- (1 - lr wd) p acts.
        Assert.That(p.ToDoubleArray()[0], Is.EqualTo(2.0 * (1 - 0.05)).Within(1e-12));
    }

    [Test]
    public void SgdWithMomentumMatchesTheRecurrence()
    {
        var p = Param(1.0);
        var opt = new Sgd([p], learningRate: 0.1, momentum: 0.9);
        double x = 1.0, v = 0.0;
        for (int i = 0; i < 3; i++)
        {
            opt.ZeroGrad();
            Ops.Sum(Ops.Square(p)).Backward();
            opt.Step();
            v = 0.9 * v + 2 * x;
            x -= 0.1 * v;
        }
        Assert.That(p.ToDoubleArray()[0], Is.EqualTo(x).Within(1e-12));
    }

    [Test]
    public void AdamMinimisesAQuadratic()
    {
        var p = Param(3.0, -4.0);
        var opt = new Adam([p], learningRate: 0.05);
        for (int i = 0; i < 500; i++)
        {
            using var scope = TensorScope.Begin();
            opt.ZeroGrad();
            Ops.Sum(Ops.Square(p - 1.0)).Backward();
            opt.Step();
        }
        Assert.That(p.ToDoubleArray(), Is.EqualTo(new[] { 1.0, 1.0 }).Within(1e-2));
    }

    [Test]
    public void EmaTracksTheExponentialAverage()
    {
        var p = Param(0.0);
        var ema = new Ema([p], decay: 0.5);
        p.Backend().Fill(p.Buffer, 4.0);
        ema.Update();
        ema.Update();
        // 0 -> 0.5*0 + 0.5*4 = 2 -> 0.5*2 + 0.5*4 = 3
        Assert.That(ema.Shadow[0].ToDoubleArray()[0], Is.EqualTo(3.0).Within(1e-12));
    }

    [Test]
    public void ClippingScalesToTheGlobalNorm()
    {
        var a = Param(0.0, 0.0);
        var b = Param(0.0);
        a.Grad = Tensor.FromArray([3.0, 0.0], 2);
        b.Grad = Tensor.FromArray([4.0], 1);
        double norm = GradientClipping.ClipByGlobalNorm([a, b], 1.0);
        Assert.That(norm, Is.EqualTo(5.0).Within(1e-12));
        Assert.That(a.Grad.ToDoubleArray()[0], Is.EqualTo(0.6).Within(1e-6));
        Assert.That(b.Grad.ToDoubleArray()[0], Is.EqualTo(0.8).Within(1e-6));
        a.Grad = Tensor.FromArray([double.NaN, 0.0], 2);
        Assert.That(double.IsNaN(GradientClipping.ClipByGlobalNorm([a, b], 1.0)), "NaN norms are reported, not hidden");
    }
}

internal static class TensorTestExtensions
{
    public static DiffusionCore.Kernels.IBackend Backend(this Tensor t) => t.Device.Backend;
}
