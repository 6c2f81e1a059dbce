using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using NUnit.Framework;

namespace DiffusionCore.Tests.Models;

/// <summary>Mlp2d conditioned on a time (the default) or on a noise level sigma.</summary>
[TestFixture]
public class Mlp2dTests
{
    [TestCase(ConditionKind.Time)]
    [TestCase(ConditionKind.Sigma)]
    public void ParameterCountIsTheBenchmarkOne(ConditionKind kind)
    {
        // shared/BENCHMARKS.md: (2 + 32) * 128 + 128 + 2 * (128 * 128 + 128) + 128 * 2 + 2 = 37,762.
        var model = new Mlp2d(new Generator(1), condition: kind);
        Assert.That(model.ParameterCount, Is.EqualTo(37_762));
        Assert.That(model.Condition, Is.EqualTo(kind));
    }

    [Test]
    public void DefaultIsTimeConditioning()
    {
        var x = new Generator(2).Normal([4, 2]);
        var t = Tensor.FromArray([0f, 10f, 500f, 999f], 4);
        var byDefault = new Mlp2d(new Generator(3)).Forward(x, t).ToArray();
        var explicitTime = new Mlp2d(new Generator(3), condition: ConditionKind.Time).Forward(x, t).ToArray();
        Assert.That(explicitTime, Is.EqualTo(byDefault));
    }

    [Test]
    public void SigmaConditioningEmbedsScaledLogSigma()
    {
        // A sigma-conditioned network equals the time-conditioned one with the same weights fed 100 ln sigma
        // (computed here in double). The only difference is float32 rounding of the embedding's argument, up to
        // one ulp at |100 ln sigma| <= 460 (3e-5) on either side; the unit-frequency features move by as much,
        // and the fan-in-scaled layers (outputs ~0.04 here) do not amplify it, so 1e-4 absolute bounds the
        // difference, while a wrongly scaled or unscaled ln sigma changes outputs by their own size (~1e-2).
        double[] sigmas = [0.01, 0.3, 1.0, 50.0];
        var x = new Generator(4).Normal([4, 2]);
        var bySigma = new Mlp2d(new Generator(5), condition: ConditionKind.Sigma).Forward(x, Tensor.FromArray(sigmas.Select(s => (float)s).ToArray(), 4)).ToArray();
        var scaled = sigmas.Select(s => (float)(Mlp2d.SigmaEmbeddingScale * Math.Log(s))).ToArray();
        var byTime = new Mlp2d(new Generator(5), condition: ConditionKind.Time).Forward(x, Tensor.FromArray(scaled, 4)).ToArray();
        TestContext.Out.WriteLine($"max |sigma-conditioned - time-conditioned| = {bySigma.Zip(byTime, (a, b) => Math.Abs(a - b)).Max():G3}, max |output| = {byTime.Max(Math.Abs):G3}");
        Assert.That(bySigma, Is.EqualTo(byTime).Within(1e-4));
        Assert.That(Mlp2d.SigmaEmbeddingScale, Is.EqualTo(100.0));

        // Levels of NCSN's range give distinct outputs for the same x.
        var same = new Generator(6).Normal([1, 2]);
        var net = new Mlp2d(new Generator(7), condition: ConditionKind.Sigma);
        var low = net.Forward(same, Tensor.FromArray([0.01f], 1)).ToArray();
        var high = net.Forward(same, Tensor.FromArray([50f], 1)).ToArray();
        TestContext.Out.WriteLine($"sigma 0.01: ({low[0]:F4}, {low[1]:F4}), sigma 50: ({high[0]:F4}, {high[1]:F4})");
        Assert.That(Math.Abs(low[0] - high[0]) + Math.Abs(low[1] - high[1]), Is.GreaterThan(1e-3));
    }

    [Test]
    public void SigmaConditioningRefusesNonPositiveSigma()
    {
        var net = new Mlp2d(new Generator(8), condition: ConditionKind.Sigma);
        var x = new Generator(9).Normal([2, 2]);
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Forward(x, Tensor.FromArray([0.5f, 0f], 2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Forward(x, Tensor.FromArray([-1f, 0.5f], 2)));
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Forward(x, Tensor.FromArray([float.NaN, 0.5f], 2)));
    }
}
