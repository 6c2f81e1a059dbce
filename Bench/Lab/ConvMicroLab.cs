using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Bench.Lab;

/// <summary>
/// Throughput of the convolution micro-kernels alone, operands resident in L1: the ceiling each path can reach.
/// Single thread, thread CPU time, variants interleaved, median of the repetitions.
/// </summary>
internal static unsafe class ConvMicroLab
{
    public static void Run()
    {
        const int taps = 576, reps = 41, calls = 500;
        var rng = new Random(1);
        float* b = Alloc(4096, rng), a = Alloc(taps * 8, rng), o = Alloc(8 * 256, rng);
        int* off = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)taps * 4, 64);
        float* wide = Alloc(taps * 4 * 8, rng);
        int* offAligned = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)taps * 4, 64);
        for (int k = 0; k < taps; k++) offAligned[k] = (k % 16) * 32;
        for (int k = 0; k < taps; k++) off[k] = (k % 9 / 3) * 34 + k % 3 + (k / 9 % 4) * 128; // a 3x3 pattern over 4 planes
        var variants = new List<(string Name, double Flops, Action Body)>
        {
            ("FMA peak 12 acc", 2.0 * 8 * 12 * taps * calls, () => { for (int i = 0; i < calls; i++) Peak(taps, o); }),
            ("FMA 12 + 2 loads", 2.0 * 8 * 12 * taps * calls, () => { for (int i = 0; i < calls; i++) PeakLoads2(taps, b, o); }),
            ("FMA 12 + 4 loads", 2.0 * 8 * 12 * taps * calls, () => { for (int i = 0; i < calls; i++) PeakLoads4(taps, b, o); }),
            ("FMA 12 + 6 loads", 2.0 * 8 * 12 * taps * calls, () => { for (int i = 0; i < calls; i++) PeakLoads6(taps, b, o); }),
            ("Product 256 C4 V3 aligned", 2.0 * taps * 4 * 24 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int4, Int3>(taps, offAligned, a, b, o, 256, false); }),
            ("Product 256 C4 V3", 2.0 * taps * 4 * 24 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int4, Int3>(taps, off, a, b, o, 256, false); }),
            ("Prebroadcast C4 V3", 2.0 * taps * 4 * 24 * calls, () => { for (int i = 0; i < calls; i++) PreBroadcast(taps, off, wide, b, o); }),
            ("Product 256 C3 V4", 2.0 * taps * 3 * 32 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int3, Int4>(taps, off, a, b, o, 256, false); }),
            ("Product 256 C6 V2", 2.0 * taps * 6 * 16 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int6, Int2>(taps, off, a, b, o, 256, false); }),
            ("Product 256 C5 V2", 2.0 * taps * 5 * 16 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int5, Int2>(taps, off, a, b, o, 256, false); }),
            ("Product 128 C4 V3", 2.0 * taps * 4 * 12 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd128, Vector128<float>, Int4, Int3>(taps, off, a, b, o, 256, false); }),
        };
        int pixels = 576;
        int* pix = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)pixels * 4, 64);
        for (int p = 0; p < pixels; p++) pix[p] = p / 24 * 34 + p % 24;
        int* tap = stackalloc int[6] { 0, 1, 2, 34, 35, 36 };
        float* d = Alloc(pixels * 16, rng), acc = Alloc(6 * 16, rng);
        variants.Add(("Reduction 256 J6 CV2", 2.0 * pixels * 6 * 16 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Reduction<ConvSimd256, Vector256<float>, Int6, Int2>(pixels, pix, d, 16, b, tap, acc); }));
        variants.Add(("Reduction 256 J4 CV2", 2.0 * pixels * 4 * 16 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Reduction<ConvSimd256, Vector256<float>, Int4, Int2>(pixels, pix, d, 16, b, tap, acc); }));
        var times = variants.Select(_ => new List<double>()).ToArray();
        foreach (var v in variants) v.Body(); // JIT to tier 1 (AggressiveOptimization) and warm the caches
        for (int r = 0; r < reps; r++)
        {
            for (int i = 0; i < variants.Count; i++)
            {
                double t0 = ThreadClock.Seconds();
                variants[i].Body();
                times[i].Add(ThreadClock.Seconds() - t0);
            }
        }
        Console.WriteLine($"conv micro-kernels, one thread, {(ThreadClock.IsThreadTime ? "thread CPU time" : "wall clock")}, median of {reps}");
        for (int i = 0; i < variants.Count; i++)
        {
            times[i].Sort();
            double t = times[i][reps / 2];
            Console.WriteLine($"  {variants[i].Name,-28} median {variants[i].Flops / t * 1e-9,6:F1}  best {variants[i].Flops / times[i][0] * 1e-9,6:F1} GFLOP/s");
        }
    }

    private static void PreBroadcast(int taps, int* off, float* a, float* b, float* o)
    {
        Vector256<float> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default;
        Vector256<float> c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        for (int k = 0; k < taps; k++, a += 32)
        {
            float* bk = b + off[k];
            var b0 = Vector256.Load(bk); var b1 = Vector256.Load(bk + 8); var b2 = Vector256.Load(bk + 16);
            var w = Vector256.Load(a);
            c00 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b0, w, c00); c01 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b1, w, c01); c02 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b2, w, c02);
            w = Vector256.Load(a + 8);
            c10 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b0, w, c10); c11 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b1, w, c11); c12 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b2, w, c12);
            w = Vector256.Load(a + 16);
            c20 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b0, w, c20); c21 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b1, w, c21); c22 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b2, w, c22);
            w = Vector256.Load(a + 24);
            c30 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b0, w, c30); c31 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b1, w, c31); c32 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(b2, w, c32);
        }
        (c00 + c01 + c02 + c10 + c11 + c12 + c20 + c21 + c22 + c30 + c31 + c32).Store(o);
    }

    private static void PeakLoads2(int n, float* p, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < n; i++)
        {
            var l0 = Vector256.Load(p + 0);
            var l1 = Vector256.Load(p + 8);
            a0 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a0, l0, l1);
            a1 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a1, l1, l0);
            a2 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a2, l0, l1);
            a3 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a3, l1, l0);
            a4 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a4, l0, l1);
            a5 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a5, l1, l0);
            a6 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a6, l0, l1);
            a7 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a7, l1, l0);
            a8 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a8, l0, l1);
            a9 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a9, l1, l0);
            a10 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a10, l0, l1);
            a11 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a11, l1, l0);
        }
        (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).Store(o);
    }

    private static void PeakLoads4(int n, float* p, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < n; i++)
        {
            var l0 = Vector256.Load(p + 0);
            var l1 = Vector256.Load(p + 8);
            var l2 = Vector256.Load(p + 16);
            var l3 = Vector256.Load(p + 24);
            a0 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a0, l0, l1);
            a1 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a1, l1, l2);
            a2 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a2, l2, l3);
            a3 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a3, l3, l0);
            a4 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a4, l0, l1);
            a5 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a5, l1, l2);
            a6 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a6, l2, l3);
            a7 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a7, l3, l0);
            a8 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a8, l0, l1);
            a9 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a9, l1, l2);
            a10 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a10, l2, l3);
            a11 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a11, l3, l0);
        }
        (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).Store(o);
    }

    private static void PeakLoads6(int n, float* p, float* o)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < n; i++)
        {
            var l0 = Vector256.Load(p + 0);
            var l1 = Vector256.Load(p + 8);
            var l2 = Vector256.Load(p + 16);
            var l3 = Vector256.Load(p + 24);
            var l4 = Vector256.Load(p + 32);
            var l5 = Vector256.Load(p + 40);
            a0 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a0, l0, l1);
            a1 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a1, l1, l2);
            a2 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a2, l2, l3);
            a3 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a3, l3, l4);
            a4 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a4, l4, l5);
            a5 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a5, l5, l0);
            a6 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a6, l0, l1);
            a7 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a7, l1, l2);
            a8 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a8, l2, l3);
            a9 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a9, l3, l4);
            a10 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a10, l4, l5);
            a11 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a11, l5, l0);
        }
        (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).Store(o);
    }

    private static void Peak(int n, float* o)
    {
        var x = Vector256.Create(1.0001f);
        var y = Vector256.Create(0.9999f);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
        Vector256<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
        for (int i = 0; i < n; i++)
        {
            a0 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a0, x, y); a1 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a1, x, y);
            a2 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a2, x, y); a3 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a3, x, y);
            a4 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a4, x, y); a5 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a5, x, y);
            a6 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a6, x, y); a7 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a7, x, y);
            a8 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a8, x, y); a9 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a9, x, y);
            a10 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a10, x, y); a11 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(a11, x, y);
        }
        (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11).Store(o);
    }

    private static float* Alloc(int n, Random rng)
    {
        var p = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)n * 4, 64);
        for (int i = 0; i < n; i++) p[i] = (float)rng.NextDouble();
        return p;
    }
}
