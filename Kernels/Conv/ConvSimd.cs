using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// One float vector width as a type, so that each convolution micro-kernel is written once, generic over the
/// vector <typeparamref name="TV"/> and a struct implementing this, and instantiated per instruction set:
/// <see cref="ConvSimd512"/>, <see cref="ConvSimd256"/>, <see cref="ConvSimd128"/>. The members are static
/// abstracts that the JIT inlines in each struct instantiation, so the AVX-512 code is the same source as the
/// AVX2 code tested on an AVX2 machine.
/// </summary>
internal unsafe interface IConvSimd<TV> where TV : struct
{
    /// <summary>Floats per vector.</summary>
    static abstract int Count { get; }

    /// <summary>Rows (broadcast operands) of the largest <see cref="ConvMicroKernels.Product{S, TV, TC, TV4}"/> tile.</summary>
    static abstract int ProductRows { get; }

    /// <summary>Vectors per row of the largest <see cref="ConvMicroKernels.Product{S, TV, TC, TV4}"/> tile.</summary>
    static abstract int ProductVectors { get; }

    /// <summary>Taps (broadcast operands) of the largest <see cref="ConvMicroKernels.Reduction{S, TV, TJ, TCV}"/> tile.</summary>
    static abstract int ReductionTaps { get; }

    /// <summary>Vectors per tap of the largest <see cref="ConvMicroKernels.Reduction{S, TV, TJ, TCV}"/> tile.</summary>
    static abstract int ReductionVectors { get; }

    /// <summary>All zeros.</summary>
    static abstract TV Zero { get; }

    /// <summary>Every element <paramref name="value"/>.</summary>
    static abstract TV Create(float value);

    /// <summary>Loads <see cref="Count"/> floats from <paramref name="p"/> (no alignment needed).</summary>
    static abstract TV Load(float* p);

    /// <summary>Stores <see cref="Count"/> floats to <paramref name="p"/>.</summary>
    static abstract void Store(TV v, float* p);

    /// <summary>a + b.</summary>
    static abstract TV Add(TV a, TV b);

    /// <summary>a - b.</summary>
    static abstract TV Subtract(TV a, TV b);

    /// <summary>a * b.</summary>
    static abstract TV Multiply(TV a, TV b);

    /// <summary>a * b + c: fused where the hardware has a fused multiply-add, else multiply then add.</summary>
    static abstract TV MultiplyAdd(TV a, TV b, TV c);

    /// <summary>
    /// The even elements of the 2 <see cref="Count"/> floats at <paramref name="p"/> (p[0], p[2], ...) in
    /// <paramref name="even"/> and the odd ones in <paramref name="odd"/>.
    /// </summary>
    static abstract void LoadDeinterleave(float* p, out TV even, out TV odd);

    /// <summary>Stores a[0], b[0], a[1], b[1], ... (2 <see cref="Count"/> floats) to <paramref name="p"/>.</summary>
    static abstract void StoreInterleave(TV a, TV b, float* p);
}

