using System.Numerics;

namespace DiffusionCore.Kernels.Elementwise;

// The elementwise functions of the ILGPU kernels, as structs over the element type (float or double).
// One generic kernel per arity (ElementwiseIlgpu.Map/Zip/Zip3, ReduceIlgpu) is instantiated per op struct, so
// ILGPU inlines Apply and each instantiation compiles to a straight-line kernel: no lambdas, no delegates, no
// switch on an op code inside a kernel (the pattern of ILGPU's IScanReduceOperation and of TensorPrimitives'
// operator structs). Parameters of an op (a scale, an exponent) are fields, passed by value with the launch.
// Each definition matches the scalar meaning of the CPU backend's op (ElementwiseCpu), NaN handling included.

/// <summary>A function of one element.</summary>
public interface IUnaryOp<T> where T : unmanaged
{
    /// <summary>The function's value at <paramref name="x"/>.</summary>
    T Apply(T x);
}

/// <summary>A function of two elements.</summary>
public interface IBinaryOp<T> where T : unmanaged
{
    /// <summary>The function's value at (<paramref name="a"/>, <paramref name="b"/>).</summary>
    T Apply(T a, T b);
}

/// <summary>A function of three elements.</summary>
public interface ITernaryOp<T> where T : unmanaged
{
    /// <summary>The function's value at (<paramref name="a"/>, <paramref name="b"/>, <paramref name="c"/>).</summary>
    T Apply(T a, T b, T c);
}

/// <summary>An associative reduction with its identity.</summary>
public interface IReduceOp<T> where T : unmanaged
{
    /// <summary>The identity element (the result over an empty range).</summary>
    T Identity { get; }

    /// <summary>Combines two partial results.</summary>
    T Combine(T a, T b);
}

/// <summary>-x</summary>
public struct NegOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => -x;
}

/// <summary>e^x</summary>
public struct ExpOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Exp(x);
}

/// <summary>ln x</summary>
public struct LogOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Log(x);
}

/// <summary>sqrt x</summary>
public struct SqrtOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Sqrt(x);
}

/// <summary>1 / sqrt x</summary>
public struct RsqrtOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.One / T.Sqrt(x);
}

/// <summary>x^2</summary>
public struct SquareOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => x * x;
}

/// <summary>|x|</summary>
public struct AbsOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Abs(x);
}

/// <summary>tanh x</summary>
public struct TanhOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Tanh(x);
}

/// <summary>1 / (1 + e^-x)</summary>
public struct SigmoidOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.One / (T.One + T.Exp(-x));
}

/// <summary>x / (1 + e^-x), SiLU (Elfwing et al. 2018)</summary>
public struct SiluOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => x / (T.One + T.Exp(-x));
}

/// <summary>ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), which cannot overflow.</summary>
public struct SoftplusOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.IsNaN(x) ? x : (x > T.Zero ? x : T.Zero) + T.LogP1(T.Exp(-T.Abs(x)));
}

/// <summary>sign(x) in {-1, 0, 1}; NaN stays NaN.</summary>
public struct SignOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => x > T.Zero ? T.One : x < T.Zero ? -T.One : T.IsNaN(x) ? x : T.Zero;
}

/// <summary>1 where x &gt; 0, else 0.</summary>
public struct StepOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => x > T.Zero ? T.One : T.Zero;
}

/// <summary>max(x, 0); NaN stays NaN (as TensorPrimitives.Max).</summary>
public struct ReluOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => x > T.Zero || T.IsNaN(x) ? x : T.Zero;
}

/// <summary>1 / x</summary>
public struct ReciprocalOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.One / x;
}

/// <summary>sin x</summary>
public struct SinOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Sin(x);
}

/// <summary>cos x</summary>
public struct CosOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => T.Cos(x);
}

/// <summary>x (a copy).</summary>
public struct IdentityOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T x) => x;
}

/// <summary>A constant, whatever x is (Fill).</summary>
public struct ConstantOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The value written.</summary>
    public T Value;

    /// <inheritdoc />
    public readonly T Apply(T x) => Value;
}

/// <summary>scale * x + shift</summary>
public struct AffineOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Multiplier.</summary>
    public T Scale;

    /// <summary>Offset added after the product.</summary>
    public T Shift;

    /// <inheritdoc />
    public readonly T Apply(T x) => Scale * x + Shift;
}

/// <summary>x ^ exponent</summary>
public struct PowOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>The exponent.</summary>
    public T Exponent;

    /// <inheritdoc />
    public readonly T Apply(T x) => T.Pow(x, Exponent);
}

/// <summary>min(max(x, lo), hi); NaN stays NaN (as TensorPrimitives.Max/Min).</summary>
public struct ClampOp<T> : IUnaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Lower bound.</summary>
    public T Lo;

    /// <summary>Upper bound.</summary>
    public T Hi;

    /// <inheritdoc />
    public readonly T Apply(T x) => T.IsNaN(x) ? x : x < Lo ? Lo : x > Hi ? Hi : x;
}

/// <summary>a + b</summary>
public struct AddOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a + b;
}

/// <summary>a - b</summary>
public struct SubOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a - b;
}

/// <summary>a * b</summary>
public struct MulOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a * b;
}

/// <summary>a / b</summary>
public struct DivOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a / b;
}

/// <summary>max(a, b), NaN when either is NaN. Also the Max reduction (identity -inf).</summary>
public struct MaxOp<T> : IBinaryOp<T>, IReduceOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Identity => T.NegativeInfinity;

    /// <inheritdoc />
    public readonly T Apply(T a, T b) => T.IsNaN(a) || T.IsNaN(b) ? T.NaN : a > b ? a : b;

    /// <inheritdoc />
    public readonly T Combine(T a, T b) => Apply(a, b);
}

/// <summary>min(a, b), NaN when either is NaN.</summary>
public struct MinOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => T.IsNaN(a) || T.IsNaN(b) ? T.NaN : a < b ? a : b;
}

/// <summary>1 where a &gt; b, else 0.</summary>
public struct GreaterOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a > b ? T.One : T.Zero;
}

/// <summary>1 where a &gt;= b, else 0.</summary>
public struct GreaterEqualOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a >= b ? T.One : T.Zero;
}

/// <summary>1 where a == b, else 0.</summary>
public struct EqualOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T a, T b) => a == b ? T.One : T.Zero;
}

/// <summary>alpha * a + beta * b (Axpby: EMA, optimizer and sampler updates with a = x, b = y).</summary>
public struct AxpbyOp<T> : IBinaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Weight of a.</summary>
    public T Alpha;

    /// <summary>Weight of b.</summary>
    public T Beta;

    /// <inheritdoc />
    public readonly T Apply(T a, T b) => Alpha * a + Beta * b;
}

/// <summary>a + b as a reduction (identity 0).</summary>
public struct SumOp<T> : IReduceOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Identity => T.Zero;

    /// <inheritdoc />
    public readonly T Combine(T a, T b) => a + b;
}

/// <summary>cond != 0 ? a : b</summary>
public struct WhereOp<T> : ITernaryOp<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <inheritdoc />
    public readonly T Apply(T cond, T a, T b) => cond != T.Zero ? a : b;
}
