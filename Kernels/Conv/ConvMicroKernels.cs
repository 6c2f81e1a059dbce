using System.Runtime.CompilerServices;

namespace DiffusionCore.Kernels.Conv;

/// <summary>A compile-time integer: a struct type argument whose <see cref="Value"/> the JIT folds per instantiation.</summary>
internal interface IConstInt
{
    /// <summary>The constant.</summary>
    static abstract int Value { get; }
}

internal readonly struct Int1 : IConstInt { public static int Value => 1; }
internal readonly struct Int2 : IConstInt { public static int Value => 2; }
internal readonly struct Int3 : IConstInt { public static int Value => 3; }
internal readonly struct Int4 : IConstInt { public static int Value => 4; }
internal readonly struct Int5 : IConstInt { public static int Value => 5; }
internal readonly struct Int6 : IConstInt { public static int Value => 6; }

/// <summary>
/// The two register-blocked micro-kernels every convolution path runs on, written once over the vector width
/// (<see cref="IConvSimd{TV}"/>) and the tile sizes (<see cref="IConstInt"/> type arguments, so every accumulator
/// is its own local and the unused ones vanish from each instantiation).
/// <list type="bullet">
/// <item><see cref="Product{S, TV, TC, TV4}"/>: out[c, q] = Σ_k a[k, c] · b[off[k] + q] for C rows c and V vectors
/// of consecutive q: rows broadcast, q in vectors. Direct convolution (k a tap (ci, kh, kw), b the padded input
/// grid, q an output position) and Winograd's transform-domain products (k an input channel).</item>
/// <item><see cref="Reduction{S, TV, TJ, TCV}"/>: acc[j, c] += Σ_p d[p, c] · b[tap[j] + pix[p]] for J taps j and
/// CV vectors of consecutive c: pixels broadcast, c in vectors. The weight gradient (d the transposed output
/// gradient, c an output channel), direct and in the Winograd domain.</item>
/// </list>
/// </summary>
internal static unsafe class ConvMicroKernels
{
    /// <summary>
    /// out[c · outStride + q] = Σ_{k &lt; taps} a[k · C + c] · b[off[k] + q] for c &lt; C and q &lt; V · Count, added to
    /// the out it finds when <paramref name="accumulate"/> is set (a sum over several blocks of taps).
    /// a is packed tap by tap (C floats per tap), so each tap costs V vector loads of b, C broadcasts of a and
    /// C · V fused multiply-adds. AVX2 takes C = 4, V = 3 (12 accumulators, 3 b vectors and one broadcast:
    /// the 16 ymm registers); AVX-512 takes C = 6, V = 4 (24 of the 32 zmm registers, broadcasts folded into
    /// the multiply-adds).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Product<S, TV, TC, TV4>(int taps, int* off, float* a, float* b, float* output, int outStride, bool accumulate)
        where S : IConvSimd<TV> where TV : struct where TC : IConstInt where TV4 : IConstInt
    {
        int C = TC.Value, V = TV4.Value, L = S.Count;
        TV c00 = S.Zero, c01 = S.Zero, c02 = S.Zero, c03 = S.Zero;
        TV c10 = S.Zero, c11 = S.Zero, c12 = S.Zero, c13 = S.Zero;
        TV c20 = S.Zero, c21 = S.Zero, c22 = S.Zero, c23 = S.Zero;
        TV c30 = S.Zero, c31 = S.Zero, c32 = S.Zero, c33 = S.Zero;
        TV c40 = S.Zero, c41 = S.Zero, c42 = S.Zero, c43 = S.Zero;
        TV c50 = S.Zero, c51 = S.Zero, c52 = S.Zero, c53 = S.Zero;
        if (accumulate)
        {
            LoadRow<S, TV, TV4>(output, out c00, out c01, out c02, out c03);
            if (C > 1) LoadRow<S, TV, TV4>(output + outStride, out c10, out c11, out c12, out c13);
            if (C > 2) LoadRow<S, TV, TV4>(output + 2 * outStride, out c20, out c21, out c22, out c23);
            if (C > 3) LoadRow<S, TV, TV4>(output + 3 * outStride, out c30, out c31, out c32, out c33);
            if (C > 4) LoadRow<S, TV, TV4>(output + 4 * outStride, out c40, out c41, out c42, out c43);
            if (C > 5) LoadRow<S, TV, TV4>(output + 5 * outStride, out c50, out c51, out c52, out c53);
        }
        for (int k = 0; k < taps; k++, a += C)
        {
            float* bk = b + off[k];
            TV b0 = S.Load(bk);
            TV b1 = V > 1 ? S.Load(bk + L) : default;
            TV b2 = V > 2 ? S.Load(bk + 2 * L) : default;
            TV b3 = V > 3 ? S.Load(bk + 3 * L) : default;
            TV w = S.Create(a[0]);
            c00 = S.MultiplyAdd(b0, w, c00);
            if (V > 1) c01 = S.MultiplyAdd(b1, w, c01);
            if (V > 2) c02 = S.MultiplyAdd(b2, w, c02);
            if (V > 3) c03 = S.MultiplyAdd(b3, w, c03);
            if (C > 1)
            {
                w = S.Create(a[1]);
                c10 = S.MultiplyAdd(b0, w, c10);
                if (V > 1) c11 = S.MultiplyAdd(b1, w, c11);
                if (V > 2) c12 = S.MultiplyAdd(b2, w, c12);
                if (V > 3) c13 = S.MultiplyAdd(b3, w, c13);
            }
            if (C > 2)
            {
                w = S.Create(a[2]);
                c20 = S.MultiplyAdd(b0, w, c20);
                if (V > 1) c21 = S.MultiplyAdd(b1, w, c21);
                if (V > 2) c22 = S.MultiplyAdd(b2, w, c22);
                if (V > 3) c23 = S.MultiplyAdd(b3, w, c23);
            }
            if (C > 3)
            {
                w = S.Create(a[3]);
                c30 = S.MultiplyAdd(b0, w, c30);
                if (V > 1) c31 = S.MultiplyAdd(b1, w, c31);
                if (V > 2) c32 = S.MultiplyAdd(b2, w, c32);
                if (V > 3) c33 = S.MultiplyAdd(b3, w, c33);
            }
            if (C > 4)
            {
                w = S.Create(a[4]);
                c40 = S.MultiplyAdd(b0, w, c40);
                if (V > 1) c41 = S.MultiplyAdd(b1, w, c41);
                if (V > 2) c42 = S.MultiplyAdd(b2, w, c42);
                if (V > 3) c43 = S.MultiplyAdd(b3, w, c43);
            }
            if (C > 5)
            {
                w = S.Create(a[5]);
                c50 = S.MultiplyAdd(b0, w, c50);
                if (V > 1) c51 = S.MultiplyAdd(b1, w, c51);
                if (V > 2) c52 = S.MultiplyAdd(b2, w, c52);
                if (V > 3) c53 = S.MultiplyAdd(b3, w, c53);
            }
        }
        StoreRow<S, TV, TV4>(output, c00, c01, c02, c03);
        if (C > 1) StoreRow<S, TV, TV4>(output + outStride, c10, c11, c12, c13);
        if (C > 2) StoreRow<S, TV, TV4>(output + 2 * outStride, c20, c21, c22, c23);
        if (C > 3) StoreRow<S, TV, TV4>(output + 3 * outStride, c30, c31, c32, c33);
        if (C > 4) StoreRow<S, TV, TV4>(output + 4 * outStride, c40, c41, c42, c43);
        if (C > 5) StoreRow<S, TV, TV4>(output + 5 * outStride, c50, c51, c52, c53);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadRow<S, TV, TV4>(float* p, out TV v0, out TV v1, out TV v2, out TV v3)
        where S : IConvSimd<TV> where TV : struct where TV4 : IConstInt
    {
        int V = TV4.Value, L = S.Count;
        v0 = S.Load(p);
        v1 = V > 1 ? S.Load(p + L) : S.Zero;
        v2 = V > 2 ? S.Load(p + 2 * L) : S.Zero;
        v3 = V > 3 ? S.Load(p + 3 * L) : S.Zero;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<S, TV, TV4>(float* p, TV v0, TV v1, TV v2, TV v3)
        where S : IConvSimd<TV> where TV : struct where TV4 : IConstInt
    {
        int V = TV4.Value, L = S.Count;
        S.Store(v0, p);
        if (V > 1) S.Store(v1, p + L);
        if (V > 2) S.Store(v2, p + 2 * L);
        if (V > 3) S.Store(v3, p + 3 * L);
    }

    /// <summary>
    /// acc[j · CV · Count + c] += Σ_{i &lt; pixels} d[i · dStride + c] · b[tap[j] + pix[i]] for j &lt; J and
    /// c &lt; CV · Count. Each pixel costs CV vector loads of d, J broadcasts of b and J · CV fused multiply-adds.
    /// AVX2 takes J = 6, CV = 2 (12 accumulators, 2 d vectors, one broadcast); AVX-512 J = 6, CV = 4 would need
    /// 28 registers and is not used: it takes J = 6, CV = 2 with broadcasts folded, like AVX2 at twice the width.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Reduction<S, TV, TJ, TCV>(int pixels, int* pix, float* d, int dStride, float* b, int* tap, float* acc)
        where S : IConvSimd<TV> where TV : struct where TJ : IConstInt where TCV : IConstInt
    {
        int J = TJ.Value, CV = TCV.Value, L = S.Count, row = CV * L;
        float* b0 = b + tap[0];
        float* b1 = J > 1 ? b + tap[1] : b0;
        float* b2 = J > 2 ? b + tap[2] : b0;
        float* b3 = J > 3 ? b + tap[3] : b0;
        float* b4 = J > 4 ? b + tap[4] : b0;
        float* b5 = J > 5 ? b + tap[5] : b0;
        TV a00 = S.Load(acc), a01 = CV > 1 ? S.Load(acc + L) : default;
        TV a10 = J > 1 ? S.Load(acc + row) : default, a11 = J > 1 && CV > 1 ? S.Load(acc + row + L) : default;
        TV a20 = J > 2 ? S.Load(acc + 2 * row) : default, a21 = J > 2 && CV > 1 ? S.Load(acc + 2 * row + L) : default;
        TV a30 = J > 3 ? S.Load(acc + 3 * row) : default, a31 = J > 3 && CV > 1 ? S.Load(acc + 3 * row + L) : default;
        TV a40 = J > 4 ? S.Load(acc + 4 * row) : default, a41 = J > 4 && CV > 1 ? S.Load(acc + 4 * row + L) : default;
        TV a50 = J > 5 ? S.Load(acc + 5 * row) : default, a51 = J > 5 && CV > 1 ? S.Load(acc + 5 * row + L) : default;
        for (int i = 0; i < pixels; i++, d += dStride)
        {
            int p = pix[i];
            TV d0 = S.Load(d);
            TV d1 = CV > 1 ? S.Load(d + L) : default;
            TV x = S.Create(b0[p]);
            a00 = S.MultiplyAdd(d0, x, a00);
            if (CV > 1) a01 = S.MultiplyAdd(d1, x, a01);
            if (J > 1)
            {
                x = S.Create(b1[p]);
                a10 = S.MultiplyAdd(d0, x, a10);
                if (CV > 1) a11 = S.MultiplyAdd(d1, x, a11);
            }
            if (J > 2)
            {
                x = S.Create(b2[p]);
                a20 = S.MultiplyAdd(d0, x, a20);
                if (CV > 1) a21 = S.MultiplyAdd(d1, x, a21);
            }
            if (J > 3)
            {
                x = S.Create(b3[p]);
                a30 = S.MultiplyAdd(d0, x, a30);
                if (CV > 1) a31 = S.MultiplyAdd(d1, x, a31);
            }
            if (J > 4)
            {
                x = S.Create(b4[p]);
                a40 = S.MultiplyAdd(d0, x, a40);
                if (CV > 1) a41 = S.MultiplyAdd(d1, x, a41);
            }
            if (J > 5)
            {
                x = S.Create(b5[p]);
                a50 = S.MultiplyAdd(d0, x, a50);
                if (CV > 1) a51 = S.MultiplyAdd(d1, x, a51);
            }
        }
        S.Store(a00, acc);
        if (CV > 1) S.Store(a01, acc + L);
        if (J > 1) { S.Store(a10, acc + row); if (CV > 1) S.Store(a11, acc + row + L); }
        if (J > 2) { S.Store(a20, acc + 2 * row); if (CV > 1) S.Store(a21, acc + 2 * row + L); }
        if (J > 3) { S.Store(a30, acc + 3 * row); if (CV > 1) S.Store(a31, acc + 3 * row + L); }
        if (J > 4) { S.Store(a40, acc + 4 * row); if (CV > 1) S.Store(a41, acc + 4 * row + L); }
        if (J > 5) { S.Store(a50, acc + 5 * row); if (CV > 1) S.Store(a51, acc + 5 * row + L); }
    }
}
