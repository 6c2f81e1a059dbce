using System.Numerics;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// Conv2d forward and backward as the plain nested loops of the definition, generic over the element type:
/// y[n, co, oh, ow] = bias[co] + Σ_{c, kh, kw} w[co, c, kh, kw] x[n, c, oh S - pad + kh, ow S - pad + kw]
/// (zero outside the image). The float64 path of <see cref="Cpu.CpuBackend"/> (gradient checks at tiny sizes)
/// runs here; float32 work goes to <see cref="Conv2dCpu"/>. Layouts as in <see cref="Conv2dShape"/>.
/// Outputs must not overlap inputs.
/// </summary>
public static class Conv2dNaive
{
    /// <summary>y = conv2d(x, w) + bias. <paramref name="bias"/> is [Cout] or empty for none.</summary>
    public static void Forward<T>(Conv2dShape s, ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> bias, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        s.Validate();
        Require(s, "x", x.Length, s.InputLength);
        Require(s, "w", w.Length, s.WeightLength);
        if (!bias.IsEmpty) Require(s, "bias", bias.Length, s.Cout);
        Require(s, "y", y.Length, s.OutputLength);
        int outH = s.OutH, outW = s.OutW;
        for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.Cout; co++)
        for (int oh = 0; oh < outH; oh++)
        for (int ow = 0; ow < outW; ow++)
        {
            T sum = bias.IsEmpty ? T.Zero : bias[co];
            for (int c = 0; c < s.Cin; c++)
            for (int kh = 0; kh < s.KH; kh++)
            for (int kw = 0; kw < s.KW; kw++)
            {
                int ih = oh * s.Stride - s.Pad + kh, iw = ow * s.Stride - s.Pad + kw;
                if ((uint)ih >= (uint)s.H || (uint)iw >= (uint)s.W) continue;
                sum += w[WeightIndex(s, co, c, kh, kw)] * x[InputIndex(s, n, c, ih, iw)];
            }
            y[((n * s.Cout + co) * outH + oh) * outW + ow] = sum;
        }
    }

    /// <summary>
    /// dx = ∂L/∂x given dy = ∂L/∂y (overwritten): every forward term w·x sends dy·w to its x, so
    /// dx[n, c, ih, iw] = Σ dy[n, co, oh, ow] w[co, c, kh, kw] over the (co, oh, ow, kh, kw) that read it.
    /// </summary>
    public static void BackwardInput<T>(Conv2dShape s, ReadOnlySpan<T> dy, ReadOnlySpan<T> w, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        s.Validate();
        Require(s, "dy", dy.Length, s.OutputLength);
        Require(s, "w", w.Length, s.WeightLength);
        Require(s, "dx", dx.Length, s.InputLength);
        int outH = s.OutH, outW = s.OutW;
        dx[..(int)s.InputLength].Clear();
        for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.Cout; co++)
        for (int oh = 0; oh < outH; oh++)
        for (int ow = 0; ow < outW; ow++)
        {
            T g = dy[((n * s.Cout + co) * outH + oh) * outW + ow];
            for (int c = 0; c < s.Cin; c++)
            for (int kh = 0; kh < s.KH; kh++)
            for (int kw = 0; kw < s.KW; kw++)
            {
                int ih = oh * s.Stride - s.Pad + kh, iw = ow * s.Stride - s.Pad + kw;
                if ((uint)ih >= (uint)s.H || (uint)iw >= (uint)s.W) continue;
                dx[InputIndex(s, n, c, ih, iw)] += g * w[WeightIndex(s, co, c, kh, kw)];
            }
        }
    }

    /// <summary>
    /// dw = ∂L/∂w and db = ∂L/∂bias given x and dy (both overwritten; an empty <paramref name="db"/> skips the
    /// bias gradient): every forward term w·x sends dy·x to its w, and db[co] = Σ_{n, oh, ow} dy[n, co, oh, ow].
    /// </summary>
    public static void BackwardWeight<T>(Conv2dShape s, ReadOnlySpan<T> x, ReadOnlySpan<T> dy, Span<T> dw, Span<T> db)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        s.Validate();
        Require(s, "x", x.Length, s.InputLength);
        Require(s, "dy", dy.Length, s.OutputLength);
        Require(s, "dw", dw.Length, s.WeightLength);
        if (!db.IsEmpty) Require(s, "db", db.Length, s.Cout);
        int outH = s.OutH, outW = s.OutW;
        dw[..(int)s.WeightLength].Clear();
        if (!db.IsEmpty) db[..s.Cout].Clear();
        for (int n = 0; n < s.N; n++)
        for (int co = 0; co < s.Cout; co++)
        for (int oh = 0; oh < outH; oh++)
        for (int ow = 0; ow < outW; ow++)
        {
            T g = dy[((n * s.Cout + co) * outH + oh) * outW + ow];
            if (!db.IsEmpty) db[co] += g;
            for (int c = 0; c < s.Cin; c++)
            for (int kh = 0; kh < s.KH; kh++)
            for (int kw = 0; kw < s.KW; kw++)
            {
                int ih = oh * s.Stride - s.Pad + kh, iw = ow * s.Stride - s.Pad + kw;
                if ((uint)ih >= (uint)s.H || (uint)iw >= (uint)s.W) continue;
                dw[WeightIndex(s, co, c, kh, kw)] += g * x[InputIndex(s, n, c, ih, iw)];
            }
        }
    }

    private static int InputIndex(in Conv2dShape s, int n, int c, int ih, int iw) => ((n * s.Cin + c) * s.H + ih) * s.W + iw;

    private static int WeightIndex(in Conv2dShape s, int co, int c, int kh, int kw) => ((co * s.Cin + c) * s.KH + kh) * s.KW + kw;

    private static void Require(in Conv2dShape s, string name, int actual, long needed)
    {
        if (actual < needed) throw new KernelException("Conv2d", $"{name} has {actual} elements, needs {needed} for {s}");
    }
}
