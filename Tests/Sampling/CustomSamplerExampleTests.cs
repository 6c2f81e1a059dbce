using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

// The README's "write your own sampler" example, compiled and checked here so that it cannot rot.
// README-EXAMPLE-BEGIN
/// <summary>Reverse-SDE Euler-Maruyama (Song et al. 2021, eq. 6) in a dozen lines: works with any Sde and ScoreModel.</summary>
public static class MyEulerMaruyama
{
    public static Tensor Sample(ScoreModel model, Sde sde, int[] shape, Generator g, int steps = 500, double eps = 1e-3)
    {
        using var noGrad = Autograd.NoGrad();
        var x = sde.SamplePrior(shape, g);
        double dt = (sde.T - eps) / steps;
        for (int i = 0; i < steps; i++)
        {
            using var scope = TensorScope.Begin();          // frees this step's temporaries
            double t = sde.T - i * dt, gt = sde.Diffusion(t);
            var drift = sde.Drift(x, t) - model.Score(x, sde.Level(t)) * (gt * gt);   // f - g^2 s
            (x - drift * dt + g.Normal(shape) * (gt * Math.Sqrt(dt))).CopyTo(x);     // step back by dt
        }
        return x;
    }
}
// README-EXAMPLE-END

public sealed class CustomSamplerExampleTests
{
    [Test]
    public void ReadmeSampler_DrawsTheMixture()
    {
        // Exact score of a two-component mixture under VP: the example's samples must reproduce the mixture's
        // mean and component weights. 2000 samples: the mean's standard error is sqrt(var/n) ~ 0.05 per axis
        // (var ~ 4.4 along x), so 0.2 is 4 standard errors plus the sampler's small discretisation bias; the
        // weight of a component has standard error sqrt(0.3 * 0.7 / 2000) = 0.01, so 0.05 allows 5.
        var mixture = GaussianMixture.Isotropic([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.5]);
        var x = MyEulerMaruyama.Sample(mixture.ToScoreModel(), new VpSde(), [2000, 2], new Generator(5));
        var v = x.ToArray();
        double mx = 0, my = 0;
        int left = 0;
        for (int i = 0; i < 2000; i++)
        {
            mx += v[2 * i];
            my += v[2 * i + 1];
            if (v[2 * i] < 0) left++;
        }
        var mean = mixture.Mean();
        Assert.That(mx / 2000, Is.EqualTo(mean[0]).Within(0.2));
        Assert.That(my / 2000, Is.EqualTo(mean[1]).Within(0.2));
        Assert.That(left / 2000.0, Is.EqualTo(0.3).Within(0.05));

        // The same check with the score halved (a wrong model) must fail: its samples are too spread out.
        var wrong = ScoreModel.FromFunction((y, level, _) => mixture.Score(y, level) * 0.5, Parameterisation.Score);
        var w = MyEulerMaruyama.Sample(wrong, new VpSde(), [2000, 2], new Generator(5)).ToArray();
        double spread = 0, trueSpread = 0;
        for (int i = 0; i < 2000; i++)
        {
            spread += (w[2 * i + 1] - mean[1]) * (w[2 * i + 1] - mean[1]);
            trueSpread += (v[2 * i + 1] - mean[1]) * (v[2 * i + 1] - mean[1]);
        }
        Assert.That(spread, Is.GreaterThan(1.5 * trueSpread), "a halved score must visibly widen the samples");
    }
}
