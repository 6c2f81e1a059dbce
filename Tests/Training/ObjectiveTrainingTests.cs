using System.Diagnostics;
using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Training;
using DiffusionCore.Training.Objectives;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>
/// Each objective family trains Mlp2d for a few hundred steps on <see cref="GaussianToy"/> data, whose noised
/// score is closed-form, and the learned score must end well below the untrained network's error.
/// </summary>
/// <remarks>
/// The error at a level (alpha, sigma) is E || sigma s_theta(x) - sigma grad log p(x) ||^2 over x = alpha x0 + sigma eps
/// (2000 fixed points): the squared error in eps units, so levels are comparable, and the quantity the
/// lambda = sigma^2 objectives minimise. An untrained network is off by about the size of the eps-scaled score
/// itself, |sigma grad log p|^2 ~ d sigma^2 / (alpha^2 s^2 + sigma^2), between 0.1 and 2 here. The true score is
/// linear in x, so a network that has learned it leaves only optimisation error; requiring every level below
/// a quarter of the untrained error rejects a network that has learned the score at some levels only, or
/// learned only a constant offset, while leaving room for what a few hundred Adam steps on batches of 64 reach
/// (the measured ratios are printed; over the seeds tried they were 0.01 to 0.17, the largest for SSM-VR at sigma = 2).
/// The levels checked have sigma between about 0.16 and 2.7. Below that the eps-scaled score is small
/// (|sigma grad log p| ~ 0.2 at sigma = 0.08) against the unit-variance noise of the denoising targets, and
/// 400 steps do not resolve it: measured, the error ratio was 0.48 at sigma = 0.08 (DDPM VLB, t = 20) and
/// 0.25 at sigma = 0.05 (NCSN), so those levels would need far longer runs than a unit test allows.
/// </remarks>
[TestFixture]
public class ObjectiveTrainingTests
{
    private const int Batch = 64, Steps = 400;
    private const double MaxErrorRatio = 0.25;

    /// <summary>The eps-unit score error at (alpha, sigma); <paramref name="scaledScore"/> returns sigma s_theta(x).</summary>
    private static double ScoreError(Func<Tensor, Tensor> scaledScore, double alpha, double sigma)
    {
        var g = new Generator(99);
        var x0 = GaussianToy.Sample(g, 2000);
        var x = Ops.Add(Ops.Scale(x0, alpha), Ops.Scale(g.Normal([2000, 2]), sigma));
        double[] predicted;
        using (Autograd.NoGrad()) predicted = scaledScore(x).ToDoubleArray();
        var truth = GaussianToy.Score(x.ToDoubleArray(), alpha, sigma);
        double sum = 0;
        for (int i = 0; i < truth.Length; i++) sum += Math.Pow(predicted[i] - sigma * truth[i], 2);
        return sum / 2000;
    }

    private static Tensor Conditions(double value, Tensor x) => Tensor.Full([x.Shape[0]], value, x.DType, x.Device);

    /// <summary>Trains with <paramref name="loss"/> and checks the error at every level.</summary>
    private static void TrainAndCheck(string name, ScoreNetwork model, Func<Generator, Tensor> loss,
        (double Alpha, double Sigma, Func<Tensor, Tensor> ScaledScore)[] levels, int steps = Steps)
    {
        var before = levels.Select(l => ScoreError(l.ScaledScore, l.Alpha, l.Sigma)).ToArray();
        var options = new TrainerOptions { Steps = steps, LearningRate = 3e-3, WarmupSteps = 20, EmaDecay = null };
        var trainer = new Trainer(model, loss, options, new Generator(42));
        var clock = Stopwatch.StartNew();
        trainer.Run();
        var after = levels.Select(l => ScoreError(l.ScaledScore, l.Alpha, l.Sigma)).ToArray();
        TestContext.Out.WriteLine($"{name}: {steps} steps of {Batch} in {clock.Elapsed.TotalSeconds:F1} s; loss first 20 {trainer.Losses.Take(20).Average():F4}, last 50 {trainer.Losses.TakeLast(50).Average():F4}");
        for (int i = 0; i < levels.Length; i++)
            TestContext.Out.WriteLine($"  alpha {levels[i].Alpha:F4} sigma {levels[i].Sigma:F4}: error {before[i]:F4} -> {after[i]:F5} (ratio {after[i] / before[i]:F3})");
        for (int i = 0; i < levels.Length; i++)
            Assert.That(after[i], Is.LessThan(MaxErrorRatio * before[i]), $"{name} at sigma {levels[i].Sigma}");
    }

    // The VLB weights (0.5 at the first step, 0.02 at t = 50, 0.006 at t = 400) spend most of each update on
    // the first few steps, whose targets are nearly pure noise, so the other levels learn more slowly than under
    // the uniform weighting of the continuous objectives: at 400 steps the ratio at sigma = 0.17 was 0.19 to 0.24
    // over four seeds, too close to the bound; VlbSteps is the count that gives it room.
    private const int VlbSteps = 800;

