using DiffusionCore.Engine;

namespace DiffusionCore.Training.Objectives;

/// <summary>Small pieces the objectives share: argument checks and per-sample reductions.</summary>
internal static class ObjectiveMath
{
    /// <summary>|r_b|^2 summed over every axis but the batch axis: a [B] tensor.</summary>
    public static Tensor SquaredNormPerSample(Tensor r)
    {
        var sq = Ops.Square(r);
        return r.Rank == 1 ? sq : Ops.Sum(sq, Enumerable.Range(1, r.Rank - 1).ToArray());
    }

    /// <summary>sum over every axis but the batch axis of a * b: a [B] tensor.</summary>
    public static Tensor DotPerSample(Tensor a, Tensor b)
    {
        var p = Ops.Mul(a, b);
        return a.Rank == 1 ? p : Ops.Sum(p, Enumerable.Range(1, a.Rank - 1).ToArray());
    }

    /// <summary>A [B] tensor of per-sample values in the dtype and on the device of <paramref name="like"/>.</summary>
    public static Tensor Vector(double[] values, Tensor like) => Tensor.FromSpan<double>(values, [values.Length], like.DType, like.Device);

    /// <summary>Checks that x0 is a batch and that eps (when given) has its shape; returns the batch size.</summary>
    public static int CheckBatch(string op, Tensor x0, Tensor? eps = null)
    {
        if (x0.Rank < 1 || x0.Shape[0] < 1)
            throw new ArgumentException($"{op}: x0 must be a non-empty batch [B, ...], got {ShapeUtil.Format(x0.Shape)}", nameof(x0));
        if (eps is not null && !ShapeUtil.Same(x0.Shape, eps.Shape))
            throw new ArgumentException($"{op}: eps {ShapeUtil.Format(eps.Shape)} must have the shape of x0 {ShapeUtil.Format(x0.Shape)}", nameof(eps));
        return x0.Shape[0];
    }

    /// <summary>Checks that a per-sample array has one entry per batch entry.</summary>
    public static void CheckLength<T>(string op, string name, T[] values, int batch)
    {
        if (values.Length != batch)
            throw new ArgumentException($"{op}: {name} has {values.Length} entries for a batch of {batch}", name);
    }

    /// <summary>Checks the time cut-off eta of a continuous-time objective: 0 &lt; eta &lt; T.</summary>
    public static void CheckEta(string op, double eta, double end)
    {
        if (!(eta > 0 && eta < end))
            throw new ArgumentOutOfRangeException(nameof(eta), eta, $"{op}: the time cut-off eta must lie in (0, T = {end})");
    }

    /// <summary>t uniform on [eta, T] per batch entry, from <paramref name="generator"/>'s host uniforms.</summary>
    public static double[] UniformTimes(Generator generator, int batch, double eta, double end)
    {
        var u = generator.UniformHost(batch);
        var t = new double[batch];
        for (int i = 0; i < batch; i++) t[i] = eta + u[i] * (end - eta);
        return t;
    }
}
