using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Norm;

/// <summary>
/// Group normalisation (Wu and He 2018) over NCHW tensors, optionally fused with a SiLU, on the CPU,
/// generic over float and double.
/// <para>
/// For sample n and group g the channels g*Cg .. (g+1)*Cg-1 (Cg = C / groups) with all their HW positions form
/// one contiguous block of M = Cg*HW values; mu and sigma^2 are its mean and (biased) variance, and
/// xhat = (x - mu) * rstd, rstd = 1 / sqrt(sigma^2 + eps), z = gamma[c]*xhat + beta[c] (Wu and He 2018, eqs. 1-2).
/// With the SiLU fused, y = z * sigmoid(z); otherwise y = z.
/// </para>
/// Work is split over the (n, g) blocks; the passes over one block (statistics, then output) reuse it from cache
/// while it fits (K6: 4 KiB blocks).
/// </summary>
public static class GroupNormCpu
{
    private const string KernelName = "GroupNorm";

    /// <summary>
    /// Elements summed in a vector accumulator of T before the partial sum is added into a double: keeps the
    /// float rounding error of a sum at the level of a 1024-term vector sum whatever the block size.
    /// </summary>
    private const int AccumulateChunk = 1024;

    /// <summary>Minimum elements per parallel task, so that tiny problems are not split.</summary>
    private const int MinElementsPerTask = 1 << 14;

    /// <summary>
    /// Forward pass: y = GroupNorm(x) (then SiLU when <paramref name="fuseSilu"/>), and the per-(n, group)
    /// mean and rstd saved for <see cref="Backward{T}"/>.
    /// </summary>
    /// <param name="batch">N.</param>
    /// <param name="channels">C, a multiple of <paramref name="groups"/>.</param>
    /// <param name="spatial">H*W (at least 1).</param>
    /// <param name="groups">Number of groups.</param>
    /// <param name="eps">Added to the variance before the square root.</param>
    /// <param name="x">Input x[N, C, HW].</param>
    /// <param name="gamma">Per-channel scale [C].</param>
    /// <param name="beta">Per-channel shift [C].</param>
    /// <param name="y">Output y[N, C, HW].</param>
    /// <param name="mean">Output mean[N, groups].</param>
    /// <param name="rstd">Output 1/sqrt(var + eps) [N, groups].</param>
    /// <param name="fuseSilu">Apply y = z*sigmoid(z) to the affine output z.</param>
    public static unsafe void Forward<T>(int batch, int channels, int spatial, int groups, double eps,
        ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, Span<T> y, Span<T> mean, Span<T> rstd, bool fuseSilu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckShapes(batch, channels, spatial, groups);
        long size = (long)batch * channels * spatial;
        CheckLength("x", x.Length, size, batch, channels, spatial);
        CheckLength("y", y.Length, size, batch, channels, spatial);
        CheckLength("gamma", gamma.Length, channels, batch, channels, spatial);
        CheckLength("beta", beta.Length, channels, batch, channels, spatial);
        CheckLength("mean", mean.Length, (long)batch * groups, batch, channels, spatial);
        CheckLength("rstd", rstd.Length, (long)batch * groups, batch, channels, spatial);
        if (!(eps >= 0)) throw new KernelException(KernelName, $"eps must be >= 0, got {eps}");
        if (batch == 0) return;

        int cg = channels / groups;
        long block = (long)cg * spatial;
        fixed (T* px0 = x, pg0 = gamma, pb0 = beta, py0 = y, pm0 = mean, pr0 = rstd)
        {
            T* px = px0, pg = pg0, pb = pb0, py = py0, pm = pm0, pr = pr0;
            CpuParallel.For((long)batch * groups, Math.Max(1, MinElementsPerTask / block), (s, e) =>
            {
                for (long b = s; b < e; b++)
                {
                    int g = (int)(b % groups);
                    ForwardBlock(px + b * block, py + b * block, pg + g * cg, pb + g * cg, cg, spatial, eps, fuseSilu,
                        out pm[b], out pr[b]);
                }
            });
        }
    }