    [Test]
    public void DdpmVlbLearnsTheGaussianScore()
    {
        var schedule = DdpmSchedule.Linear(1000);
        var model = new Mlp2d(new Generator(1));
        // eps_theta = -sigma s_theta.
        Func<Tensor, Tensor> At(int t) => x => Ops.Neg(model.Forward(x, Conditions(t, x)));
        var levels = new[] { 50, 150, 400 }.Select(t => (schedule.MarginalMean(t), schedule.MarginalStd(t), At(t))).ToArray();
        TrainAndCheck("DDPM VLB", model, g => DdpmVlbObjective.Loss(model, schedule, GaussianToy.Sample(g, Batch), g), levels, VlbSteps);
    }

    [Test]
    public void NcsnLearnsTheGaussianScore()
    {
        var sigmas = NcsnSigmas.Geometric(2.0, 0.05, 10);
        var model = new Mlp2d(new Generator(2), condition: ConditionKind.Sigma);
        Func<Tensor, Tensor> At(double sigma) => x => Ops.Scale(model.Forward(x, Conditions(sigma, x)), sigma);
        var levels = new[] { 0, 3, 6 }.Select(i => (1.0, sigmas.Sigmas[i], At(sigmas.Sigmas[i]))).ToArray();
        TrainAndCheck("NCSN", model, g => NcsnObjective.DenoisingScoreMatchingLoss(model, sigmas, GaussianToy.Sample(g, Batch), g), levels);
    }

    [Test]
    public void ContinuousVpLearnsTheGaussianScore()
    {
        var sde = new VpSde();
        var model = new Mlp2d(new Generator(3));
        Func<Tensor, Tensor> At(double t) => x => Ops.Neg(model.Forward(x, Conditions(sde.NetworkCondition(t), x)));
        var levels = new[] { 0.05, 0.3, 0.7 }.Select(t => (sde.MarginalMean(t), sde.MarginalStd(t), At(t))).ToArray();
        TrainAndCheck("continuous VP (eps)", model, g => SdeObjective.DenoisingScoreMatchingLoss(model, sde, Parameterisation.Epsilon, GaussianToy.Sample(g, Batch), g), levels);
    }

    [Test]
    public void ContinuousVeLearnsTheGaussianScore()
    {
        // The network predicts eps (s = -eps / sigma_t): VE's sigma_t spans 0.01 .. 50, so a raw score output
        // would have to span 1/sigma^2 over many decades (NCSN++ divides its output by sigma for the same reason).
        // sigma_max = 5 is above the largest distance between data points (about 3), as Song and Ermon 2020
        // (technique 1) ask of the largest level, and keeps more of the uniform t draws at the levels checked
        // than the default 50 would.
        var sde = new VeSde(0.01, 5.0);
        var model = new Mlp2d(new Generator(4), condition: ConditionKind.Sigma);
        Func<Tensor, Tensor> At(double t) => x => Ops.Neg(model.Forward(x, Conditions(sde.NetworkCondition(t), x)));
        var levels = new[] { 0.45, 0.65, 0.9 }.Select(t => (1.0, sde.MarginalStd(t), At(t))).ToArray();
        TrainAndCheck("continuous VE (eps)", model, g => SdeObjective.DenoisingScoreMatchingLoss(model, sde, Parameterisation.Epsilon, GaussianToy.Sample(g, Batch), g), levels);
    }

    [Test]
    public void SlicedScoreMatchingLearnsTheGaussianScore()
    {
        // Noise-conditional SSM: one NCSN level per step, x = x0 + sigma eps, the SSM-VR loss on x for the
        // network at that sigma, weighted by lambda = sigma^2 as in NCSN.
        var sigmas = NcsnSigmas.Geometric(2.0, 0.05, 10);
        var model = new Mlp2d(new Generator(5), condition: ConditionKind.Sigma);
        Func<Tensor, Tensor> At(double sigma) => x => Ops.Scale(model.Forward(x, Conditions(sigma, x)), sigma);
        var levels = new[] { 0, 3, 6 }.Select(i => (1.0, sigmas.Sigmas[i], At(sigmas.Sigmas[i]))).ToArray();
        TrainAndCheck("SSM-VR", model, g =>
        {
            double sigma = sigmas.Sigmas[g.Integers(1, sigmas.Count)[0]];
            var x = Ops.Add(GaussianToy.Sample(g, Batch), Ops.Scale(g.Normal([Batch, 2]), sigma));
            var loss = SlicedScoreMatching.Loss(y => model.Forward(y, Conditions(sigma, y)), x, g, varianceReduced: true);
            return Ops.Scale(loss, sigma * sigma);
        }, levels);
    }
}
