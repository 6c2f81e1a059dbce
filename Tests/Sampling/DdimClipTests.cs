using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Samplers;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

public sealed class DdimClipTests
{
    [Test]
    public void ClipDenoised_KeepsTheDenoisedEstimateInRange()
    {
        // A model that predicts eps = -3 x: its x0 estimate (x + 3 sqrt(1 - a) x) / sqrt(a) grows far beyond [-1, 1].
        // DDIM's last step returns x0_hat itself (alpha_bar_prev = 1), so with clipping every output lies in
        // [-1, 1] exactly, and without it the same run leaves the range: the option must matter.
        var model = ScoreModel.FromFunction((x, _, _) => x * -3.0, Parameterisation.Epsilon);
        var schedule = DdpmSchedule.Linear(100);
        var clipped = Ddim.Sample(model, schedule, [256, 2], new Generator(3), 10, clipDenoised: 1.0).ToArray();
        var free = Ddim.Sample(model, schedule, [256, 2], new Generator(3), 10).ToArray();
        Assert.That(clipped.All(v => v >= -1f && v <= 1f), Is.True);
        Assert.That(free.Max(Math.Abs), Is.GreaterThan(1.5f));
    }
}
