using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Guidance;
using DiffusionCore.Sampling.Likelihood;
using NUnit.Framework;

namespace DiffusionCore.Tests.Sampling;

/// <summary>
/// Classifier and classifier-free guidance against closed forms. The data are a 2-D Gaussian mixture whose
/// components are grouped into classes, so at every noise level the noised class-conditionals p_t(x | y) are
/// mixtures too and p_t(y | x) is the sum of the class's posterior responsibilities: the exact Bayes classifier,
/// the exact conditional scores and the exact unconditional score are all known.
/// </summary>
[TestFixture]
public class GuidanceTests
{
    // Class 0 = components 0 and 1, class 1 = component 2; the classes overlap a little, so p(y | x) is smooth.
    private static readonly int[] ClassOf = [0, 0, 1];
    private const int Classes = 2;
    private const int NullLabel = Classes;

    private static readonly double[] Weights = [0.3, 0.2, 0.5];
    private static readonly double[][] Means = [[-2.0, 1.0], [-1.0, -1.5], [1.5, 0.5]];

    private static readonly double[][,] Covariances =
    [
        new double[,] { { 0.3, 0.1 }, { 0.1, 0.2 } },
        new double[,] { { 0.2, -0.05 }, { -0.05, 0.4 } },
        new double[,] { { 0.5, 0.2 }, { 0.2, 0.3 } },
    ];

    private static readonly GaussianMixture Mixture = new(Weights, Means, Covariances);

    // p(x | y): the class's components with their weights renormalised (the constructor normalises).
    private static readonly GaussianMixture[] ClassMixtures = Enumerable.Range(0, Classes).Select(c =>
    {
        var members = Enumerable.Range(0, Weights.Length).Where(k => ClassOf[k] == c).ToArray();
        return new GaussianMixture(members.Select(k => Weights[k]).ToArray(), members.Select(k => Means[k]).ToArray(), members.Select(k => Covariances[k]).ToArray());
    }).ToArray();

    // p(y) = sum of the class's weights.
    private static readonly double[] ClassPriors = Enumerable.Range(0, Classes).Select(c => Enumerable.Range(0, Weights.Length).Where(k => ClassOf[k] == c).Sum(k => Weights[k])).ToArray();

    // The exact Bayes classifier of the noised data: logits_y = log p(y) + log p_t(x | y), so softmax(logits) = p_t(y | x).
    // Differentiable (the mixture's log density is built from Ops), so guidance can take its gradient by autograd.
    private static Tensor BayesLogits(Tensor x, NoiseLevel level) =>
        Ops.Stack(Enumerable.Range(0, Classes).Select(c => Ops.AddScalar(ClassMixtures[c].LogDensity(x, level), Math.Log(ClassPriors[c]))).ToArray(), 1);

    // grad log p_t(x | y_b) row by row: each class's exact score, picked per row by the label.
    private static double[] ConditionalScores(Tensor x, NoiseLevel level, int[] labels)
    {
        var scores = ClassMixtures.Select(m => m.Score(x, level).ToDoubleArray()).ToArray();
        var result = new double[x.Count];
        for (int b = 0; b < labels.Length; b++)
            for (int j = 0; j < 2; j++) result[2 * b + j] = scores[labels[b]][2 * b + j];
        return result;
    }

    // A conditional model with a "null" label, as classifier-free guidance trains one: label y < Classes gives the
    // class-conditional score, NullLabel the unconditional one. Counts its calls and records the batch it got.
    private sealed class CountingConditionalModel
    {
        public int Calls { get; private set; }

        public int LastBatch { get; private set; }

        public int[]? LastLabels { get; private set; }

