using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Nn;

/// <summary>Parameter initialisers, drawn from a Philox generator so a seed fixes the model.</summary>
public static class Init
{
    /// <summary>U(-bound, bound) of the given shape.</summary>
    public static Tensor Uniform(int[] shape, double bound, Generator generator, Device? device = null)
    {
        var u = generator.Uniform(shape, DType.Float32, device);
        var r = Ops.Affine(u, 2 * bound, -bound);
        u.Dispose();
        return r;
    }

    /// <summary>
    /// PyTorch's default for Linear and Conv layers (kaiming_uniform with a = sqrt 5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    /// for weights and biases alike.
    /// </summary>
    public static Tensor FanIn(int[] shape, int fanIn, Generator generator, Device? device = null) => Uniform(shape, 1.0 / Math.Sqrt(Math.Max(1, fanIn)), generator, device);
}
