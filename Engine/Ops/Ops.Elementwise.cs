using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

/// <summary>
/// The functional ops users call. Each op is a forward built on one or a few backend kernels plus a
/// backward rule written with differentiable ops (so gradients of gradients work).
/// </summary>
public static partial class Ops
{
    private static Tensor NewLike(Tensor x, int[]? shape = null) => Tensor.Empty(shape ?? x.Shape, x.DType, x.Device);

    private static void SameDevice(string op, Tensor a, Tensor b)
    {
        if (a.DType != b.DType) throw new TensorException(op, $"dtypes differ: {a.DType} {ShapeUtil.Format(a.Shape)} and {b.DType} {ShapeUtil.Format(b.Shape)}");
        if (!ReferenceEquals(a.Device, b.Device)) throw new TensorException(op, $"tensors on different devices: {a.Device} and {b.Device}");
    }

    private static Tensor UnaryKernel(UnaryOp op, Tensor x)
    {
        var y = NewLike(x);
        x.Backend.Unary(op, x.Buffer, y.Buffer, x.Count);
        return y;
    }

    private static Tensor Unary(string name, UnaryOp op, Tensor x, Func<Tensor, Tensor, Tensor> grad)
    {
        var y = UnaryKernel(op, x);
        return Autograd.Record(y, name, [x], g => [grad(g, y)]);
    }

    /// <summary>-x</summary>
    public static Tensor Neg(Tensor x) => Unary("Neg", UnaryOp.Neg, x, (g, _) => Neg(g));

    /// <summary>e^x; d/dx = e^x.</summary>
    public static Tensor Exp(Tensor x) => Unary("Exp", UnaryOp.Exp, x, (g, y) => Mul(g, y));

    /// <summary>ln x; d/dx = 1/x.</summary>
    public static Tensor Log(Tensor x) => Unary("Log", UnaryOp.Log, x, (g, _) => Div(g, x));

    /// <summary>sqrt x; d/dx = 1/(2 sqrt x).</summary>
    public static Tensor Sqrt(Tensor x) => Unary("Sqrt", UnaryOp.Sqrt, x, (g, y) => Div(Scale(g, 0.5), y));

    /// <summary>1/sqrt x; d/dx = -1/2 x^(-3/2) = -y^3/2.</summary>
    public static Tensor Rsqrt(Tensor x) => Unary("Rsqrt", UnaryOp.Rsqrt, x, (g, y) => Mul(g, Scale(Mul(y, Square(y)), -0.5)));

    /// <summary>x^2; d/dx = 2x.</summary>
    public static Tensor Square(Tensor x) => Unary("Square", UnaryOp.Square, x, (g, _) => Mul(g, Scale(x, 2.0)));

    /// <summary>|x|; d/dx = sign x (0 at 0).</summary>
    public static Tensor Abs(Tensor x) => Unary("Abs", UnaryOp.Abs, x, (g, _) => Mul(g, Sign(x)));

    /// <summary>tanh x; d/dx = 1 - tanh^2 x.</summary>
    public static Tensor Tanh(Tensor x) => Unary("Tanh", UnaryOp.Tanh, x, (g, y) => Mul(g, AddScalar(Neg(Square(y)), 1.0)));

    /// <summary>sigmoid x; d/dx = s (1 - s).</summary>
    public static Tensor Sigmoid(Tensor x) => Unary("Sigmoid", UnaryOp.Sigmoid, x, (g, y) => Mul(g, Mul(y, AddScalar(Neg(y), 1.0))));

    /// <summary>SiLU x = x sigmoid x; d/dx = s (1 + x (1 - s)).</summary>
    public static Tensor Silu(Tensor x) => Unary("Silu", UnaryOp.Silu, x, (g, _) =>
    {
        var s = Sigmoid(x);
        return Mul(g, Mul(s, AddScalar(Mul(x, AddScalar(Neg(s), 1.0)), 1.0)));
    });

