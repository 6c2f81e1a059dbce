using DiffusionCore.Kernels;

namespace DiffusionCore.Engine.Optim;

/// <summary>
/// The in-place parameter updates of the optimizers and the EMA: the backend's fused kernels where it has
/// <see cref="IOptimizerKernels"/>, else the same formulas from elementwise ops (more passes and temporaries, one
/// result). Callers run outside the graph (the optimizers' steps are under <see cref="Autograd.NoGrad"/>).
/// </summary>
internal static class ParameterUpdates
{
    /// <summary>y = alpha x + beta y in place, over tensors of one shape.</summary>
    public static void Axpby(Tensor x, Tensor y, double alpha, double beta)
    {
        if (x.Device.Backend.GetCapability<IOptimizerKernels>() is { } kernels)
        {
            kernels.Axpby(x.Buffer, y.Buffer, x.Count, alpha, beta);
            return;
        }
        using var _ = Autograd.NoGrad();
        using var scope = TensorScope.Begin();
        Ops.Add(Ops.Scale(x, alpha), Ops.Scale(y, beta)).CopyTo(y);
    }

    /// <summary>
    /// One Adam/AdamW step on parameter p with gradient g and moments m, v (updated in place), the formula of
    /// <see cref="IOptimizerKernels.AdamUpdate"/>: g' = g + l2 p, m = b1 m + (1 - b1) g', v = b2 v + (1 - b2) g'²,
    /// p = decay p - lr (m / c1) / (sqrt(v / c2) + eps).
    /// </summary>
    public static void Adam(Tensor p, Tensor g, Tensor m, Tensor v, AdamStep step)
    {
        if (p.Device.Backend.GetCapability<IOptimizerKernels>() is { } kernels)
        {
            kernels.AdamUpdate(p.Buffer, g.Buffer, m.Buffer, v.Buffer, p.Count, step);
            return;
        }
        double decay = step.Decoupled ? 1.0 - step.LearningRate * step.WeightDecay : 1.0;
        double l2 = step.Decoupled ? 0.0 : step.WeightDecay;
        using var _ = Autograd.NoGrad();
        using var scope = TensorScope.Begin();
        var gradient = l2 == 0.0 ? g : Ops.Add(g, Ops.Scale(p, l2));
        Ops.Add(Ops.Scale(m, step.Beta1), Ops.Scale(gradient, 1.0 - step.Beta1)).CopyTo(m);
        Ops.Add(Ops.Scale(v, step.Beta2), Ops.Scale(Ops.Square(gradient), 1.0 - step.Beta2)).CopyTo(v);
        var denominator = Ops.AddScalar(Ops.Sqrt(Ops.Scale(v, 1.0 / step.BiasCorrection2)), step.Epsilon);
        var update = Ops.Div(Ops.Scale(m, step.LearningRate / step.BiasCorrection1), denominator);
        Ops.Sub(Ops.Scale(p, decay), update).CopyTo(p);
    }
}
