namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// Matrix product op(a) · op(b) over the last two axes, op = transpose when the flag is set.
    /// Leading (batch) axes must agree, or one operand is a plain matrix shared by every batch entry.
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b, bool transposeA = false, bool transposeB = false)
    {
        SameDevice("MatMul", a, b);
        if (a.Rank < 2 || b.Rank < 2)
            throw new TensorException("MatMul", $"needs matrices (rank >= 2), got {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)}");
        int m = transposeA ? a.Shape[^1] : a.Shape[^2];
        int ka = transposeA ? a.Shape[^2] : a.Shape[^1];
        int kb = transposeB ? b.Shape[^1] : b.Shape[^2];
        int n = transposeB ? b.Shape[^2] : b.Shape[^1];
        var batchA = a.Shape[..^2];
        var batchB = b.Shape[..^2];
        string desc = $"{ShapeUtil.Format(a.Shape)}{(transposeA ? "ᵀ" : "")} · {ShapeUtil.Format(b.Shape)}{(transposeB ? "ᵀ" : "")}";
        if (ka != kb) throw new TensorException("MatMul", $"inner dimensions differ: {desc} ({ka} vs {kb})");
        int[] batch;
        if (ShapeUtil.Same(batchA, batchB) || batchB.Length == 0) batch = batchA;
        else if (batchA.Length == 0) batch = batchB;
        else throw new TensorException("MatMul", $"batch shapes differ: {desc}");
        int count = (int)ShapeUtil.Count(batch);
        var shape = batch.Concat(new[] { m, n }).ToArray();
        var y = NewLike(a, shape);
        a.Backend.Gemm(transposeA, transposeB, count, m, n, ka, 1.0,
            a.Buffer, 0, batchA.Length == 0 ? 0 : (long)m * ka,
            b.Buffer, 0, batchB.Length == 0 ? 0 : (long)ka * n,
            0.0, y.Buffer, 0, (long)m * n);
        return Autograd.Record(y, "MatMul", [a, b], g =>
        {
            // C = op(A) op(B): dA and dB by the four transpose cases; a shared matrix sums over the batch.
            Tensor? da = null, db = null;
            if (a.TracksGrad)
            {
                da = (transposeA, transposeB) switch
                {
                    (false, false) => MatMul(g, b, false, true),
                    (false, true) => MatMul(g, b, false, false),
                    (true, false) => MatMul(b, g, false, true),
                    _ => MatMul(b, g, true, true),
                };
                da = SumTo(da, a.Shape);
            }
            if (b.TracksGrad)
            {
                db = (transposeA, transposeB) switch
                {
                    (false, false) => MatMul(a, g, true, false),
                    (false, true) => MatMul(g, a, true, false),
                    (true, false) => MatMul(a, g, false, false),
                    _ => MatMul(g, a, true, true),
                };
                db = SumTo(db, b.Shape);
            }
            return [da, db];
        });
    }

    /// <summary>y = x Wᵀ + b over the last axis of x; W is [out, in], b is [out] or null.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2 || x.Rank < 1 || x.Shape[^1] != weight.Shape[1])
            throw new TensorException("Linear", $"input {ShapeUtil.Format(x.Shape)} does not match weight {ShapeUtil.Format(weight.Shape)} (expected last axis {(weight.Rank == 2 ? weight.Shape[1] : -1)})");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != weight.Shape[0]))
            throw new TensorException("Linear", $"bias {ShapeUtil.Format(bias.Shape)} does not match weight {ShapeUtil.Format(weight.Shape)}");
        var x2 = x.Rank == 2 ? x : Reshape(x, -1, x.Shape[^1]);
        var y = MatMul(x2, weight, false, true);
        if (bias is not null) y = Add(y, bias);
        if (x.Rank != 2) y = Reshape(y, x.Shape[..^1].Concat(new[] { weight.Shape[0] }).ToArray());
        return y;
    }
}
