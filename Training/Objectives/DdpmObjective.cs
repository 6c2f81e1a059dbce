using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Training.Objectives;

/// <summary>DDPM's training objective (Ho et al. 2020, Algorithm 1 and eq. 14).</summary>
public static class DdpmObjective
{
    /// <summary>
    /// L_simple = E_{t, x0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t) ||^2,
    /// with t uniform on the T steps and eps ~ N(0, I); averaged over every element of the batch.
    /// </summary>
    public static Tensor SimpleLoss(ScoreNetwork model, DdpmSchedule schedule, Tensor x0, Generator generator, int[]? labels = null)
    {
        int batch = x0.Shape[0];
        var t = generator.Integers(batch, schedule.Steps);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        var xt = Noise(schedule, x0, eps, t);
        var prediction = model.Forward(xt, PerSample.Times(t, x0), labels);
        return Ops.MseLoss(prediction, eps);
    }

    /// <summary>x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps for per-sample steps t (eq. 4).</summary>
    public static Tensor Noise(DdpmSchedule schedule, Tensor x0, Tensor eps, int[] t)
    {
        var mean = PerSample.Column(t.Select(schedule.MarginalMean).ToArray(), x0);
        var std = PerSample.Column(t.Select(schedule.MarginalStd).ToArray(), x0);
        return Ops.Add(Ops.Mul(mean, x0), Ops.Mul(std, eps));
    }
}