    /// <summary>
    /// Backward pass of <see cref="Forward{T}"/>: dx, and dgamma, dbeta summed over the batch (overwritten).
    /// With <paramref name="fuseSilu"/> the SiLU is differentiated too, z being recomputed from x, mean, rstd,
    /// gamma and beta.
    /// </summary>
    /// <param name="batch">N.</param>
    /// <param name="channels">C, a multiple of <paramref name="groups"/>.</param>
    /// <param name="spatial">H*W (at least 1).</param>
    /// <param name="groups">Number of groups.</param>
    /// <param name="x">Forward input x[N, C, HW].</param>
    /// <param name="gamma">Per-channel scale [C].</param>
    /// <param name="beta">Per-channel shift [C] (read only when the SiLU is fused).</param>
    /// <param name="mean">Saved mean[N, groups] from the forward pass.</param>
    /// <param name="rstd">Saved rstd[N, groups] from the forward pass.</param>
    /// <param name="dy">Gradient of the loss w.r.t. y, [N, C, HW].</param>
    /// <param name="dx">Output gradient w.r.t. x, [N, C, HW] (may not alias x or dy).</param>
    /// <param name="dgamma">Output gradient w.r.t. gamma [C].</param>
    /// <param name="dbeta">Output gradient w.r.t. beta [C].</param>
    /// <param name="fuseSilu">Whether the forward pass applied the SiLU.</param>
    public static unsafe void Backward<T>(int batch, int channels, int spatial, int groups,
        ReadOnlySpan<T> x, ReadOnlySpan<T> gamma, ReadOnlySpan<T> beta, ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd,
        ReadOnlySpan<T> dy, Span<T> dx, Span<T> dgamma, Span<T> dbeta, bool fuseSilu)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        CheckShapes(batch, channels, spatial, groups);
        long size = (long)batch * channels * spatial;
        CheckLength("x", x.Length, size, batch, channels, spatial);
        CheckLength("dy", dy.Length, size, batch, channels, spatial);
        CheckLength("dx", dx.Length, size, batch, channels, spatial);
        CheckLength("gamma", gamma.Length, channels, batch, channels, spatial);
        CheckLength("beta", beta.Length, channels, batch, channels, spatial);
        CheckLength("dgamma", dgamma.Length, channels, batch, channels, spatial);
        CheckLength("dbeta", dbeta.Length, channels, batch, channels, spatial);
        CheckLength("mean", mean.Length, (long)batch * groups, batch, channels, spatial);
        CheckLength("rstd", rstd.Length, (long)batch * groups, batch, channels, spatial);

        int cg = channels / groups;
        long block = (long)cg * spatial;
        // Per-(n, c) partial sums of dbeta and dgamma, reduced over n in order afterwards: deterministic
        // whatever the thread count, and no atomics.
        int partLength = batch * channels;
        double[] parts = ArrayPool<double>.Shared.Rent(Math.Max(1, 2 * partLength));
        try
        {
            fixed (T* px0 = x, pg0 = gamma, pb0 = beta, pm0 = mean, pr0 = rstd, pdy0 = dy, pdx0 = dx)
            fixed (double* pparts0 = parts)
            {
                T* px = px0, pg = pg0, pb = pb0, pm = pm0, pr = pr0, pdy = pdy0, pdx = pdx0;
                double* pBeta = pparts0, pGamma = pparts0 + partLength;
                CpuParallel.For((long)batch * groups, Math.Max(1, MinElementsPerTask / block), (s, e) =>
                {
                    for (long b = s; b < e; b++)
                    {
                        int g = (int)(b % groups);
                        long n = b / groups;
                        long partOffset = n * channels + (long)g * cg;
                        BackwardBlock(px + b * block, pdy + b * block, pdx + b * block, pg + g * cg, pb + g * cg,
                            pm[b], pr[b], cg, spatial, fuseSilu, pBeta + partOffset, pGamma + partOffset);
                    }
                });
            }
            for (int c = 0; c < channels; c++)
            {
                double sb = 0, sg = 0;
                for (int n = 0; n < batch; n++)
                {
                    sb += parts[n * channels + c];
                    sg += parts[partLength + n * channels + c];
                }
                dbeta[c] = T.CreateTruncating(sb);
                dgamma[c] = T.CreateTruncating(sg);
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(parts);
        }
    }

