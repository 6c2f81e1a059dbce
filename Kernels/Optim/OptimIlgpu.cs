using System.Numerics;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;

namespace DiffusionCore.Kernels.Optim;

/// <summary>Scalars of one Adam step in the element type, derived from an <see cref="AdamStep"/> on the host.</summary>
public struct AdamParams<T> where T : unmanaged
{
    /// <summary>Learning rate.</summary>
    public T LearningRate;

    /// <summary>First-moment decay beta1.</summary>
    public T Beta1;

    /// <summary>Second-moment decay beta2.</summary>
    public T Beta2;

    /// <summary>Denominator guard epsilon.</summary>
    public T Epsilon;

    /// <summary>Parameter multiplier before the step: 1 - lr * wd for AdamW, else 1.</summary>
    public T Decay;

    /// <summary>L2 coefficient added to the gradient (classic Adam with weight decay), else 0.</summary>
    public T L2;

    /// <summary>1 / (1 - beta1^t).</summary>
    public T InverseCorrection1;

    /// <summary>1 / (1 - beta2^t).</summary>
    public T InverseCorrection2;
}

/// <summary>Fused optimizer kernels for ILGPU: one pass over each parameter, one thread per element.</summary>
public static class OptimIlgpu
{
    /// <summary>
    /// Adam (Kingma and Ba 2015, Algorithm 1) with AdamW's decoupled decay (Loshchilov and Hutter 2019) or L2:
    /// g' = g + l2 p; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2; p = decay p - lr (m / c1) / (sqrt(v / c2) + eps),
    /// the formula of <see cref="OptimCpu.Adam{T}"/>.
    /// </summary>
    [IlgpuKernel]
    public static void Adam<T>(Index1D i, ArrayView<T> p, ArrayView<T> g, ArrayView<T> m, ArrayView<T> v, AdamParams<T> s)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T pi = p[i];
        T gi = g[i] + s.L2 * pi;
        T mi = s.Beta1 * m[i] + (T.One - s.Beta1) * gi;
        T vi = s.Beta2 * v[i] + (T.One - s.Beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = s.Decay * pi - s.LearningRate * (mi * s.InverseCorrection1) / (T.Sqrt(vi * s.InverseCorrection2) + s.Epsilon);
    }
}
