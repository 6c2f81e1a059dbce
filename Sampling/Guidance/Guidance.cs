using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;
using DiffusionCore.Models.Score;

namespace DiffusionCore.Sampling.Guidance;

/// <summary>
/// Guided score models: each wraps a <see cref="ScoreModel"/> and returns one, so every sampler takes guidance
/// without knowing about it. Labels are passed to the sampler as usual.
/// </summary>
public static class Guidance
{
    /// <summary>
    /// Classifier guidance (Dhariwal and Nichol 2021, Algorithm 2 in eps form):
    /// eps~(x, y) = eps(x) - gamma sigma grad_x log p(y | x) with sigma = sqrt(1 - alpha_bar) the level's noise
    /// std, i.e. score~ = score + gamma grad_x log p(y | x). <paramref name="classifier"/> maps (x, level) to
    /// class logits [B, classes] (a NoisyClassifier trained on x_t); its gradient is taken by autograd.
    /// </summary>
    public static ScoreModel Classifier(ScoreModel model, Func<Tensor, NoiseLevel, Tensor> classifier, double gamma)
    {
        if (!(gamma >= 0)) throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "the guidance scale must be non-negative");
        return ScoreModel.FromFunction((x, level, labels) =>
        {
            if (labels is null || labels.Length != x.Shape[0])
                throw new ArgumentException($"classifier guidance needs one label per sample ({x.Shape[0]}), got {labels?.Length.ToString() ?? "none"}", nameof(labels));
            var eps = model.Epsilon(x, level, labels);
            if (gamma == 0) return eps;
            var grad = ClassLogProbabilityGradient(classifier, x, level, labels);
            return Ops.Sub(eps, Ops.Scale(grad, gamma * level.Sigma));
        }, Parameterisation.Epsilon);
    }

    /// <summary>
    /// grad_x sum_b log p(y_b | x_b) by autograd through the classifier. When the caller records a graph through x
    /// (x tracks gradients and recording is on, as in the likelihood's divergence), the gradient is built with
    /// createGraph so that it stays differentiable in x; otherwise it is a detached tensor.
    /// </summary>
    public static Tensor ClassLogProbabilityGradient(Func<Tensor, NoiseLevel, Tensor> classifier, Tensor x, NoiseLevel level, int[] labels)
    {
        // The divergence of a guided drift needs d/dx of this gradient (the classifier's Hessian); a detached
        // gradient would silently drop tr(grad^2 log p(y | x)) from probability-flow likelihoods.
        bool differentiable = Autograd.IsRecording && x.TracksGrad;
        using var grad = Autograd.EnableGrad();
        var input = differentiable ? x : x.Detach();
        if (!differentiable) input.RequiresGrad = true;
        var logits = classifier(input, level);
        // CrossEntropy is the batch mean of -log p(y|x); scaling by -B gives sum_b log p(y_b | x_b).
        var logProbability = Ops.Scale(Ops.CrossEntropy(logits, labels), -x.Shape[0]);
        var g = Autograd.Grad([logProbability], [input], createGraph: differentiable)[0]!;
        if (differentiable) return g;
        using var off = Autograd.NoGrad();
        return g.Detach();
    }

    /// <summary>
    /// Classifier-free guidance (Ho and Salimans 2022, eq. 6): eps~ = gamma eps(x, y) + (1 - gamma) eps(x, null),
    /// both evaluated in ONE forward of a doubled batch [x; x] with labels [y; null]. <paramref name="nullLabel"/>
    /// is the label value the model was trained with for "no label" (its number of classes). gamma = 1 is the
    /// conditional model, 0 the unconditional one.
    /// </summary>
    public static ScoreModel ClassifierFree(ScoreModel model, double gamma, int nullLabel)
    {
        return ScoreModel.FromFunction((x, level, labels) =>
        {
            if (labels is null || labels.Length != x.Shape[0])
                throw new ArgumentException($"classifier-free guidance needs one label per sample ({x.Shape[0]}), got {labels?.Length.ToString() ?? "none"}", nameof(labels));
            int batch = x.Shape[0];
            var doubled = Ops.Concat([x, x], 0);
            var both = new int[2 * batch];
            labels.CopyTo(both, 0);
            Array.Fill(both, nullLabel, batch, batch);
            var eps = model.Epsilon(doubled, level, both);
            var parts = Ops.Split(eps, [batch, batch], 0);
            return Ops.Add(Ops.Scale(parts[0], gamma), Ops.Scale(parts[1], 1 - gamma));
        }, Parameterisation.Epsilon);
    }
}
