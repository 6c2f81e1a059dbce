using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Training.Objectives;

/// <summary>
/// NCSN's denoising score matching over its noise levels (Song and Ermon 2019, eqs. 5 and 6). The network
/// outputs the score s_theta(x~, sigma) of the perturbed data directly.
/// </summary>
public static class NcsnObjective
{
    /// <summary>
    /// The eq. 6 loss on a batch: a level index i uniform on the L levels and eps ~ N(0, I) drawn from
    /// <paramref name="generator"/> in that order, then
    /// <see cref="DenoisingScoreMatchingLoss(ScoreNetwork, NcsnSigmas, Tensor, int[], Tensor, int[])"/>.
    /// </summary>
    public static Tensor DenoisingScoreMatchingLoss(ScoreNetwork model, NcsnSigmas sigmas, Tensor x0, Generator generator, int[]? labels = null)
    {
        int batch = ObjectiveMath.CheckBatch("NcsnObjective.DenoisingScoreMatchingLoss", x0);
        var levels = generator.Integers(batch, sigmas.Count);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        return DenoisingScoreMatchingLoss(model, sigmas, x0, levels, eps, labels);
    }

    /// <summary>
    /// The eq. 6 loss for given level indices and noise: with sigma = sigma_i per sample, x~ = x0 + sigma eps and
    /// the eq. 5 target grad log q(x~ | x0) = -(x~ - x0) / sigma^2 = -eps / sigma, the mean over the batch of
    /// lambda(sigma) 1/2 || s_theta(x~, sigma) + eps / sigma ||^2 with lambda(sigma) = sigma^2, that is
    /// 1/2 || sigma s_theta + eps ||^2 (squared norm summed over a sample's elements). The network is told
    /// <see cref="NcsnSigmas.Level"/>(i).Condition (sigma_i) per sample. Differentiable in the parameters.
    /// </summary>
    public static Tensor DenoisingScoreMatchingLoss(ScoreNetwork model, NcsnSigmas sigmas, Tensor x0, int[] levels, Tensor eps, int[]? labels = null)
    {
        const string op = "NcsnObjective.DenoisingScoreMatchingLoss";
        int batch = ObjectiveMath.CheckBatch(op, x0, eps);
        ObjectiveMath.CheckLength(op, nameof(levels), levels, batch);
        foreach (var i in levels)
            if (i < 0 || i >= sigmas.Count) throw new ArgumentOutOfRangeException(nameof(levels), i, $"{op}: level outside [0, {sigmas.Count})");
        var noise = levels.Select(sigmas.Level).ToArray();
        var sigma = PerSample.Column(noise.Select(l => l.Sigma).ToArray(), x0);
        var perturbed = Ops.Add(x0, Ops.Mul(sigma, eps));
        var score = model.Forward(perturbed, ObjectiveMath.Vector(noise.Select(l => l.Condition).ToArray(), x0), labels);
        var residual = Ops.Add(Ops.Mul(sigma, score), eps);
        return Ops.Scale(Ops.Mean(ObjectiveMath.SquaredNormPerSample(residual)), 0.5);
    }
}