        public ScoreModel Model => ScoreModel.FromFunction((x, level, labels) =>
        {
            Calls++;
            LastBatch = x.Shape[0];
            LastLabels = labels;
            var unconditional = Mixture.Score(x, level).ToDoubleArray();
            var conditional = ClassMixtures.Select(m => m.Score(x, level).ToDoubleArray()).ToArray();
            var result = new double[x.Count];
            for (int b = 0; b < x.Shape[0]; b++)
                for (int j = 0; j < 2; j++) result[2 * b + j] = labels![b] == NullLabel ? unconditional[2 * b + j] : conditional[labels[b]][2 * b + j];
            return Tensor.FromSpan<double>(result, x.Shape, x.DType, x.Device);
        }, Parameterisation.Score);
    }

    // Test points at a level: draws from the noised mixture plus a few far-out points (where p(y | x) saturates).
    private static (Tensor X, int[] Labels) Points(NoiseLevel level, ulong seed)
    {
        var draws = Mixture.Noised(level).Sample(12, new Generator(seed), DType.Float64).ToDoubleArray();
        double[] far = [6.0, -5.0, -7.0, 4.0, 0.3, 8.0, -4.0, -6.0];
        var data = draws.Concat(far).ToArray();
        int n = data.Length / 2;
        return (Tensor.FromArray(data, n, 2), Enumerable.Range(0, n).Select(i => i % Classes).ToArray());
    }

    private static readonly (string Sde, double T)[] LevelCases = [("vp", 0.01), ("vp", 0.3), ("vp", 0.8), ("subvp", 0.5), ("ve", 0.05), ("ve", 0.6)];

    private static IEnumerable<TestCaseData> Levels() => LevelCases.Select(c => new TestCaseData(c.Sde, c.T));

    // Float64 closed forms on both sides: the guided score goes through eps = -sigma s and back, and autograd through
    // the log-sum-exp, which costs a few ulps of scores up to ~50 in magnitude: 1e-9 absolute is ample, and any
    // modelling error (a wrong sigma factor, a missing term) is of order 1.
    private const double ScoreTolerance = 1e-9;

    [TestCaseSource(nameof(Levels))]
    public void BayesClassifier_IsTheSumOfTheClassResponsibilities(string sdeName, double t)
    {
        // The truth the other tests rely on: softmax of the Bayes logits equals the mixture's own posterior
        // responsibilities summed over each class's components (two independent routes to p_t(y | x)).
        var level = Sde.Create(sdeName).Level(t);
        var (x, _) = Points(level, 3);
        var probabilities = Ops.Softmax(BayesLogits(x, level), 1).ToDoubleArray();
        var responsibilities = Mixture.Responsibilities(x, level).ToDoubleArray();
        for (int b = 0; b < x.Shape[0]; b++)
            for (int c = 0; c < Classes; c++)
            {
                double expected = Enumerable.Range(0, Weights.Length).Where(k => ClassOf[k] == c).Sum(k => responsibilities[b * Weights.Length + k]);
                Assert.That(probabilities[b * Classes + c], Is.EqualTo(expected).Within(1e-12), $"point {b}, class {c}");
            }
    }

    [TestCaseSource(nameof(Levels))]
    public void ClassifierGuidance_WithTheBayesClassifier_GivesTheConditionalScore(string sdeName, double t)
    {
        // grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x) (Bayes' rule; Song et al. 2021, section 5): with
        // gamma = 1 and the exact classifier, guidance of the exact unconditional score is the exact conditional
        // score; with gamma = 0 it is the unconditional score.
        var level = Sde.Create(sdeName).Level(t);
        var (x, labels) = Points(level, 5);
        var unconditional = Mixture.ToScoreModel();
        var guided = Guidance.Classifier(unconditional, BayesLogits, 1.0).Score(x, level, labels).ToDoubleArray();
        var conditional = ConditionalScores(x, level, labels);
        Assert.That(guided, Is.EqualTo(conditional).Within(ScoreTolerance));
        // The check has teeth: conditional and unconditional scores differ by far more than the tolerance (by ~0.1
        // even at VP's t = 0.8, where alpha = 0.04 nearly erases the classes, and by O(1) to O(10) elsewhere).
        var plain = Mixture.Score(x, level).ToDoubleArray();
        Assert.That(plain.Zip(conditional, (a, b) => Math.Abs(a - b)).Max(), Is.GreaterThan(1e-2));
        var off = Guidance.Classifier(unconditional, BayesLogits, 0.0).Score(x, level, labels).ToDoubleArray();
        Assert.That(off, Is.EqualTo(plain).Within(ScoreTolerance));
    }

