using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Training.Objectives;

/// <summary>
/// DDPM's variational bound in its eps form (Ho et al. 2020, eq. 12), the weighted counterpart of
/// <see cref="DdpmObjective.SimpleLoss"/>: with the reverse variance sigma_t^2 = beta_t, the KL term
/// L_{t-1} equals w_t E || eps - eps_theta(x_t, t) ||^2 with
/// w_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) = beta_t / (2 alpha_t (1 - alpha_bar_t)).
/// </summary>
public static class DdpmVlbObjective
{
    /// <summary>
    /// The weights w_t of eq. 12 for every step of <paramref name="schedule"/>, with sigma_t^2 = beta_t.
    /// Under the linear schedule they fall from about 0.5 at the first step to about 0.01 at the last,
    /// which is why Ho et al. found the unweighted L_simple trains better samples.
    /// </summary>
    public static double[] Weights(DdpmSchedule schedule)
    {
        var w = new double[schedule.Steps];
        for (int t = 0; t < w.Length; t++)
        {
            double beta = schedule.Betas[t], sigma2 = beta;
            w[t] = beta * beta / (2 * sigma2 * schedule.Alphas[t] * (1 - schedule.AlphaBars[t]));
        }
        return w;
    }

    /// <summary>
    /// The eq. 12 loss on a batch: t uniform on the T steps and eps ~ N(0, I) drawn from
    /// <paramref name="generator"/> in that order (as <see cref="DdpmObjective.SimpleLoss"/> draws them), then
    /// <see cref="Loss(ScoreNetwork, DdpmSchedule, Tensor, int[], Tensor, int[])"/>.
    /// </summary>
    public static Tensor Loss(ScoreNetwork model, DdpmSchedule schedule, Tensor x0, Generator generator, int[]? labels = null)
    {
        int batch = ObjectiveMath.CheckBatch("DdpmVlbObjective.Loss", x0);
        var t = generator.Integers(batch, schedule.Steps);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        return Loss(model, schedule, x0, t, eps, labels);
    }

    /// <summary>
    /// The eq. 12 loss for given steps t and noise eps: mean over the batch of
    /// w_t sum_j (eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t))_j^2. The squared error
    /// is summed over a sample's elements, as in the KL divergence it comes from, so the mean over t is an
    /// unbiased estimate of (1/T) sum_t L_{t-1}. Differentiable with respect to the model's parameters.
    /// </summary>
    public static Tensor Loss(ScoreNetwork model, DdpmSchedule schedule, Tensor x0, int[] t, Tensor eps, int[]? labels = null)
    {
        const string op = "DdpmVlbObjective.Loss";
        int batch = ObjectiveMath.CheckBatch(op, x0, eps);
        ObjectiveMath.CheckLength(op, nameof(t), t, batch);
        foreach (var step in t)
            if (step < 0 || step >= schedule.Steps) throw new ArgumentOutOfRangeException(nameof(t), step, $"{op}: step outside [0, {schedule.Steps})");
        var weights = Weights(schedule);
        var xt = DdpmObjective.Noise(schedule, x0, eps, t);
        var prediction = model.Forward(xt, PerSample.Times(t, x0), labels);
        var error = ObjectiveMath.SquaredNormPerSample(Ops.Sub(eps, prediction));
        var w = ObjectiveMath.Vector(t.Select(s => weights[s]).ToArray(), x0);
        return Ops.Mean(Ops.Mul(w, error));
    }
}
