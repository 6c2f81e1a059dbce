using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Tests.Engine;

/// <summary>
/// Central-difference gradient checks in float64. For f: inputs -> tensor, the scalar probe
/// L = sum(f(x) * w) with a fixed random w is differentiated by autograd and by
/// (L(x + h e_i) - L(x - h e_i)) / 2h. The second-order check does the same for
/// H = sum(grad_x L * v), whose gradient autograd gets by differentiating the recorded backward pass.
/// </summary>
public static class GradCheck
{
    // h = 1e-6 balances the O(h^2) truncation error (~1e-12 * |f'''|) and the rounding error
    // (~1e-16 * |L| / h = 1e-10 * |L|) of the central difference in double precision; the
    // tolerances below sit a few orders above both.
    private const double H = 1e-6;

    public static Tensor[] MakeInputs(int seed, int[][] shapes, Func<double, double>? map = null)
    {
        var rng = new System.Random(seed);
        return shapes.Select(s =>
        {
            var v = new double[ShapeUtil.Count(s)];
            for (int i = 0; i < v.Length; i++)
            {
                double u = rng.NextDouble() * 2 - 1;
                v[i] = map is null ? u : map(u);
            }
            var t = Tensor.FromArray(v, s);
            t.RequiresGrad = true;
            return t;
        }).ToArray();
    }

    private static Tensor Weights(int seed, int[] shape)
    {
        var rng = new System.Random(seed + 1000);
        var v = new double[ShapeUtil.Count(shape)];
        for (int i = 0; i < v.Length; i++) v[i] = rng.NextDouble() * 2 - 1;
        return Tensor.FromArray(v, shape);
    }

    private static double Probe(Func<Tensor[], Tensor> f, Tensor[] x, Tensor w)
    {
        using var scope = TensorScope.Begin();
        using var _ = Autograd.NoGrad();
        return Ops.Sum(Ops.Mul(f(x), w)).Item();
    }

    private static Tensor Perturbed(Tensor x, int index, double delta)
    {
        var v = x.ToDoubleArray();
        v[index] += delta;
        return Tensor.FromArray(v, x.Shape);
    }

    /// <summary>Checks first derivatives of f at x; returns the largest relative error seen.</summary>
    public static double FirstOrder(Func<Tensor[], Tensor> f, Tensor[] x, double tolerance = 1e-6, int seed = 0)
    {
        using var scope = TensorScope.Begin();
        var y = f(x);
        var w = Weights(seed, y.Shape);
        var loss = Ops.Sum(Ops.Mul(y, w));
        var grads = Autograd.Grad([loss], x, allowUnused: true);
        double worst = 0;
        for (int k = 0; k < x.Length; k++)
        {
            var analytic = grads[k]?.ToDoubleArray() ?? new double[x[k].Count];
            for (int i = 0; i < x[k].Count; i++)
            {
                var plus = (Tensor[])x.Clone();
                var minus = (Tensor[])x.Clone();
                plus[k] = Perturbed(x[k], i, H);
                minus[k] = Perturbed(x[k], i, -H);
                double numeric = (Probe(f, plus, w) - Probe(f, minus, w)) / (2 * H);
                double err = Math.Abs(numeric - analytic[i]) / Math.Max(1.0, Math.Abs(numeric));
                worst = Math.Max(worst, err);
                Assert.That(err, Is.LessThan(tolerance), $"input {k} element {i}: autograd {analytic[i]:G10}, central difference {numeric:G10}");
            }
        }
        return worst;
    }

    /// <summary>
    /// Checks second derivatives: the gradient (by autograd through a recorded backward pass) of
    /// H(x) = sum(dL/dx · v) against central differences of H.
    /// </summary>
    public static void SecondOrder(Func<Tensor[], Tensor> f, Tensor[] x, double tolerance = 1e-5, int seed = 0)
    {
        using var scope = TensorScope.Begin();
        var y = f(x);
        var w = Weights(seed, y.Shape);
        var vs = x.Select((t, k) => Weights(seed + 17 * (k + 1), t.Shape)).ToArray();

        double HOf(Tensor[] at)
        {
            using var s = TensorScope.Begin();
            foreach (var t in at) t.RequiresGrad = true;
            var l = Ops.Sum(Ops.Mul(f(at), w));
            var g = Autograd.Grad([l], at, allowUnused: true);
            double h = 0;
            for (int k = 0; k < at.Length; k++)
                if (g[k] is not null) h += Ops.Sum(Ops.Mul(g[k]!, vs[k])).Item();
            return h;
        }

        var loss = Ops.Sum(Ops.Mul(y, w));
        var g1 = Autograd.Grad([loss], x, createGraph: true, allowUnused: true);
        Tensor? hTensor = null;
        for (int k = 0; k < x.Length; k++)
        {
            if (g1[k] is null || !g1[k]!.TracksGrad) continue;
            var term = Ops.Sum(Ops.Mul(g1[k]!, vs[k]));
            hTensor = hTensor is null ? term : Ops.Add(hTensor, term);
        }
        Assert.That(hTensor, Is.Not.Null, "the first-order gradient does not depend on the inputs (op is linear); use FirstOrder only");
        var g2 = Autograd.Grad([hTensor!], x, allowUnused: true);
        for (int k = 0; k < x.Length; k++)
        {
            var analytic = g2[k]?.ToDoubleArray() ?? new double[x[k].Count];
            for (int i = 0; i < x[k].Count; i++)
            {
                var plus = x.Select(t => Tensor.FromArray(t.ToDoubleArray(), t.Shape)).ToArray();
                var minus = x.Select(t => Tensor.FromArray(t.ToDoubleArray(), t.Shape)).ToArray();
                plus[k] = Perturbed(x[k], i, H);
                minus[k] = Perturbed(x[k], i, -H);
                double numeric = (HOf(plus) - HOf(minus)) / (2 * H);
                double err = Math.Abs(numeric - analytic[i]) / Math.Max(1.0, Math.Abs(numeric));
                Assert.That(err, Is.LessThan(tolerance), $"second order, input {k} element {i}: autograd {analytic[i]:G10}, central difference {numeric:G10}");
            }
        }
    }
}