    [TestCaseSource(nameof(Levels))]
    public void ClassifierFreeGuidance_MixesConditionalAndUnconditionalInOneBatchedCall(string sdeName, double t)
    {
        // eps~ = gamma eps(x, y) + (1 - gamma) eps(x, null), i.e. s~ = gamma s(x | y) + (1 - gamma) s(x) (Ho and
        // Salimans 2022, eq. 6): gamma = 1 is the conditional model, 0 the unconditional one, 2 the formula; and since
        // s(x | y) - s(x) = grad log p(y | x), it equals classifier guidance with the Bayes classifier at the same
        // gamma. Both evaluations must happen in one call of the wrapped model on the doubled batch [x; x] with
        // labels [y; null].
        var level = Sde.Create(sdeName).Level(t);
        var (x, labels) = Points(level, 7);
        int batch = x.Shape[0];
        var counting = new CountingConditionalModel();
        var model = counting.Model;
        var conditional = ConditionalScores(x, level, labels);
        var plain = Mixture.Score(x, level).ToDoubleArray();
        var expectedLabels = labels.Concat(Enumerable.Repeat(NullLabel, batch)).ToArray();
        foreach (double gamma in new[] { 1.0, 0.0, 2.0 })
        {
            int before = counting.Calls;
            var guided = Guidance.ClassifierFree(model, gamma, NullLabel).Score(x, level, labels).ToDoubleArray();
            Assert.That(counting.Calls - before, Is.EqualTo(1), $"gamma = {gamma}: one batched call");
            Assert.That(counting.LastBatch, Is.EqualTo(2 * batch));
            Assert.That(counting.LastLabels, Is.EqualTo(expectedLabels));
            var expected = conditional.Zip(plain, (c, u) => gamma * c + (1 - gamma) * u).ToArray();
            Assert.That(guided, Is.EqualTo(expected).Within(ScoreTolerance), $"gamma = {gamma}");
            var classifier = Guidance.Classifier(Mixture.ToScoreModel(), BayesLogits, gamma).Score(x, level, labels).ToDoubleArray();
            Assert.That(guided, Is.EqualTo(classifier).Within(ScoreTolerance), $"gamma = {gamma}: classifier-free = classifier guidance with the Bayes classifier");
        }
    }

