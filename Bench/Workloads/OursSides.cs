using DiffusionCore.Engine;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// Builds our sides of a workload the way <see cref="Peer.LibTorchPeer"/> builds libtorch's: the forward under
/// <see cref="Autograd.NoGrad"/>, or the forward followed by <see cref="Autograd.Grad"/> of every input for a
/// fixed upstream gradient (nothing accumulates between repetitions); each repetition's tensors are freed by
/// a <see cref="TensorScope"/> at its end.
/// </summary>
public static class OursSides
{
    /// <summary><paramref name="count"/> seeded normal values with the given mean and standard deviation.</summary>
    public static float[] Normal(Generator generator, int count, double std = 1, double mean = 0)
    {
        float[] values = generator.NormalHost(count);
        for (int i = 0; i < values.Length; i++) values[i] = (float)(mean + std * values[i]);
        return values;
    }

    /// <summary>A tensor holding a copy of <paramref name="data"/>, outside every scope, tracking gradients if asked.</summary>
    public static Tensor Leaf(float[] data, int[] shape, bool requiresGrad)
    {
        var t = TensorScope.Escape(Tensor.FromArray(data, shape));
        t.RequiresGrad = requiresGrad;
        return t;
    }

    /// <summary>
    /// Our Engine side: <paramref name="forward"/> alone for <see cref="Pass.Forward"/>; for
    /// <see cref="Pass.ForwardBackward"/>, its output y and the gradients of <paramref name="inputs"/> for the
    /// upstream gradient <paramref name="dy"/> (unused, and may be null, for the forward). <see cref="WorkloadSide.Results"/> returns y then the gradients.
    /// </summary>
    public static WorkloadSide Engine(Pass pass, Func<Tensor> forward, Tensor? dy, params Tensor[] inputs)
    {
        Tensor[] Body()
        {
            if (pass == Pass.Forward)
            {
                using (Autograd.NoGrad()) return [forward()];
            }
            var y = forward();
            return [y, .. Autograd.Grad([y], inputs, [dy ?? throw new ArgumentNullException(nameof(dy), "a backward needs dy")]).Select(g => g!)];
        }
        return new WorkloadSide("ours",
            () =>
            {
                using var scope = TensorScope.Begin();
                Body();
            },
            () =>
            {
                using var scope = TensorScope.Begin();
                return Body().Select(t => t.ToArray()).ToArray();
            });
    }

    /// <summary>
    /// Our bare-kernel side: <paramref name="run"/> writes into preallocated buffers; <see cref="WorkloadSide.Results"/>
    /// runs it and returns copies of <paramref name="outputs"/> (forward output first, then the gradients).
    /// </summary>
    public static WorkloadSide Kernel(Action run, params float[][] outputs)
        => new("ours kernel", run, () =>
        {
            run();
            return outputs.Select(o => (float[])o.Clone()).ToArray();
        });
}
