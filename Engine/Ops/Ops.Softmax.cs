using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// Softmax (or log-softmax) of each row of x over its last axis, outside the graph: the fused kernel where the
    /// backend has <see cref="ISoftmaxKernels"/>, else the same stable algorithm from primitives, with m the row max,
    /// softmax = exp(x - m) / Σ exp(x - m) and log-softmax = (x - m) - log Σ exp(x - m).
    /// </summary>
    private static Tensor SoftmaxLastAxis(Tensor x, bool log)
    {
        int cols = x.Rank == 0 ? 1 : x.Shape[^1];
        int rows = cols == 0 ? 0 : (int)(x.Count / cols);
        if (x.Backend.GetCapability<ISoftmaxKernels>() is { } kernels)
        {
            var y = NewLike(x);
            kernels.Softmax(x.Buffer, y.Buffer, rows, cols, log);
            return y;
        }
        if (x.Count == 0) return NewLike(x);
        using var _ = Autograd.NoGrad();
        using var scope = TensorScope.Begin();
        var rowsView = Reshape(x, rows, cols);
        var shifted = Sub(rowsView, Max(rowsView, [1], keepDim: true));
        var exp = Exp(shifted);
        var sum = Sum(exp, [1], keepDim: true);
        var result = log ? Sub(shifted, Log(sum)) : Div(exp, sum);
        return scope.Keep(ReshapeStorage(result, x.Shape));
    }

    private static Tensor MoveAxisLast(Tensor x, int axis, out int[]? back)
    {
        back = null;
        if (axis == x.Rank - 1) return x;
        var perm = Enumerable.Range(0, x.Rank).Where(i => i != axis).Append(axis).ToArray();
        back = new int[perm.Length];
        for (int i = 0; i < perm.Length; i++) back[perm[i]] = i;
        return Permute(x, perm);
    }

    /// <summary>softmax along <paramref name="axis"/>; backward y (g - sum(g y)).</summary>
    public static Tensor Softmax(Tensor x, int axis = -1)
    {
        int a = ShapeUtil.Axis("Softmax", axis, x.Rank);
        var xl = MoveAxisLast(x, a, out var back);
        var y = SoftmaxLastAxis(xl, log: false);
        y = Autograd.Record(y, "Softmax", [xl], g => [Mul(y, Sub(g, Sum(Mul(g, y), [-1], keepDim: true)))]);
        return back is null ? y : Permute(y, back);
    }

    /// <summary>log softmax along <paramref name="axis"/>; backward g - softmax · sum(g).</summary>
    public static Tensor LogSoftmax(Tensor x, int axis = -1)
    {
        int a = ShapeUtil.Axis("LogSoftmax", axis, x.Rank);
        var xl = MoveAxisLast(x, a, out var back);
        var y = SoftmaxLastAxis(xl, log: true);
        y = Autograd.Record(y, "LogSoftmax", [xl], g => [Sub(g, Mul(Exp(y), Sum(g, [-1], keepDim: true)))]);
        return back is null ? y : Permute(y, back);
    }

    /// <summary>Mean cross-entropy of logits [N, C] against integer class labels.</summary>
    public static Tensor CrossEntropy(Tensor logits, int[] labels)
    {
        if (logits.Rank != 2 || logits.Shape[0] != labels.Length)
            throw new TensorException("CrossEntropy", $"logits {ShapeUtil.Format(logits.Shape)} need shape [{labels.Length}, classes] for {labels.Length} labels");
        int c = logits.Shape[1];
        var oneHot = new double[labels.Length * c];
        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] < 0 || labels[i] >= c) throw new TensorException("CrossEntropy", $"label {labels[i]} at row {i} outside [0, {c})");
            oneHot[i * c + labels[i]] = 1.0;
        }
        var target = Tensor.FromSpan<double>(oneHot, logits.Shape, logits.DType, logits.Device);
        return Scale(Sum(Mul(target, LogSoftmax(logits, -1))), -1.0 / labels.Length);
    }

    /// <summary>Mean squared error mean((a - b)^2) over all elements.</summary>
    public static Tensor MseLoss(Tensor a, Tensor b)
    {
        if (!ShapeUtil.Same(a.Shape, b.Shape)) throw new TensorException("MseLoss", $"shapes {ShapeUtil.Format(a.Shape)} and {ShapeUtil.Format(b.Shape)} differ");
        return Mean(Square(Sub(a, b)));
    }
}