/// <summary>The AVX-512 instantiation: Vector512, 32 zmm registers.</summary>
internal readonly unsafe struct ConvSimd512 : IConvSimd<Vector512<float>>
{
    public static int Count => 16;

    // 6 x 4 accumulators + 4 b vectors of the 32 zmm registers (broadcasts fold into the multiply-adds).
    public static int ProductRows => 6;
    public static int ProductVectors => 4;
    public static int ReductionTaps => 6;
    public static int ReductionVectors => 2;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Create(float value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadDeinterleave(float* p, out Vector512<float> even, out Vector512<float> odd)
    {
        var lo = Vector512.Load(p);
        var hi = Vector512.Load(p + 16);
        even = Avx512F.PermuteVar16x32x2(lo, Vector512.Create(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), hi);
        odd = Avx512F.PermuteVar16x32x2(lo, Vector512.Create(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), hi);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInterleave(Vector512<float> a, Vector512<float> b, float* p)
    {
        Avx512F.PermuteVar16x32x2(a, Vector512.Create(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b).Store(p);
        Avx512F.PermuteVar16x32x2(a, Vector512.Create(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b).Store(p + 16);
    }
}

/// <summary>The AVX2+FMA instantiation: Vector256, 16 ymm registers.</summary>
internal readonly unsafe struct ConvSimd256 : IConvSimd<Vector256<float>>
{
    public static int Count => 8;

    // 4 x 3 accumulators + 3 b vectors + 1 broadcast = the 16 ymm registers (4 x 4 or 3 x 4 would spill);
    // the reduction: 6 x 2 accumulators + 2 d vectors + 1 broadcast.
    public static int ProductRows => 4;
    public static int ProductVectors => 3;
    public static int ReductionTaps => 6;
    public static int ReductionVectors => 2;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Create(float value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Fma.MultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadDeinterleave(float* p, out Vector256<float> even, out Vector256<float> odd)
    {
        // shufps picks the even (odd) floats of each 128-bit lane of the pair, giving lanes ordered
        // [lo.lane0, hi.lane0, lo.lane1, hi.lane1]; one 64-bit cross-lane permute restores the order.
        var lo = Vector256.Load(p);
        var hi = Vector256.Load(p + 8);
        even = Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0b10_00_10_00).AsDouble(), 0b11_01_10_00).AsSingle();
        odd = Avx2.Permute4x64(Avx.Shuffle(lo, hi, 0b11_01_11_01).AsDouble(), 0b11_01_10_00).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInterleave(Vector256<float> a, Vector256<float> b, float* p)
    {
        // unpcklps/unpckhps interleave within 128-bit lanes; the two lane permutes put the halves in order.
        var lo = Avx.UnpackLow(a, b);
        var hi = Avx.UnpackHigh(a, b);
        Avx.Permute2x128(lo, hi, 0x20).Store(p);
        Avx.Permute2x128(lo, hi, 0x31).Store(p + 8);
    }
}

/// <summary>
/// The portable instantiation: Vector128 (AdvSimd on ARM64 with its fused multiply-add; SSE on x64, with
/// FMA3 where the runtime reports it and multiply then add where not, as under DOTNET_EnableAVX2=0).
/// </summary>
internal readonly unsafe struct ConvSimd128 : IConvSimd<Vector128<float>>
{
    public static int Count => 4;

    // The AVX2 blocking: it fits the 16 xmm registers of x64 and leaves half of ARM64's 32 NEON registers free.
    public static int ProductRows => 4;
    public static int ProductVectors => 3;
    public static int ReductionTaps => 6;
    public static int ReductionVectors => 2;
    public static Vector128<float> Zero => Vector128<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Create(float value) => Vector128.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c)
        => AdvSimd.IsSupported || Fma.IsSupported ? Vector128.FusedMultiplyAdd(a, b, c) : a * b + c;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void LoadDeinterleave(float* p, out Vector128<float> even, out Vector128<float> odd)
    {
        var lo = Vector128.Load(p);
        var hi = Vector128.Load(p + 4);
        if (AdvSimd.Arm64.IsSupported)
        {
            even = AdvSimd.Arm64.UnzipEven(lo, hi);
            odd = AdvSimd.Arm64.UnzipOdd(lo, hi);
        }
        else if (Sse.IsSupported)
        {
            even = Sse.Shuffle(lo, hi, 0b10_00_10_00);
            odd = Sse.Shuffle(lo, hi, 0b11_01_11_01);
        }
        else
        {
            even = Vector128.Create(p[0], p[2], p[4], p[6]);
            odd = Vector128.Create(p[1], p[3], p[5], p[7]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreInterleave(Vector128<float> a, Vector128<float> b, float* p)
    {
        if (AdvSimd.Arm64.IsSupported)
        {
            AdvSimd.Arm64.ZipLow(a, b).Store(p);
            AdvSimd.Arm64.ZipHigh(a, b).Store(p + 4);
        }
        else if (Sse.IsSupported)
        {
            Sse.UnpackLow(a, b).Store(p);
            Sse.UnpackHigh(a, b).Store(p + 4);
        }
        else
        {
            for (int i = 0; i < 4; i++)
            {
                p[2 * i] = a.GetElement(i);
                p[2 * i + 1] = b.GetElement(i);
            }
        }
    }
}

/// <summary>The vector width the convolution kernels run at in this process.</summary>
internal enum ConvIsa
{
    /// <summary>Vector128 (ARM64 AdvSimd, or x64 SSE), also the path on machines with no accelerated SIMD.</summary>
    Vector128,

    /// <summary>Vector256 with AVX2 and FMA3.</summary>
    Avx2,

    /// <summary>Vector512 with AVX-512F.</summary>
    Avx512,
}

/// <summary>
/// Picks the convolution kernels' vector width once per process: the widest one the runtime accelerates
/// (DOTNET_EnableAVX512F=0 and DOTNET_EnableAVX2=0 narrow it, which is how the narrower paths are tested on
/// a wide machine). The one place the convolution decides its ISA path.
/// </summary>
internal static class ConvIsaChoice
{
    /// <summary>The path in use; a static readonly field, so a switch over it folds to one branch in optimised code.</summary>
    public static readonly ConvIsa Path =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? ConvIsa.Avx512
        : Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported ? ConvIsa.Avx2
        : ConvIsa.Vector128;
}

/// <summary>
/// Matrix transposes for the layout changes of the convolutions (dy to pixel-major): 8x8 blocks in ymm registers
/// with AVX2, 4x4 blocks in 128-bit registers with SSE or AdvSimd, the scalar loop for the edges.
/// </summary>
internal static unsafe class ConvTranspose
{
    /// <summary>dst[c · dstStride + r] = src[r · srcStride + c] for r &lt; rows, c &lt; cols.</summary>
    public static void Transpose(float* src, long srcStride, int rows, int cols, float* dst, long dstStride)
    {
        int block = Avx2.IsSupported ? 8 : Sse.IsSupported || AdvSimd.Arm64.IsSupported ? 4 : 1;
        int r0 = 0;
        if (block > 1)
        {
            for (; r0 <= rows - block; r0 += block)
            {
                int c0 = 0;
                for (; c0 <= cols - block; c0 += block)
                {
                    float* s = src + r0 * srcStride + c0;
                    float* d = dst + c0 * dstStride + r0;
                    if (block == 8) Block8(s, srcStride, d, dstStride);
                    else Block4(s, srcStride, d, dstStride);
                }
                Scalar(src, srcStride, r0, r0 + block, c0, cols, dst, dstStride);
            }
        }
        Scalar(src, srcStride, r0, rows, 0, cols, dst, dstStride);
    }

    private static void Scalar(float* src, long srcStride, int r0, int r1, int c0, int c1, float* dst, long dstStride)
    {
        for (int r = r0; r < r1; r++)
            for (int c = c0; c < c1; c++)
                dst[c * dstStride + r] = src[r * srcStride + c];
    }

    private static void Block8(float* s, long ss, float* d, long ds)
    {
        // Interleave pairs of rows (unpck), then pairs of pairs (shufps), then swap 128-bit halves (vperm2f128).
        var t0 = Avx.UnpackLow(Avx.LoadVector256(s), Avx.LoadVector256(s + ss));
        var t1 = Avx.UnpackHigh(Avx.LoadVector256(s), Avx.LoadVector256(s + ss));
        var t2 = Avx.UnpackLow(Avx.LoadVector256(s + 2 * ss), Avx.LoadVector256(s + 3 * ss));
        var t3 = Avx.UnpackHigh(Avx.LoadVector256(s + 2 * ss), Avx.LoadVector256(s + 3 * ss));
        var t4 = Avx.UnpackLow(Avx.LoadVector256(s + 4 * ss), Avx.LoadVector256(s + 5 * ss));
        var t5 = Avx.UnpackHigh(Avx.LoadVector256(s + 4 * ss), Avx.LoadVector256(s + 5 * ss));
        var t6 = Avx.UnpackLow(Avx.LoadVector256(s + 6 * ss), Avx.LoadVector256(s + 7 * ss));
        var t7 = Avx.UnpackHigh(Avx.LoadVector256(s + 6 * ss), Avx.LoadVector256(s + 7 * ss));
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(d, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(d + ds, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(d + 2 * ds, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(d + 3 * ds, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(d + 4 * ds, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(d + 5 * ds, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(d + 6 * ds, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(d + 7 * ds, Avx.Permute2x128(u3, u7, 0x31));
    }

    private static void Block4(float* s, long ss, float* d, long ds)
    {
        var r0 = Vector128.Load(s);
        var r1 = Vector128.Load(s + ss);
        var r2 = Vector128.Load(s + 2 * ss);
        var r3 = Vector128.Load(s + 3 * ss);
        if (Sse.IsSupported)
        {
            var t0 = Sse.UnpackLow(r0, r1);
            var t1 = Sse.UnpackHigh(r0, r1);
            var t2 = Sse.UnpackLow(r2, r3);
            var t3 = Sse.UnpackHigh(r2, r3);
            Sse.MoveLowToHigh(t0, t2).Store(d);
            Sse.MoveHighToLow(t2, t0).Store(d + ds);
            Sse.MoveLowToHigh(t1, t3).Store(d + 2 * ds);
            Sse.MoveHighToLow(t3, t1).Store(d + 3 * ds);
        }
        else
        {
            var t0 = AdvSimd.Arm64.ZipLow(r0, r1);
            var t1 = AdvSimd.Arm64.ZipHigh(r0, r1);
            var t2 = AdvSimd.Arm64.ZipLow(r2, r3);
            var t3 = AdvSimd.Arm64.ZipHigh(r2, r3);
            AdvSimd.Arm64.ZipLow(t0.AsDouble(), t2.AsDouble()).AsSingle().Store(d);
            AdvSimd.Arm64.ZipHigh(t0.AsDouble(), t2.AsDouble()).AsSingle().Store(d + ds);
            AdvSimd.Arm64.ZipLow(t1.AsDouble(), t3.AsDouble()).AsSingle().Store(d + 2 * ds);
            AdvSimd.Arm64.ZipHigh(t1.AsDouble(), t3.AsDouble()).AsSingle().Store(d + 3 * ds);
        }
    }
}
