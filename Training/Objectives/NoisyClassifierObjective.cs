using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Training.Objectives;

/// <summary>
/// Training loss of the noise-aware classifier p_phi(y | x_t, t) of classifier guidance (Dhariwal and Nichol
/// 2021, section 4.1; Song et al. 2021, appendix I.1): cross-entropy of the true label on a noised input x_t
/// at a random time, so that grad_x log p_phi(y | x_t, t) is usable at every noise level of the sampler.
/// The classifier is any function (x_t, condition [B]) to logits [B, classes]; the condition is what the
/// process tells its networks (the DDPM step index, or <see cref="Sde.NetworkCondition"/>).
/// </summary>
public static class NoisyClassifierObjective
{
    /// <summary>
    /// Cross-entropy on x_t of a DDPM schedule: t uniform on the T steps and then eps ~ N(0, I) from
    /// <paramref name="generator"/>, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.
    /// </summary>
    public static Tensor CrossEntropyLoss(Func<Tensor, Tensor, Tensor> classifier, DdpmSchedule schedule, Tensor x0, int[] labels, Generator generator)
    {
        int batch = ObjectiveMath.CheckBatch("NoisyClassifierObjective.CrossEntropyLoss", x0);
        var t = generator.Integers(batch, schedule.Steps);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        return CrossEntropyLoss(classifier, schedule, x0, labels, t, eps);
    }

    /// <summary>Cross-entropy on x_t of a DDPM schedule for given steps and noise; the classifier sees the step index t.</summary>
    public static Tensor CrossEntropyLoss(Func<Tensor, Tensor, Tensor> classifier, DdpmSchedule schedule, Tensor x0, int[] labels, int[] t, Tensor eps)
    {
        const string op = "NoisyClassifierObjective.CrossEntropyLoss";
        int batch = ObjectiveMath.CheckBatch(op, x0, eps);
        ObjectiveMath.CheckLength(op, nameof(labels), labels, batch);
        ObjectiveMath.CheckLength(op, nameof(t), t, batch);
        foreach (var step in t)
            if (step < 0 || step >= schedule.Steps) throw new ArgumentOutOfRangeException(nameof(t), step, $"{op}: step outside [0, {schedule.Steps})");
        var xt = DdpmObjective.Noise(schedule, x0, eps, t);
        return Ops.CrossEntropy(classifier(xt, PerSample.Times(t, x0)), labels);
    }

    /// <summary>
    /// Cross-entropy on x_t of an SDE: t ~ U[eta, T] and then eps ~ N(0, I) from <paramref name="generator"/>,
    /// x_t = alpha_t x0 + sigma_t eps.
    /// </summary>
    public static Tensor CrossEntropyLoss(Func<Tensor, Tensor, Tensor> classifier, Sde sde, Tensor x0, int[] labels, Generator generator,
        double eta = SdeObjective.DefaultEta)
    {
        const string op = "NoisyClassifierObjective.CrossEntropyLoss";
        int batch = ObjectiveMath.CheckBatch(op, x0);
        ObjectiveMath.CheckEta(op, eta, sde.T);
        var t = ObjectiveMath.UniformTimes(generator, batch, eta, sde.T);
        var eps = generator.Normal(x0.Shape, x0.DType, x0.Device);
        return CrossEntropyLoss(classifier, sde, x0, labels, t, eps);
    }

    /// <summary>Cross-entropy on x_t of an SDE for given times and noise; the classifier sees <see cref="Sde.NetworkCondition"/>(t).</summary>
    public static Tensor CrossEntropyLoss(Func<Tensor, Tensor, Tensor> classifier, Sde sde, Tensor x0, int[] labels, double[] t, Tensor eps)
    {
        const string op = "NoisyClassifierObjective.CrossEntropyLoss";
        int batch = ObjectiveMath.CheckBatch(op, x0, eps);
        ObjectiveMath.CheckLength(op, nameof(labels), labels, batch);
        ObjectiveMath.CheckLength(op, nameof(t), t, batch);
        foreach (var ti in t)
            if (!(ti >= 0 && ti <= sde.T)) throw new ArgumentOutOfRangeException(nameof(t), ti, $"{op}: time outside [0, {sde.T}]");
        var xt = sde.Perturb(x0, eps, t);
        return Ops.CrossEntropy(classifier(xt, ObjectiveMath.Vector(t.Select(sde.NetworkCondition).ToArray(), x0)), labels);
    }
}
