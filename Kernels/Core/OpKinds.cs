namespace DiffusionCore.Kernels;

/// <summary>Elementwise functions of one argument.</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    Neg,
    /// <summary>e^x</summary>
    Exp,
    /// <summary>ln x</summary>
    Log,
    /// <summary>sqrt x</summary>
    Sqrt,
    /// <summary>1 / sqrt x</summary>
    Rsqrt,
    /// <summary>x^2</summary>
    Square,
    /// <summary>|x|</summary>
    Abs,
    /// <summary>tanh x</summary>
    Tanh,
    /// <summary>1 / (1 + e^-x)</summary>
    Sigmoid,
    /// <summary>x * sigmoid(x)</summary>
    Silu,
    /// <summary>ln(1 + e^x), computed without overflow</summary>
    Softplus,
    /// <summary>sign(x) in {-1, 0, 1}</summary>
    Sign,
    /// <summary>1 where x &gt; 0, else 0 (the derivative of ReLU)</summary>
    Step,
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>1 / x</summary>
    Reciprocal,
    /// <summary>sin x</summary>
    Sin,
    /// <summary>cos x</summary>
    Cos,
}

/// <summary>Elementwise functions of two arguments, broadcast by strides.</summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    Add,
    /// <summary>a - b</summary>
    Sub,
    /// <summary>a * b</summary>
    Mul,
    /// <summary>a / b</summary>
    Div,
    /// <summary>max(a, b)</summary>
    Max,
    /// <summary>min(a, b)</summary>
    Min,
    /// <summary>1 where a &gt; b, else 0</summary>
    Greater,
    /// <summary>1 where a &gt;= b, else 0</summary>
    GreaterEqual,
    /// <summary>1 where a == b, else 0</summary>
    Equal,
}

/// <summary>Reductions over one axis.</summary>
public enum ReduceOp
{
    /// <summary>Sum of the elements.</summary>
    Sum,
    /// <summary>Largest element.</summary>
    Max,
}
