namespace DiffusionCore.Engine;

public sealed partial class Tensor
{
    /// <summary>a + b (broadcasting).</summary>
    public static Tensor operator +(Tensor a, Tensor b) => Ops.Add(a, b);

    /// <summary>a - b (broadcasting).</summary>
    public static Tensor operator -(Tensor a, Tensor b) => Ops.Sub(a, b);

    /// <summary>a * b elementwise (broadcasting).</summary>
    public static Tensor operator *(Tensor a, Tensor b) => Ops.Mul(a, b);

    /// <summary>a / b elementwise (broadcasting).</summary>
    public static Tensor operator /(Tensor a, Tensor b) => Ops.Div(a, b);

    /// <summary>-a</summary>
    public static Tensor operator -(Tensor a) => Ops.Neg(a);

    /// <summary>a + c</summary>
    public static Tensor operator +(Tensor a, double c) => Ops.AddScalar(a, c);

    /// <summary>c + a</summary>
    public static Tensor operator +(double c, Tensor a) => Ops.AddScalar(a, c);

    /// <summary>a - c</summary>
    public static Tensor operator -(Tensor a, double c) => Ops.AddScalar(a, -c);

    /// <summary>c - a</summary>
    public static Tensor operator -(double c, Tensor a) => Ops.Affine(a, -1.0, c);

    /// <summary>a * c</summary>
    public static Tensor operator *(Tensor a, double c) => Ops.Scale(a, c);

    /// <summary>c * a</summary>
    public static Tensor operator *(double c, Tensor a) => Ops.Scale(a, c);

    /// <summary>a / c</summary>
    public static Tensor operator /(Tensor a, double c) => Ops.Scale(a, 1.0 / c);

    /// <summary>Same elements, new shape (one extent may be -1); shares storage.</summary>
    public Tensor Reshape(params int[] shape) => Ops.Reshape(this, shape);

    /// <summary>Axes reordered by <paramref name="perm"/>.</summary>
    public Tensor Permute(params int[] perm) => Ops.Permute(this, perm);

    /// <summary>Two axes swapped.</summary>
    public Tensor Transpose(int axis0, int axis1) => Ops.Transpose(this, axis0, axis1);

    /// <summary>Sum over the given axes (all when none).</summary>
    public Tensor Sum(int[]? axes = null, bool keepDim = false) => Ops.Sum(this, axes, keepDim);

    /// <summary>Mean over the given axes (all when none).</summary>
    public Tensor Mean(int[]? axes = null, bool keepDim = false) => Ops.Mean(this, axes, keepDim);

    /// <summary>e^x</summary>
    public Tensor Exp() => Ops.Exp(this);

    /// <summary>ln x</summary>
    public Tensor Log() => Ops.Log(this);

    /// <summary>x^2</summary>
    public Tensor Square() => Ops.Square(this);

    /// <summary>sqrt x</summary>
    public Tensor Sqrt() => Ops.Sqrt(this);

    /// <summary>
    /// Backpropagates from this tensor: accumulates d this / d leaf into the Grad of every leaf that
    /// requires grad. A gradient must be given unless this tensor has one element.
    /// </summary>
    public void Backward(Tensor? gradient = null, bool createGraph = false) => Autograd.Backward(this, gradient, createGraph);
}
