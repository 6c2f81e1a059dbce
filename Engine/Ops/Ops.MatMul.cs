namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// Matrix product op(a) · op(b) with NumPy/torch <c>matmul</c> semantics, op = transpose (of the last two axes)
    /// when the flag is set:
    /// <list type="bullet">
    /// <item>operands of rank &gt;= 2 multiply over their last two axes, and their leading (batch) axes broadcast as
    /// in NumPy: [2, 1, 5, 7] · [3, 7, 4] is [2, 3, 5, 4], [3, 5, 7] · [1, 7, 4] is [3, 5, 4];</item>
    /// <item>a vector a [k] is a row [1, k] and b [k] a column [k, 1], and the added axis is dropped from the result:
    /// vector · matrix is [n], matrix · vector [m] (batched: [.., m]), vector · vector the scalar dot product [];
    /// transposing a vector changes nothing (as NumPy's <c>.T</c>).</item>
    /// </list>
    /// The gradient of a broadcast operand is summed over the axes it was broadcast along.
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b, bool transposeA = false, bool transposeB = false)
    {
        const string op = "MatMul";
        SameDevice(op, a, b);
        if (a.Rank == 0 || b.Rank == 0)
            throw new TensorException(op, $"needs vectors or matrices (rank >= 1), got {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)}");
        if (a.Rank > 1 && b.Rank > 1) return MatMulMatrices(a, b, transposeA, transposeB);
        var a2 = a.Rank == 1 ? Reshape(a, 1, a.Shape[0]) : a;
        var b2 = b.Rank == 1 ? Reshape(b, b.Shape[0], 1) : b;
        var y = MatMulMatrices(a2, b2, a.Rank > 1 && transposeA, b.Rank > 1 && transposeB);
        // Drop the row axis a vector a added (second to last) and the column axis a vector b added (last).
        var shape = y.Shape.Where((_, i) => !(a.Rank == 1 && i == y.Rank - 2) && !(b.Rank == 1 && i == y.Rank - 1)).ToArray();
        return Reshape(y, shape);
    }

    /// <summary><see cref="MatMul"/> of operands of rank &gt;= 2, the batch axes broadcast.</summary>
    private static Tensor MatMulMatrices(Tensor a, Tensor b, bool transposeA, bool transposeB)
    {
        const string op = "MatMul";
        int m = transposeA ? a.Shape[^1] : a.Shape[^2];
        int ka = transposeA ? a.Shape[^2] : a.Shape[^1];
        int kb = transposeB ? b.Shape[^1] : b.Shape[^2];
        int n = transposeB ? b.Shape[^2] : b.Shape[^1];
        var batchA = a.Shape[..^2];
        var batchB = b.Shape[..^2];
        string desc = $"{ShapeUtil.Format(a.Shape)}{(transposeA ? "ᵀ" : "")} · {ShapeUtil.Format(b.Shape)}{(transposeB ? "ᵀ" : "")}";
        if (ka != kb) throw new TensorException(op, $"inner dimensions differ: {desc} ({ka} vs {kb})");
        int[] batch;
        try
        {
            batch = ShapeUtil.Broadcast(op, batchA, batchB);
        }
        catch (TensorException)
        {
            throw new TensorException(op, $"batch shapes {ShapeUtil.Format(batchA)} and {ShapeUtil.Format(batchB)} do not broadcast: {desc}");
        }
        var y = NewLike(a, [.. batch, m, n]);
        BatchedGemm(a, b, y, batch, transposeA, transposeB, m, n, ka);
        return Autograd.Record(y, op, [a, b], g =>
        {
            // C = op(A) op(B): dA and dB by the four transpose cases; SumTo sums a broadcast operand's gradient over
            // the batch axes it was broadcast along.
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

    /// <summary>
    /// y[i] = op(a[i]) op(b[i]) over the broadcast batch index i, y contiguous. The batch axes are coalesced under the
    /// two operands' (broadcast) matrix strides; the innermost remaining axis is one batched GEMM with constant batch
    /// strides, the outer ones a loop of such launches (one launch when one operand is shared or both are batched alike).
    /// </summary>
    private static void BatchedGemm(Tensor a, Tensor b, Tensor y, int[] batch, bool transposeA, bool transposeB, int m, int n, int k)
    {
        long count = ShapeUtil.Count(batch);
        if (count == 0 || m == 0 || n == 0) return;
        long aSize = (long)m * k, bSize = (long)k * n, cSize = (long)m * n;
        var aStrides = ShapeUtil.BroadcastStrides(a.Shape[..^2], batch).Select(s => s * aSize).ToArray();
        var bStrides = ShapeUtil.BroadcastStrides(b.Shape[..^2], batch).Select(s => s * bSize).ToArray();
        var layout = Kernels.Elementwise.StridedLayout.Coalesce(batch, aStrides, bStrides);
        long inner = layout.Shape[^1];
        for (long row = 0; row < count / inner; row++)
        {
            layout.Offsets(row, out long aOffset, out long bOffset);
            a.Backend.Gemm(transposeA, transposeB, (int)inner, m, n, k, 1.0,
                a.Buffer, aOffset, layout.StridesA[^1], b.Buffer, bOffset, layout.StridesB[^1],
                0.0, y.Buffer, row * inner * cSize, cSize);
        }
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
