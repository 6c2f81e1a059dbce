using DiffusionCore.Engine;

namespace DiffusionCore.Sampling.Ode;

/// <summary>Linear algebra on states made of several tensors, shared by the solvers.</summary>
internal static class OdeState
{
    /// <summary>Checks a state given by the caller: at least one tensor.</summary>
    public static void CheckInitial(string solver, Tensor[] y0)
    {
        ArgumentNullException.ThrowIfNull(y0);
        if (y0.Length == 0) throw new ArgumentException($"{solver}: the initial state has no tensors", nameof(y0));
    }

    /// <summary>New tensors holding copies of <paramref name="y"/> (in the caller's scope).</summary>
    public static Tensor[] Copy(Tensor[] y) => y.Select(t => t.Clone()).ToArray();

    /// <summary>f(t, y), checked to return one tensor shaped like each state tensor.</summary>
    public static Tensor[] Evaluate(string solver, OdeFunction f, double t, Tensor[] y)
    {
        var k = f(t, y);
        if (k is null || k.Length != y.Length)
            throw new ArgumentException($"{solver}: the ODE function returned {k?.Length ?? 0} tensors at t = {t} for a state of {y.Length}");
        for (int i = 0; i < k.Length; i++)
        {
            if (!ShapeUtil.Same(k[i].Shape, y[i].Shape))
                throw new ArgumentException($"{solver}: the ODE function returned {ShapeUtil.Format(k[i].Shape)} at t = {t} for state tensor {i} of shape {ShapeUtil.Format(y[i].Shape)}");
        }
        return k;
    }

    /// <summary>y + h sum_j a_j k_j, tensor by tensor (zero coefficients skipped).</summary>
    public static Tensor[] Combine(Tensor[] y, double h, ReadOnlySpan<double> a, Tensor[][] k)
    {
        var r = new Tensor[y.Length];
        for (int c = 0; c < y.Length; c++)
        {
            var acc = y[c];
            for (int j = 0; j < a.Length; j++)
                if (a[j] != 0) acc = Ops.Add(acc, Ops.Scale(k[j][c], h * a[j]));
            r[c] = acc;
        }
        return r;
    }

    /// <summary>h sum_j a_j k_j, tensor by tensor (zero coefficients skipped; at least one must be non-zero).</summary>
    public static Tensor[] WeightedSum(double h, ReadOnlySpan<double> a, Tensor[][] k)
    {
        var r = new Tensor[k[0].Length];
        for (int c = 0; c < r.Length; c++)
        {
            Tensor? acc = null;
            for (int j = 0; j < a.Length; j++)
            {
                if (a[j] == 0) continue;
                var term = Ops.Scale(k[j][c], h * a[j]);
                acc = acc is null ? term : Ops.Add(acc, term);
            }
            r[c] = acc ?? throw new ArgumentException("OdeState.WeightedSum: every coefficient is zero");
        }
        return r;
    }

    /// <summary>Overwrites the solver-owned state <paramref name="target"/> with <paramref name="values"/>.</summary>
    public static void Assign(Tensor[] target, Tensor[] values)
    {
        for (int c = 0; c < target.Length; c++)
            if (!ReferenceEquals(target[c], values[c])) values[c].CopyTo(target[c]);
    }

    /// <summary>Root mean square over every element of every tensor of <paramref name="v"/>.</summary>
    public static double Rms(Tensor[] v)
    {
        double sum = 0;
        long n = 0;
        foreach (var t in v)
        {
            sum += Ops.Sum(Ops.Square(t)).Item();
            n += t.Count;
        }
        return Math.Sqrt(sum / Math.Max(1, n));
    }
}
