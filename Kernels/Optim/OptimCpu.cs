using System.Numerics;
using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Optim;

/// <summary>Fused optimizer kernels on the CPU: one pass over each parameter.</summary>
public static class OptimCpu
{
    private const int Grain = 1 << 15;

    /// <summary>y = alpha * x + beta * y.</summary>
    public static void Axpby<T>(T[] x, T[] y, long count, T alpha, T beta) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, Grain, (s, e) =>
        {
            long i = s;
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                var va = Vector512.Create(alpha);
                var vb = Vector512.Create(beta);
                for (; i + Vector512<T>.Count <= e; i += Vector512<T>.Count)
                {
                    var vx = Vector512.Create<T>(x.AsSpan((int)i, Vector512<T>.Count));
                    var vy = Vector512.Create<T>(y.AsSpan((int)i, Vector512<T>.Count));
                    (va * vx + vb * vy).CopyTo(y.AsSpan((int)i));
                }
            }
            for (; i < e; i++) y[i] = alpha * x[i] + beta * y[i];
        });

    /// <summary>
    /// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr (m / c1) / (sqrt(v / c2) + eps),
    /// with weight decay as <see cref="AdamStep.Decoupled"/> says.
    /// </summary>
    public static void Adam<T>(T[] p, T[] g, T[] m, T[] v, long count, AdamStep step) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T lr = T.CreateTruncating(step.LearningRate), b1 = T.CreateTruncating(step.Beta1), b2 = T.CreateTruncating(step.Beta2);
        T eps = T.CreateTruncating(step.Epsilon), wd = T.CreateTruncating(step.WeightDecay);
        T c1 = T.One / T.CreateTruncating(step.BiasCorrection1), c2 = T.One / T.CreateTruncating(step.BiasCorrection2);
        T decay = step.Decoupled ? T.One - lr * wd : T.One;
        T l2 = step.Decoupled ? T.Zero : wd;
        CpuParallel.For(count, Grain, (s, e) =>
        {
            long i = s;
            if (Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported)
            {
                int w = Vector512<T>.Count;
                var vb1 = Vector512.Create(b1); var vb1c = Vector512.Create(T.One - b1);
                var vb2 = Vector512.Create(b2); var vb2c = Vector512.Create(T.One - b2);
                var vc1 = Vector512.Create(c1); var vc2 = Vector512.Create(c2);
                var veps = Vector512.Create(eps); var vlr = Vector512.Create(lr);
                var vdecay = Vector512.Create(decay); var vl2 = Vector512.Create(l2);
                for (; i + w <= e; i += w)
                {
                    int at = (int)i;
                    var vp = Vector512.Create<T>(p.AsSpan(at, w));
                    var vg = Vector512.Create<T>(g.AsSpan(at, w)) + vl2 * vp;
                    var vm = vb1 * Vector512.Create<T>(m.AsSpan(at, w)) + vb1c * vg;
                    var vv = vb2 * Vector512.Create<T>(v.AsSpan(at, w)) + vb2c * vg * vg;
                    vp = vdecay * vp - vlr * (vm * vc1) / (Vector512.Sqrt(vv * vc2) + veps);
                    vm.CopyTo(m.AsSpan(at));
                    vv.CopyTo(v.AsSpan(at));
                    vp.CopyTo(p.AsSpan(at));
                }
            }
            for (; i < e; i++)
            {
                T gi = g[i] + l2 * p[i];
                m[i] = b1 * m[i] + (T.One - b1) * gi;
                v[i] = b2 * v[i] + (T.One - b2) * gi * gi;
                p[i] = decay * p[i] - lr * (m[i] * c1) / (T.Sqrt(v[i] * c2) + eps);
            }
        });
    }
}