    /// <summary>softplus x = ln(1 + e^x); d/dx = sigmoid x.</summary>
    public static Tensor Softplus(Tensor x) => Unary("Softplus", UnaryOp.Softplus, x, (g, _) => Mul(g, Sigmoid(x)));

    /// <summary>max(x, 0); d/dx = 1 where x &gt; 0.</summary>
    public static Tensor Relu(Tensor x) => Unary("Relu", UnaryOp.Relu, x, (g, _) => Mul(g, UnaryKernel(UnaryOp.Step, x)));

    /// <summary>sin x; d/dx = cos x.</summary>
    public static Tensor Sin(Tensor x) => Unary("Sin", UnaryOp.Sin, x, (g, _) => Mul(g, Cos(x)));

    /// <summary>cos x; d/dx = -sin x.</summary>
    public static Tensor Cos(Tensor x) => Unary("Cos", UnaryOp.Cos, x, (g, _) => Neg(Mul(g, Sin(x))));

    /// <summary>1/x; d/dx = -1/x^2.</summary>
    public static Tensor Reciprocal(Tensor x) => Unary("Reciprocal", UnaryOp.Reciprocal, x, (g, y) => Neg(Mul(g, Square(y))));

    /// <summary>sign x in {-1, 0, 1}; not differentiable (no gradient flows).</summary>
    public static Tensor Sign(Tensor x) => UnaryKernel(UnaryOp.Sign, x);

    /// <summary>scale * x + shift.</summary>
    public static Tensor Affine(Tensor x, double scale, double shift)
    {
        var y = NewLike(x);
        x.Backend.Affine(x.Buffer, y.Buffer, x.Count, scale, shift);
        return Autograd.Record(y, "Affine", [x], g => [Scale(g, scale)]);
    }

    /// <summary>s * x.</summary>
    public static Tensor Scale(Tensor x, double s) => Affine(x, s, 0.0);

    /// <summary>x + c.</summary>
    public static Tensor AddScalar(Tensor x, double c) => Affine(x, 1.0, c);

    /// <summary>x^p for a constant p; d/dx = p x^(p-1).</summary>
    public static Tensor Pow(Tensor x, double p)
    {
        var y = NewLike(x);
        x.Backend.PowScalar(x.Buffer, y.Buffer, x.Count, p);
        return Autograd.Record(y, "Pow", [x], g => [Mul(g, Scale(Pow(x, p - 1.0), p))]);
    }

    /// <summary>min(max(x, lo), hi); the gradient passes where lo &lt;= x &lt;= hi.</summary>
    public static Tensor Clamp(Tensor x, double lo, double hi)
    {
        if (lo > hi) throw new TensorException("Clamp", $"lo {lo} > hi {hi}");
        var y = NewLike(x);
        x.Backend.Clamp(x.Buffer, y.Buffer, x.Count, lo, hi);
        return Autograd.Record(y, "Clamp", [x], g =>
        {
            var inside = Mul(Compare(BinaryOp.GreaterEqual, x, Tensor.Scalar(lo, x.DType, x.Device)), Compare(BinaryOp.GreaterEqual, Tensor.Scalar(hi, x.DType, x.Device), x));
            return [Mul(g, inside)];
        });
    }

    /// <summary>The same values in another dtype (a copy); the gradient is cast back.</summary>
    public static Tensor Cast(Tensor x, DType dtype)
    {
        var y = Tensor.Empty(x.Shape, dtype, x.Device);
        if (dtype == x.DType) x.Backend.Affine(x.Buffer, y.Buffer, x.Count, 1.0, 0.0);
        else if (dtype == DType.Float64)
        {
            var host = new double[x.Count];
            x.Backend.Download<double>(x.Buffer, host);
            y.Backend.Upload<double>(y.Buffer, host);
        }
        else
        {
            var host = new float[x.Count];
            x.Backend.Download<float>(x.Buffer, host);
            y.Backend.Upload<float>(y.Buffer, host);
        }
        var from = x.DType;
        return Autograd.Record(y, "Cast", [x], g => [Cast(g, from)]);
    }
}
