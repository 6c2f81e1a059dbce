using System.Numerics;
using System.Numerics.Tensors;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Elementwise;

/// <summary>
/// Elementwise kernels of the CPU backend, generic over float and double. Contiguous runs go through
/// TensorPrimitives (SIMD); long runs are split over the cores.
/// </summary>
public static class ElementwiseCpu
{
    private const int Grain = 1 << 15;
    private const int Chunk = 4096;

    /// <summary>y = op(x) over the first <paramref name="count"/> elements (y may be x).</summary>
    public static void Unary<T>(UnaryOp op, T[] x, T[] y, long count) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, Grain, (s, e) =>
        {
            for (long c = s; c < e; c += Chunk)
            {
                int n = (int)Math.Min(Chunk, e - c);
                UnarySpan(op, x.AsSpan((int)c, n), y.AsSpan((int)c, n));
            }
        });

    private static void UnarySpan<T>(UnaryOp op, ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case UnaryOp.Neg: TensorPrimitives.Negate(x, y); break;
            case UnaryOp.Exp: TensorPrimitives.Exp(x, y); break;
            case UnaryOp.Log: TensorPrimitives.Log(x, y); break;
            case UnaryOp.Sqrt: TensorPrimitives.Sqrt(x, y); break;
            case UnaryOp.Rsqrt: TensorPrimitives.ReciprocalSqrt(x, y); break;
            case UnaryOp.Square: TensorPrimitives.Multiply(x, x, y); break;
            case UnaryOp.Abs: TensorPrimitives.Abs(x, y); break;
            case UnaryOp.Tanh: TensorPrimitives.Tanh(x, y); break;
            case UnaryOp.Sigmoid: TensorPrimitives.Sigmoid(x, y); break;
            case UnaryOp.Relu: TensorPrimitives.Max(x, T.Zero, y); break;
            case UnaryOp.Reciprocal: TensorPrimitives.Divide(T.One, x, y); break;
            case UnaryOp.Sin: TensorPrimitives.Sin(x, y); break;
            case UnaryOp.Cos: TensorPrimitives.Cos(x, y); break;
            case UnaryOp.Silu:
            {
                // y = x / (1 + e^-x); the chunk of x is consumed before y is written, so y may alias x.
                Span<T> t = stackalloc T[x.Length];
                TensorPrimitives.Negate(x, t);
                TensorPrimitives.Exp(t, t);
                TensorPrimitives.Add(t, T.One, t);
                TensorPrimitives.Divide(x, t, y);
                break;
            }
            case UnaryOp.Softplus:
                // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow for large |x|.
                for (int i = 0; i < x.Length; i++) y[i] = T.Max(x[i], T.Zero) + T.LogP1(T.Exp(-T.Abs(x[i])));
                break;
            case UnaryOp.Sign:
                for (int i = 0; i < x.Length; i++) y[i] = T.IsNaN(x[i]) ? x[i] : T.CreateTruncating(T.Sign(x[i]));
                break;
            case UnaryOp.Step:
                for (int i = 0; i < x.Length; i++) y[i] = x[i] > T.Zero ? T.One : T.Zero;
                break;
            default: throw new KernelException("Unary", $"unknown op {op}");
        }
    }

    /// <summary>y = scale * x + shift.</summary>
    public static void Affine<T>(T[] x, T[] y, long count, T scale, T shift) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, Grain, (s, e) =>
        {
            var ys = y.AsSpan((int)s, (int)(e - s));
            TensorPrimitives.Multiply(x.AsSpan((int)s, (int)(e - s)), scale, ys);
            if (shift != T.Zero) TensorPrimitives.Add(ys, shift, ys);
        });

    /// <summary>y = x ^ p.</summary>
    public static void Pow<T>(T[] x, T[] y, long count, T p) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, Grain, (s, e) =>
        {
            var xs = x.AsSpan((int)s, (int)(e - s));
            var ys = y.AsSpan((int)s, (int)(e - s));
            if (p == T.CreateTruncating(2)) TensorPrimitives.Multiply(xs, xs, ys);
            else if (p == T.One) xs.CopyTo(ys);
            else TensorPrimitives.Pow(xs, p, ys);
        });

    /// <summary>y = min(max(x, lo), hi).</summary>
    public static void Clamp<T>(T[] x, T[] y, long count, T lo, T hi) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, Grain, (s, e) =>
        {
            var ys = y.AsSpan((int)s, (int)(e - s));
            TensorPrimitives.Max(x.AsSpan((int)s, (int)(e - s)), lo, ys);
            TensorPrimitives.Min(ys, hi, ys);
        });

    /// <summary>y = cond != 0 ? a : b.</summary>
    public static void Where<T>(T[] cond, T[] a, T[] b, T[] y, long count) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, Grain, (s, e) =>
        {
            for (long i = s; i < e; i++) y[i] = cond[i] != T.Zero ? a[i] : b[i];
        });

    /// <summary>
    /// y = op(a, b) over <paramref name="shape"/> with broadcasting strides; y contiguous.
    /// Axes are first coalesced so the innermost loop is as long as possible.
    /// </summary>
    public static void Binary<T>(BinaryOp op, T[] a, ReadOnlySpan<long> aStrides, T[] b, ReadOnlySpan<long> bStrides, T[] y, ReadOnlySpan<int> shape)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var layout = StridedLayout.Coalesce(shape, aStrides, bStrides);
        long inner = layout.Shape[^1];
        long aInner = layout.StridesA[^1], bInner = layout.StridesB[^1];
        long rows = layout.Count / Math.Max(1, inner);
        if (layout.Count == 0) return;
        CpuParallel.For(rows, Math.Max(1, Grain / Math.Max(1, inner)), (s, e) =>
        {
            for (long r = s; r < e; r++)
            {
                layout.Offsets(r, out long ao, out long bo);
                var ys = y.AsSpan((int)(r * inner), (int)inner);
                BinaryRow(op, a, ao, aInner, b, bo, bInner, ys);
            }
        });
    }

    private static void BinaryRow<T>(BinaryOp op, T[] a, long ao, long aStride, T[] b, long bo, long bStride, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = y.Length;
        bool isArith = op is BinaryOp.Add or BinaryOp.Sub or BinaryOp.Mul or BinaryOp.Div or BinaryOp.Max or BinaryOp.Min;
        if (isArith && aStride == 1 && bStride == 1)
        {
            var xa = a.AsSpan((int)ao, n); var xb = b.AsSpan((int)bo, n);
            switch (op)
            {
                case BinaryOp.Add: TensorPrimitives.Add(xa, xb, y); return;
                case BinaryOp.Sub: TensorPrimitives.Subtract(xa, xb, y); return;
                case BinaryOp.Mul: TensorPrimitives.Multiply(xa, xb, y); return;
                case BinaryOp.Div: TensorPrimitives.Divide(xa, xb, y); return;
                case BinaryOp.Max: TensorPrimitives.Max(xa, xb, y); return;
                case BinaryOp.Min: TensorPrimitives.Min(xa, xb, y); return;
            }
        }
        if (isArith && aStride == 1 && bStride == 0)
        {
            var xa = a.AsSpan((int)ao, n); T sb = b[bo];
            switch (op)
            {
                case BinaryOp.Add: TensorPrimitives.Add(xa, sb, y); return;
                case BinaryOp.Sub: TensorPrimitives.Subtract(xa, sb, y); return;
                case BinaryOp.Mul: TensorPrimitives.Multiply(xa, sb, y); return;
                case BinaryOp.Div: TensorPrimitives.Divide(xa, sb, y); return;
                case BinaryOp.Max: TensorPrimitives.Max(xa, sb, y); return;
                case BinaryOp.Min: TensorPrimitives.Min(xa, sb, y); return;
            }
        }
        if (isArith && aStride == 0 && bStride == 1)
        {
            T sa = a[ao]; var xb = b.AsSpan((int)bo, n);
            switch (op)
            {
                case BinaryOp.Add: TensorPrimitives.Add(xb, sa, y); return;
                case BinaryOp.Sub: TensorPrimitives.Subtract(sa, xb, y); return;
                case BinaryOp.Mul: TensorPrimitives.Multiply(xb, sa, y); return;
                case BinaryOp.Div: TensorPrimitives.Divide(sa, xb, y); return;
                case BinaryOp.Max: TensorPrimitives.Max(xb, sa, y); return;
                case BinaryOp.Min: TensorPrimitives.Min(xb, sa, y); return;
            }
        }
        for (int i = 0; i < n; i++) y[i] = Apply(op, a[ao + i * aStride], b[bo + i * bStride]);
    }

    /// <summary>The scalar definition of each binary op (the reference the SIMD paths must match).</summary>
    public static T Apply<T>(BinaryOp op, T x, T z) where T : unmanaged, IFloatingPointIeee754<T> => op switch
    {
        BinaryOp.Add => x + z,
        BinaryOp.Sub => x - z,
        BinaryOp.Mul => x * z,
        BinaryOp.Div => x / z,
        BinaryOp.Max => T.IsNaN(x) || T.IsNaN(z) ? T.NaN : T.Max(x, z),
        BinaryOp.Min => T.IsNaN(x) || T.IsNaN(z) ? T.NaN : T.Min(x, z),
        BinaryOp.Greater => x > z ? T.One : T.Zero,
        BinaryOp.GreaterEqual => x >= z ? T.One : T.Zero,
        BinaryOp.Equal => x == z ? T.One : T.Zero,
        _ => throw new KernelException("Binary", $"unknown op {op}"),
    };
}