    [Test]
    public void Guidance_RejectsMissingLabels()
    {
        var level = new VpSde().Level(0.5);
        var x = Tensor.Zeros([3, 2], DType.Float64);
        Assert.Throws<ArgumentException>(() => Guidance.Classifier(Mixture.ToScoreModel(), BayesLogits, 1).Score(x, level));
        Assert.Throws<ArgumentException>(() => Guidance.ClassifierFree(new CountingConditionalModel().Model, 1, NullLabel).Score(x, level, [0, 1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Guidance.Classifier(Mixture.ToScoreModel(), BayesLogits, -1));
    }

    // Samples per class in the end-to-end check.
    private const int PerClass = 500;

    // The probability-flow ODE from prior draws to t = eta = 1e-5 (VP), RK45 at rtol = atol = 1e-3: its error (about
    // 1e-3 (1 + |x|) per step over ~10 steps, <~3e-2 at worst) is well below the sampling tolerances (~0.1 or more on means)
    // below, and moves only the few samples within that distance of a component boundary.
    private static Tensor GuidedSamples(ScoreModel guided, int[] labels)
    {
        var sde = new VpSde();
        var z = sde.SamplePrior([labels.Length, 2], new Generator(53), DType.Float64);
        return ProbabilityFlowLikelihood.Decode(guided, sde, z, new LikelihoodOptions { RelativeTolerance = 1e-3, AbsoluteTolerance = 1e-3 }, labels);
    }

    private const int ReferenceDraws = 20_000;

    // Component frequencies of draws from p(x | y), each draw assigned to its most responsible component of the full
    // mixture (the Bayes assignment; "nearest component" in the mixture's own metric), from fresh draws.
    private static readonly Lazy<double[][]> ReferenceAssignment = new(() => Enumerable.Range(0, Classes)
        .Select(c => Fractions(Assign(ClassMixtures[c].Sample(ReferenceDraws, new Generator(59 + (ulong)c), DType.Float64)))).ToArray());

    private static int[] Assign(Tensor x)
    {
        int k = Weights.Length;
        var r = Mixture.Responsibilities(x, new NoiseLevel(1, 0, 0)).ToDoubleArray();
        return Enumerable.Range(0, x.Shape[0]).Select(b => Enumerable.Range(0, k).MaxBy(j => r[b * k + j])).ToArray();
    }

    private static double[] Fractions(int[] assignment) =>
        Enumerable.Range(0, Weights.Length).Select(k => assignment.Count(a => a == k) / (double)assignment.Length).ToArray();

    // Checks the rows [offset, offset + PerClass) of x against p(x | c): the mean of each coordinate within 4 standard
    // errors sqrt(Var_c / N) of the class mean, and the fraction assigned to each component within 4 binomial
    // standard errors sqrt(p (1 - p) (1 / N + 1 / N_ref)) (plus 1e-3 for components that p(x | c) almost never
    // reaches, where the binomial error vanishes) of the reference. With N = 500 the mean tolerances are 0.1-0.25 and
    // the fraction tolerances up to 0.09; with 10 checks at 4 sigma a correct sampler fails with probability ~6e-4
    // (the seeds are fixed), while the sign-flipped guidance misses by 4-6 in the means and by 0.5-0.8 in fractions.
    private static List<string> ClassFailures(double[] x, int offset, int c)
    {
        var failures = new List<string>();
        var mean = ClassMixtures[c].Mean();
        var covariance = ClassMixtures[c].Covariance();
        for (int j = 0; j < 2; j++)
        {
            double m = Enumerable.Range(offset, PerClass).Average(i => x[2 * i + j]);
            double tolerance = 4 * Math.Sqrt(covariance[j, j] / PerClass);
            if (Math.Abs(m - mean[j]) > tolerance) failures.Add($"class {c}, coordinate {j}: mean {m:F3}, expected {mean[j]:F3} +- {tolerance:F3}");
        }
        var rows = Tensor.FromArray(x[(2 * offset)..(2 * (offset + PerClass))], PerClass, 2);
        var got = Fractions(Assign(rows));
        var reference = ReferenceAssignment.Value[c];
        for (int k = 0; k < Weights.Length; k++)
        {
            double p = reference[k];
            double tolerance = 4 * Math.Sqrt(p * (1 - p) * (1.0 / PerClass + 1.0 / ReferenceDraws)) + 1e-3;
            if (Math.Abs(got[k] - p) > tolerance) failures.Add($"class {c}, component {k}: fraction {got[k]:F3}, expected {p:F3} +- {tolerance:F3}");
        }
        return failures;
    }

    [Test]
    public void ClassifierGuidedProbabilityFlowSamples_FollowTheClassConditional()
    {
        // End to end: the unconditional exact score guided by the Bayes classifier with gamma = 1, sampled by the
        // probability-flow ODE from N(0, I) (VP's prior; the marginal at T differs by alpha_T = 7e-3), labels
        // [0] * N ++ [1] * N: each half must follow its class-conditional mixture. The same samples from guidance
        // with the gradient's sign flipped (pushed away from the class) must fail the same check.
        var labels = Enumerable.Range(0, 2 * PerClass).Select(i => i / PerClass).ToArray();
        var guided = Guidance.Classifier(Mixture.ToScoreModel(), BayesLogits, 1.0);
        var x = GuidedSamples(guided, labels).ToDoubleArray();
        var failures = ClassFailures(x, 0, 0).Concat(ClassFailures(x, PerClass, 1)).ToList();
        Assert.That(failures, Is.Empty);

        var unconditional = Mixture.ToScoreModel();
        var flipped = ScoreModel.FromFunction((xt, level, y) =>
            Ops.Sub(unconditional.Score(xt, level), Guidance.ClassLogProbabilityGradient(BayesLogits, xt, level, y!)), Parameterisation.Score);
        var wrong = GuidedSamples(flipped, labels).ToDoubleArray();
        Assert.That(ClassFailures(wrong, 0, 0), Is.Not.Empty, "sign-flipped guidance must fail for class 0");
        Assert.That(ClassFailures(wrong, PerClass, 1), Is.Not.Empty, "sign-flipped guidance must fail for class 1");
    }

    [Test]
    public void ClassifierGuidedLikelihood_IsTheClassConditionalLogDensity()
    {
        // With gamma = 1 and the Bayes classifier the guided model is the exact conditional score, so the probability-flow
        // log-likelihood with the exact divergence must be the closed-form log p_eta(x | y), up to the replacement of
        // p_T(z | y) by the prior: unlike the centred data of LikelihoodTests, a class has a mean (|mu_y| ~ 1.6), so this
        // mismatch log N(z; 0, I) - log p_T(z | y) ~ alpha_T z . mu_y is ~1e-2 to 1e-1 nats. It is closed-form, so it is
        // taken out, leaving the solver's error: at rtol = atol = 1e-6 about 1e-6 (1 + |y|) per step on integrals of up
        // to ~40 nats, so <= 1e-3 over 10-30 steps even if all errors added up (measured: <= 7e-5 nats). The points lie
        // in and out of their class (log p down to -40), where p_t(y | x) is extreme. The divergence of the guided drift includes the classifier's Hessian tr(grad^2 log p_t(y | x)), which is only
        // there if the guidance gradient stays differentiable inside the likelihood's recording: without it (a detached
        // gradient) the result misses by up to 6 nats.
        var sde = new VpSde();
        var options = new LikelihoodOptions { Divergence = DivergenceMethod.Exact, RelativeTolerance = 1e-6, AbsoluteTolerance = 1e-6 };
        int[] labels = [0, 1, 0, 1, 1, 0];
        var x = Mixture.Sample(labels.Length, new Generator(61), DType.Float64);
        var guided = Guidance.Classifier(Mixture.ToScoreModel(), BayesLogits, 1.0);
        var result = ProbabilityFlowLikelihood.LogLikelihood(guided, sde, x, new Generator(1), options, labels);
        var level = sde.Level(options.StartTime);
        var closedForm = ClassMixtures.Select(m => m.LogDensity(x, level).ToDoubleArray()).ToArray();
        var prior = sde.PriorLogDensity(result.Latent).ToDoubleArray();
        var atT = ClassMixtures.Select(m => m.LogDensity(result.Latent, sde.Level(sde.T)).ToDoubleArray()).ToArray();
        for (int b = 0; b < labels.Length; b++)
        {
            int y = labels[b];
            double mismatch = prior[b] - atT[y][b];
            Assert.That(Math.Abs(mismatch), Is.LessThan(0.2), "the prior approximates p_T(z | y)");
            Assert.That(result.LogLikelihood[b] - mismatch, Is.EqualTo(closedForm[y][b]).Within(1e-3), $"sample {b}, class {y}");
        }
    }
}