    private static unsafe void ForwardBlock<T>(T* x, T* y, T* gamma, T* beta, int cg, int spatial, double eps, bool fuseSilu,
        out T mean, out T rstd)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        long m = (long)cg * spatial;
        // Two-pass statistics: the mean first, then the squared deviations from it. Unlike E[x^2] - E[x]^2
        // this does not cancel catastrophically when |mean| >> std. The deviations are taken from the mean
        // rounded to T (the value saved for backward), center, and corrected exactly in double:
        // sum (x - mu)^2 = sum (x - center)^2 - M (mu - center)^2.
        double mu = Mean(x, m);
        T center = T.CreateTruncating(mu);
        double offset = mu - double.CreateTruncating(center);
        double variance = Math.Max(0, SumDeviations(x, m, center, squared: true) / m - offset * offset);
        double r = 1.0 / Math.Sqrt(variance + eps);
        mean = center;
        rstd = T.CreateTruncating(r);
        for (int c = 0; c < cg; c++)
        {
            // z = gamma*(x - mu)*rstd + beta = (x - center)*scale + shift. x - center is exact when x is near the
            // mean (Sterbenz), so z keeps its precision even when |mean| >> std; folding the affine into x*s + t
            // would cancel there instead.
            double scale = double.CreateTruncating(gamma[c]) * r;
            double shift = double.CreateTruncating(beta[c]) - offset * scale;
            AffineSilu(x + (long)c * spatial, y + (long)c * spatial, spatial,
                center, T.CreateTruncating(scale), T.CreateTruncating(shift), fuseSilu);
        }
    }

    private static unsafe void BackwardBlock<T>(T* x, T* dy, T* dx, T* gamma, T* beta, T mean, T rstd, int cg, int spatial,
        bool fuseSilu, double* dbetaPart, double* dgammaPart)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        // With g = dL/dz (dy, times silu'(z) when fused) and dxhat = gamma*g, the group-norm gradient is
        //   dx = rstd * (dxhat - mean_M(dxhat) - xhat * mean_M(dxhat * xhat))
        // where mean_M(dxhat) = (1/M) sum_c gamma_c A_c and mean_M(dxhat*xhat) = (1/M) sum_c gamma_c B_c with
        // A_c = sum_hw g (= the block's share of dbeta_c) and B_c = sum_hw g*xhat (its share of dgamma_c).
        // The saved mean is the exact mean mu rounded to T; mu is summed again (the same deterministic sum as
        // forward) so that xhat = (x - mean)*rstd + xhatOffset, xhatOffset = (mean - mu)*rstd, matches the forward
        // xhat even when |mean| >> std and the rounding of mean is not negligible against std.
        long m = (long)cg * spatial;
        double r = double.CreateTruncating(rstd);
        double xhatOffset = (double.CreateTruncating(mean) - Mean(x, m)) * r;
        T offset = T.CreateTruncating(xhatOffset);
        double sumGammaA = 0, sumGammaB = 0;
        for (int c = 0; c < cg; c++)
        {
            long o = (long)c * spatial;
            ChannelGradientSums(x + o, dy + o, dx + o, spatial, mean, rstd, offset, gamma[c], beta[c], fuseSilu,
                out double a, out double b);
            dbetaPart[c] = a;
            dgammaPart[c] = b;
            double gc = double.CreateTruncating(gamma[c]);
            sumGammaA += gc * a;
            sumGammaB += gc * b;
        }
        // Expanding xhat: dx = g*(rstd*gamma_c) + (x - mean)*k1 + k0 with
        // k1 = -rstd^2 * sumGammaB / M and k0 = -rstd * (sumGammaA + xhatOffset * sumGammaB) / M.
        double k1 = -r * r * sumGammaB / m;
        double k0 = -r * (sumGammaA + xhatOffset * sumGammaB) / m;
        T tk1 = T.CreateTruncating(k1), tk0 = T.CreateTruncating(k0);
        for (int c = 0; c < cg; c++)
        {
            long o = (long)c * spatial;
            // When fused, ChannelGradientSums left g in dx; otherwise g is dy itself.
            T* g = fuseSilu ? dx + o : dy + o;
            CombineGradient(g, x + o, dx + o, spatial, mean, T.CreateTruncating(r * double.CreateTruncating(gamma[c])), tk1, tk0);
        }
    }

    /// <summary>
    /// Mean of p[0..m), summed as deviations from p[0]: with a large common offset, raw float partial sums would
    /// round away the spread of the data; x - p[0] is exact for values near p[0] (Sterbenz) and small.
    /// </summary>
    private static unsafe double Mean<T>(T* p, long m) where T : unmanaged, IFloatingPointIeee754<T>
        => double.CreateTruncating(p[0]) + SumDeviations(p, m, p[0], squared: false) / m;

    /// <summary>
    /// Sum of (p[i] - center), or of (p[i] - center)^2 when <paramref name="squared"/>, with vector partial sums
    /// of T folded into a double every <see cref="AccumulateChunk"/> elements.
    /// </summary>
    private static unsafe double SumDeviations<T>(T* p, long m, T center, bool squared) where T : unmanaged, IFloatingPointIeee754<T>
    {
        double total = 0;
        var vc = Vector512.Create(center);
        for (long s = 0; s < m; s += AccumulateChunk)
        {
            int len = (int)Math.Min(AccumulateChunk, m - s);
            T* q = p + s;
            // Two accumulators hide the add/FMA latency.
            var acc0 = Vector512<T>.Zero;
            var acc1 = Vector512<T>.Zero;
            int i = 0;
            if (squared)
            {
                for (; i <= len - 2 * Vector512<T>.Count; i += 2 * Vector512<T>.Count)
                {
                    var d0 = Vector512.Load(q + i) - vc;
                    var d1 = Vector512.Load(q + i + Vector512<T>.Count) - vc;
                    acc0 = MulAdd(d0, d0, acc0);
                    acc1 = MulAdd(d1, d1, acc1);
                }
            }
            else
            {
                for (; i <= len - 2 * Vector512<T>.Count; i += 2 * Vector512<T>.Count)
                {
                    acc0 += Vector512.Load(q + i) - vc;
                    acc1 += Vector512.Load(q + i + Vector512<T>.Count) - vc;
                }
            }
            T tail = T.Zero;
            for (; i < len; i++)
            {
                T d = q[i] - center;
                tail += squared ? d * d : d;
            }
            total += double.CreateTruncating(Vector512.Sum(acc0 + acc1) + tail);
        }
        return total;
    }

    /// <summary>y = (x - center)*scale + shift, then y = y*sigmoid(y) when <paramref name="silu"/>.</summary>
    private static unsafe void AffineSilu<T>(T* x, T* y, int len, T center, T scale, T shift, bool silu) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var vc = Vector512.Create(center);
        var vs = Vector512.Create(scale);
        var vb = Vector512.Create(shift);
        int i = 0;
        if (silu)
        {
            for (; i <= len - Vector512<T>.Count; i += Vector512<T>.Count)
            {
                var z = MulAdd(Vector512.Load(x + i) - vc, vs, vb);
                (z * Sigmoid(z)).Store(y + i);
            }
            for (; i < len; i++)
            {
                T z = (x[i] - center) * scale + shift;
                y[i] = z * Sigmoid(z);
            }
        }
        else
        {
            for (; i <= len - Vector512<T>.Count; i += Vector512<T>.Count)
                MulAdd(Vector512.Load(x + i) - vc, vs, vb).Store(y + i);
            for (; i < len; i++) y[i] = (x[i] - center) * scale + shift;
        }
    }

    /// <summary>
    /// For one channel: A = sum g and B = sum g*xhat with xhat = (x - mean)*rstd + offset and g = dy, or, when
    /// <paramref name="silu"/>, g = dy * silu'(z) with z = gamma*xhat + beta, stored into <paramref name="gOut"/>.
    /// silu'(z) = s*(1 + z*(1 - s)) with s = sigmoid(z) (from d/dz [z*s] = s + z*s*(1 - s)).
    /// </summary>
    private static unsafe void ChannelGradientSums<T>(T* x, T* dy, T* gOut, int len, T mean, T rstd, T offset, T gamma, T beta,
        bool silu, out double sumG, out double sumGXhat)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var vm = Vector512.Create(mean);
        var vr = Vector512.Create(rstd);
        var vo = Vector512.Create(offset);
        var vg = Vector512.Create(gamma);
        var vb = Vector512.Create(beta);
        sumG = 0;
        sumGXhat = 0;
        for (int s = 0; s < len; s += AccumulateChunk)
        {
            int end = Math.Min(len, s + AccumulateChunk);
            var accA = Vector512<T>.Zero;
            var accB = Vector512<T>.Zero;
            int i = s;
            if (silu)
            {
                for (; i <= end - Vector512<T>.Count; i += Vector512<T>.Count)
                {
                    var xhat = MulAdd(Vector512.Load(x + i) - vm, vr, vo);
                    var z = MulAdd(xhat, vg, vb);
                    var sg = Sigmoid(z);
                    // s + z*s*(1 - s)
                    var g = Vector512.Load(dy + i) * MulAdd(z * sg, Vector512<T>.One - sg, sg);
                    g.Store(gOut + i);
                    accA += g;
                    accB = MulAdd(g, xhat, accB);
                }
            }
            else
            {
                for (; i <= end - Vector512<T>.Count; i += Vector512<T>.Count)
                {
                    var xhat = MulAdd(Vector512.Load(x + i) - vm, vr, vo);
                    var g = Vector512.Load(dy + i);
                    accA += g;
                    accB = MulAdd(g, xhat, accB);
                }
            }
            T tailA = T.Zero, tailB = T.Zero;
            for (; i < end; i++)
            {
                T xhat = (x[i] - mean) * rstd + offset;
                T g = dy[i];
                if (silu)
                {
                    T z = xhat * gamma + beta;
                    T sg = Sigmoid(z);
                    g *= sg + z * sg * (T.One - sg);
                    gOut[i] = g;
                }
                tailA += g;
                tailB += g * xhat;
            }
            sumG += double.CreateTruncating(Vector512.Sum(accA) + tailA);
            sumGXhat += double.CreateTruncating(Vector512.Sum(accB) + tailB);
        }
    }

    /// <summary>dx = g*a + ((x - mean)*k1 + k0); g may alias dx (each element is read before it is written).</summary>
    private static unsafe void CombineGradient<T>(T* g, T* x, T* dx, int len, T mean, T a, T k1, T k0) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var vm = Vector512.Create(mean);
        var va = Vector512.Create(a);
        var vk1 = Vector512.Create(k1);
        var vk0 = Vector512.Create(k0);
        int i = 0;
        for (; i <= len - Vector512<T>.Count; i += Vector512<T>.Count)
            MulAdd(Vector512.Load(g + i), va, MulAdd(Vector512.Load(x + i) - vm, vk1, vk0)).Store(dx + i);
        for (; i < len; i++) dx[i] = g[i] * a + ((x[i] - mean) * k1 + k0);
    }

    /// <summary>a*b + c, fused where the element type has a fused vector instruction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> MulAdd<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return Vector512.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector512.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }

    /// <summary>
    /// sigmoid(z) = 1 / (1 + e^-z). float32 goes through <see cref="SigmoidSingle"/>; float64 (gradient checks)
    /// through the library's double exp, e^-z overflowing to +inf for very negative z and giving exactly 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Sigmoid<T>(Vector512<T> z) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return SigmoidSingle(z.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double))
            return (Vector512<double>.One / (Vector512<double>.One + Vector512.Exp(-z.AsDouble()))).As<double, T>();
        throw new KernelException(KernelName, $"element type {typeof(T).Name} is not supported");
    }

    /// <summary>
    /// float32 sigmoid in float arithmetic (the library's float exp widens to double, about twice the work):
    /// e = e^-|z| in (0, 1] never overflows, sigmoid(|z|) = 1/(1 + e) and sigmoid(-|z|) = e/(1 + e).
    /// e^t for t &lt;= 0 is Cephes' expf: t = n ln2 + r, |r| &lt;= ln2/2, e^r by its degree-7 polynomial
    /// (about 1 ulp), times 2^n built in the exponent bits. t is clamped at -88 so n >= -127, and n = -127 gives
    /// the bit pattern of +0: e underflows to exactly 0 rather than to a denormal.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> SigmoidSingle(Vector512<float> z)
    {
        var t = Vector512.Max(-Vector512.Abs(z), Vector512.Create(-88f));
        var n = Vector512.Round(t * Vector512.Create(1.44269504088896341f));
        // Cody-Waite split of ln2 so that t - n*ln2 is exact to float precision.
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), t);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);
        var p = Vector512.Create(1.9875691500e-4f);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.3981999507e-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(8.3334519073e-3f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(4.1665795894e-2f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1.6666665459e-1f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(5.0000001201e-1f));
        p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        var e = p * scale;
        var q = Reciprocal(Vector512<float>.One + e);
        return Vector512.ConditionalSelect(Vector512.LessThan(z, Vector512<float>.Zero), e * q, q);
    }

    /// <summary>
    /// 1/d for d in [1, 2]: the 14-bit hardware estimate refined by one Newton step q(2 - dq) to about 2^-27
    /// relative error, cheaper than a 512-bit division; a plain division where AVX-512F is absent.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Reciprocal(Vector512<float> d)
    {
        if (!Avx512F.IsSupported) return Vector512<float>.One / d;
        var q = Avx512F.Reciprocal14(d);
        return q * Vector512.FusedMultiplyAdd(-d, q, Vector512.Create(2f));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Sigmoid<T>(T z) where T : unmanaged, IFloatingPointIeee754<T> => T.One / (T.One + T.Exp(-z));

    private static void CheckShapes(int batch, int channels, int spatial, int groups)
    {
        if (batch < 0 || channels < 1 || spatial < 1 || groups < 1)
            throw new KernelException(KernelName, $"need N >= 0, C >= 1, HW >= 1, groups >= 1; got N={batch}, C={channels}, HW={spatial}, groups={groups}");
        if (channels % groups != 0)
            throw new KernelException(KernelName, $"C={channels} is not divisible by groups={groups}");
    }

    private static void CheckLength(string name, int actual, long expected, int batch, int channels, int spatial)
    {
        if (actual < expected)
            throw new KernelException(KernelName, $"{name} has {actual} elements, needs {expected} for N={batch}, C={channels}, HW={spatial}");
    }
}
