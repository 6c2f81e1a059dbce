using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Bench.Lab;

/// <summary>
/// Throughput of the convolution micro-kernels alone, operands resident in L1: the ceiling each path can reach,
/// next to a 12-accumulator FMA loop (the core's ceiling). Single thread, thread CPU time, variants interleaved;
/// the best repetition is the undisturbed figure on a shared machine. Measured here (Zen 3, AVX2, loaded
/// machine, best of 41): FMA loop 102, Product 4x3 95-99, Reduction 6x2 100 GFLOP/s; 3x4 spills (17 ymm
/// registers) and runs at 44.
/// </summary>
internal static unsafe class ConvMicroLab
{
    public static void Run()
    {
        const int taps = 576, reps = 41, calls = 500;
        var rng = new Random(1);
        float* b = Alloc(4096, rng), a = Alloc(taps * 8, rng), o = Alloc(8 * 256, rng);
        int* off = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)taps * 4, 64);
        int* offAligned = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)taps * 4, 64);
        for (int k = 0; k < taps; k++) offAligned[k] = (k % 16) * 32;
        for (int k = 0; k < taps; k++) off[k] = (k % 9 / 3) * 34 + k % 3 + (k / 9 % 4) * 128; // a 3x3 pattern over 4 planes
        var variants = new List<(string Name, double Flops, Action Body)>
        {
            ("FMA peak 12 acc", 2.0 * 8 * 12 * taps * calls, () => { for (int i = 0; i < calls; i++) Peak(taps, o); }),
            ("Product 256 C4 V3 aligned", 2.0 * taps * 4 * 24 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int4, Int3>(taps, offAligned, a, b, o, 256, false); }),
            ("Product 256 C4 V3", 2.0 * taps * 4 * 24 * calls, () => { for (int i = 0; i < calls; i++) ConvMicroKernels.Product<ConvSimd256, Vector256<float>, Int4, Int3>(taps, off, a, b, o, 256, false); }),
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
