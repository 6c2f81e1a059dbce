using DiffusionCore.Engine;
using DiffusionCore.Engine.Optim;
using NUnit.Framework;

namespace DiffusionCore.Tests.Engine;

public sealed class EmaWarmUpTests
{
    [Test]
    public void WarmUp_UsesMinOfDecayAndRampPerUpdate()
    {
        // Hand computation in double: update n uses d_n = min(0.9, (1 + n) / (10 + n)): 0.1, 2/11, 0.25, ...,
        // reaching 0.9 at n = 80.
        // float32 storage keeps the shadow to ~1e-7 relative.
        var p = Tensor.FromArray(new float[] { 1f }, 1);
        var ema = new Ema([p], decay: 0.9, warmUp: true);
        double shadow = 1.0;
        for (int n = 0; n < 100; n++)
        {
            double value = Math.Sin(n) * 3;
            Tensor.FromArray(new float[] { (float)value }, 1).CopyTo(p);
            double d = Math.Min(0.9, (1.0 + n) / (10.0 + n));
            Assert.That(ema.CurrentDecay, Is.EqualTo(d).Within(1e-15));
            ema.Update();
            shadow = d * shadow + (1 - d) * (float)value;
            Assert.That(ema.Shadow[0].Item(), Is.EqualTo(shadow).Within(1e-5), $"update {n}");
        }
        Assert.That(ema.Updates, Is.EqualTo(100));
        Assert.That(ema.CurrentDecay, Is.EqualTo(0.9), "after the ramp passes the decay, the decay itself is used");
    }

    [Test]
    public void WithoutWarmUp_DecayIsConstant()
    {
        var ema = new Ema([Tensor.FromArray(new float[] { 1f }, 1)], decay: 0.99);
        ema.Update();
        Assert.That(ema.CurrentDecay, Is.EqualTo(0.99));
    }
}
