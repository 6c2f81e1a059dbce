using NUnit.Framework;
using DiffusionCore.Engine;

namespace DiffusionCore.Tests.Engine;

/// <summary>Gradient checks (float64, central differences) for every differentiable op, first and second order.</summary>
[TestFixture]
public class OpGradientTests
{
    public sealed record Case(string Name, int[][] Shapes, Func<Tensor[], Tensor> F, Func<double, double>? Domain = null, bool Linear = false)
    {
        public override string ToString() => Name;
    }

    private static double Positive(double u) => 0.5 + Math.Abs(u) * 1.5;
    private static double AwayFromZero(double u) => u < 0 ? u - 0.3 : u + 0.3;

    public static IEnumerable<Case> Cases()
    {
        int[] m = [3, 4];
        yield return new("Add broadcast", [[3, 4], [4]], x => x[0] + x[1], Linear: true);
        yield return new("Add broadcast both", [[3, 1], [1, 4]], x => x[0] + x[1], Linear: true);
        yield return new("Sub broadcast", [[2, 3, 4], [3, 1]], x => x[0] - x[1], Linear: true);
        yield return new("Mul broadcast", [[2, 3, 4], [1, 4]], x => x[0] * x[1]);
        yield return new("Div", [m, m], x => x[0] / x[1], AwayFromZero);
        yield return new("Div broadcast scalar", [m, []], x => x[0] / x[1], AwayFromZero);
        yield return new("Maximum", [m, m], x => Ops.Maximum(x[0], x[1]) * x[0]);
        yield return new("Minimum", [m, m], x => Ops.Minimum(x[0], x[1]) * x[1]);
        yield return new("Neg", [m], x => -x[0], Linear: true);
        yield return new("Exp", [m], x => Ops.Exp(x[0]));
        yield return new("Log", [m], x => Ops.Log(x[0]), Positive);
        yield return new("Sqrt", [m], x => Ops.Sqrt(x[0]), Positive);
        yield return new("Rsqrt", [m], x => Ops.Rsqrt(x[0]), Positive);
        yield return new("Square", [m], x => Ops.Square(x[0]));
        yield return new("Abs", [m], x => Ops.Abs(x[0]) * x[0], AwayFromZero);
        yield return new("Tanh", [m], x => Ops.Tanh(x[0] * 2.0));
        yield return new("Sigmoid", [m], x => Ops.Sigmoid(x[0] * 3.0));
        yield return new("Silu", [m], x => Ops.Silu(x[0] * 3.0));
        yield return new("Softplus", [m], x => Ops.Softplus(x[0] * 3.0));
        yield return new("Relu", [m], x => Ops.Relu(x[0]) * x[0], AwayFromZero);
        yield return new("Sin", [m], x => Ops.Sin(x[0] * 2.0));
        yield return new("Cos", [m], x => Ops.Cos(x[0] * 2.0));
        yield return new("Reciprocal", [m], x => Ops.Reciprocal(x[0]), AwayFromZero);
        yield return new("Pow 3", [m], x => Ops.Pow(x[0], 3.0));
        yield return new("Pow 1.5", [m], x => Ops.Pow(x[0], 1.5), Positive);
        yield return new("Affine", [m], x => Ops.Affine(x[0], -1.5, 0.25), Linear: true);
        yield return new("Clamp", [m], x => Ops.Clamp(x[0], -0.5, 0.5) * x[0], u => Math.Abs(Math.Abs(u) - 0.5) < 0.05 ? u + 0.1 : u);
        yield return new("Where", [m, m, m], x => Ops.Where(Ops.Greater(x[0], Tensor.Zeros([], DiffusionCore.Kernels.DType.Float64)), x[1] * x[1], x[2] * x[0]));
        yield return new("Sum all", [m], x => Ops.Sum(x[0] * x[0]));
        yield return new("Sum axes keepdim", [[2, 3, 4]], x => Ops.Sum(x[0] * x[0], [0, 2], keepDim: true));
        yield return new("Sum axis", [[2, 3, 4]], x => Ops.Sum(x[0] * x[0], [1]));
        yield return new("Mean axis", [[2, 3, 4]], x => Ops.Mean(Ops.Exp(x[0]), [-1]));
        yield return new("Max axis", [[3, 5]], x => Ops.Max(x[0] * x[0], [1]) );
        yield return new("Max all", [[3, 5]], x => Ops.Max(Ops.Exp(x[0])));
        yield return new("LogSumExp", [[3, 5]], x => Ops.LogSumExp(x[0] * 3.0, [1]));
        yield return new("LogSumExp keepdim", [[3, 5]], x => Ops.LogSumExp(x[0], [0], keepDim: true));
        yield return new("Softmax", [[3, 5]], x => Ops.Softmax(x[0] * 2.0));
        yield return new("Softmax axis 0", [[3, 5]], x => Ops.Softmax(x[0], 0));
        yield return new("LogSoftmax", [[3, 5]], x => Ops.LogSoftmax(x[0] * 2.0));
        yield return new("CrossEntropy", [[4, 3]], x => Ops.CrossEntropy(x[0] * 2.0, [0, 2, 1, 2]));
        yield return new("MseLoss", [m, m], x => Ops.MseLoss(x[0], x[1]));
        yield return new("MatMul", [[3, 4], [4, 5]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul A^T", [[4, 3], [4, 5]], x => Ops.MatMul(x[0], x[1], transposeA: true));
        yield return new("MatMul B^T", [[3, 4], [5, 4]], x => Ops.MatMul(x[0], x[1], transposeB: true));
        yield return new("MatMul A^T B^T", [[4, 3], [5, 4]], x => Ops.MatMul(x[0], x[1], true, true));
        yield return new("MatMul batched", [[2, 3, 4], [2, 4, 5]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul batched x shared", [[2, 3, 4], [4, 5]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul shared x batched", [[3, 4], [2, 4, 5]], x => Ops.MatMul(x[0], x[1], false, false));
        // NumPy batch broadcasting: the gradient of a broadcast operand sums over the axes it was broadcast along.
        yield return new("MatMul broadcast [2,1,3,4] x [3,4,2]", [[2, 1, 3, 4], [3, 4, 2]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul broadcast [3,2,4] x [1,4,5]", [[3, 2, 4], [1, 4, 5]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul broadcast [2,1,4,3]^T x [3,2,4]^T", [[2, 1, 4, 3], [3, 2, 4]], x => Ops.MatMul(x[0], x[1], true, true));
        yield return new("MatMul broadcast [1,2,3,4] x [2,1,4,2]", [[1, 2, 3, 4], [2, 1, 4, 2]], x => Ops.MatMul(x[0], x[1]));
        // Rank-1 operands as torch.matmul: a vector a is a row, a vector b a column, the added axis dropped.
        yield return new("MatMul vector x matrix", [[4], [4, 5]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul matrix x vector", [[3, 4], [4]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul vector x vector", [[4], [4]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul vector x batched", [[4], [2, 4, 3]], x => Ops.MatMul(x[0], x[1]));
        yield return new("MatMul batched^T x vector", [[2, 4, 3], [4]], x => Ops.MatMul(x[0], x[1], transposeA: true));
        yield return new("Linear", [[2, 3, 4], [5, 4], [5]], x => Ops.Linear(x[0], x[1], x[2]));
        yield return new("Reshape", [[2, 6]], x => Ops.Reshape(x[0], 3, -1) * Ops.Reshape(x[0], 3, 4));
        yield return new("Permute", [[2, 3, 4]], x => Ops.Permute(x[0], 2, 0, 1) * Ops.Permute(x[0], 2, 0, 1));
        yield return new("Transpose", [[3, 4]], x => Ops.MatMul(Ops.Transpose(x[0], 0, 1), x[0]));
        yield return new("Slice", [[4, 5]], x => Ops.Slice(x[0], 1, 1, 3) * Ops.Slice(x[0], 1, 2, 3));
        yield return new("Pad", [[2, 3]], x => Ops.Pad(x[0] * x[0], [1, 0], [0, 2], 0.5));
        yield return new("Concat", [[2, 3], [2, 1]], x => Ops.Concat([x[0] * x[0], x[1], x[0]], 1));
        yield return new("Split", [[2, 5]], x => { var p = Ops.Split(x[0], [2, 3], 1); return Ops.Concat([p[1] * p[1], p[0]], 1); });
        yield return new("Stack", [[2, 3], [2, 3]], x => Ops.Stack([x[0] * x[1], x[1]], 0));
        yield return new("Expand", [[3, 1]], x => Ops.Expand(x[0], [2, 3, 4]) * Ops.Expand(x[0], [2, 3, 4]));
    }

    [TestCaseSource(nameof(Cases))]
    public void FirstOrderMatchesCentralDifferences(Case c)
    {
        var x = GradCheck.MakeInputs(c.Name.Length, c.Shapes, c.Domain);
        // Smooth functions of O(1) inputs in double: the central difference is good to ~1e-9 here.
        GradCheck.FirstOrder(c.F, x, tolerance: 1e-6);
    }

    public static IEnumerable<Case> NonLinearCases() => Cases().Where(c => !c.Linear);

    [TestCaseSource(nameof(NonLinearCases))]
    public void SecondOrderMatchesCentralDifferences(Case c)
    {
        var x = GradCheck.MakeInputs(c.Name.Length + 7, c.Shapes, c.Domain);
        // Differences of first derivatives computed by autograd: one more O(h^2) layer of error.
        GradCheck.SecondOrder(c.F, x, tolerance: 1e-5);
    }
}
