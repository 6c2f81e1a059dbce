using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using DiffusionCore.Kernels.Cpu;
using static DiffusionCore.Kernels.Gemm.GemmMicroKernel;

namespace DiffusionCore.Kernels.Gemm;

/// <summary>
/// Row-major GEMM on the CPU: C = alpha * op(A) * op(B) + beta * C, op(A) is m x k, op(B) is k x n.
/// Leading dimensions are the row strides of the stored (untransposed) matrices.
/// </summary>
public static unsafe class GemmCpu
{
    /// <summary>
    /// Depth of a packed block. A kc x NR micro-panel of B (256 x 32 floats = 32 KB) stays in Zen 5's
    /// 48 KB L1 while the micro-kernel sweeps the A micro-panels (8 KB each) past it.
    /// </summary>
    private const int KC = 256;

    /// <summary>Rows of a packed block of A: MC x KC floats = 384 KB, under half of the 1 MB L2.</summary>
    private const int MC = 384;

    /// <summary>Columns of a packed block of B: KC x NC floats = 4 MB, a slice of the 32 MB L3.</summary>
    private const int NC = 4096;

    /// <summary>
    /// Below this many multiply-adds (m * n * k) the plain loop wins: packing and the fixed 8 x 32 tile
    /// cost more than they save (measured here: even at 8 x 8 x 8, packed 3x faster at 16 x 16 x 16).
    /// </summary>
    private const long SmallWork = 512;

    /// <summary>
    /// Multiply-adds a thread must get before splitting the product over threads pays (about 20 us of
    /// work: measured here, 192^3 was still faster on one thread, 256^3 faster on two).
    /// </summary>
    private const long MinWorkPerThread = 1 << 22;

    /// <summary>
    /// Floats of op(B) packed at once when threads share it (16 MB, half of the L3): the column block
    /// narrows below NC when the depth is large.
    /// </summary>
    private const int SharedPackFloats = 1 << 22;

    /// <summary>
    /// Blocks of rows per thread (at least) when rows are shared out: two let an early finisher help a
    /// preempted thread; more, smaller blocks cost more than they balance (measured on K1: 256-row blocks
    /// about 7% faster than 128-row ones, each block streams all of packed B from L3 once per depth block).
    /// </summary>
    private const int UnitsPerThread = 2;

    /// <summary>Smallest block of rows handed to a thread: 8 micro-kernel calls per B micro-panel loaded.</summary>
    private const int MinRowBlock = 8 * MR;

    [ThreadStatic] private static float[]? s_packA;
    [ThreadStatic] private static float[]? s_packB;

    /// <summary>
    /// Single-precision GEMM: cache-blocked and packed (Goto's algorithm as in BLIS) around an 8 x 32
    /// AVX-512 micro-kernel (Vector256 where Vector512 is not accelerated, the plain loop for tiny products
    /// or without SIMD), split over <see cref="CpuParallel.Threads"/> threads by blocks of rows of C (op(B)
    /// packed once and shared) or, for few rows, by columns. When <paramref name="beta"/> is 0, C is not
    /// read (NaN in C is overwritten). The result does not depend on the thread count.
    /// </summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        Validate("Sgemm", transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0f)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        if ((long)m * n * k < SmallWork || !Vector256.IsHardwareAccelerated)
        {
            Simple(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        fixed (float* pa = a, pb = b, pc = c)
            Packed(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc);
    }

    /// <summary>Double-precision GEMM (used by gradient checks; small sizes).</summary>
    public static void Dgemm(bool transA, bool transB, int m, int n, int k, double alpha,
        ReadOnlySpan<double> a, int lda, ReadOnlySpan<double> b, int ldb, double beta, Span<double> c, int ldc)
    {
        Validate("Dgemm", transA, transB, m, n, k, a.Length, lda, b.Length, ldb, c.Length, ldc);
        Simple(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    /// <summary>Straightforward i-p-j loop order GEMM; correct for every shape and transpose.</summary>
    public static void Simple<T>(bool transA, bool transB, int m, int n, int k, T alpha,
        ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (beta == T.Zero) row.Clear();
            else if (beta != T.One) for (int j = 0; j < n; j++) row[j] *= beta;
            for (int p = 0; p < k; p++)
            {
                T aip = alpha * (transA ? a[p * lda + i] : a[i * lda + p]);
                if (!transB)
                {
                    var brow = b.Slice(p * ldb, n);
                    for (int j = 0; j < n; j++) row[j] += aip * brow[j];
                }
                else
                {
                    for (int j = 0; j < n; j++) row[j] += aip * b[j * ldb + p];
                }
            }
        }
    }

    /// <summary>Checks sizes, leading dimensions and that every buffer holds the matrix it is said to hold.</summary>
    private static void Validate(string kernel, bool transA, bool transB, int m, int n, int k,
        int aLength, int lda, int bLength, int ldb, int cLength, int ldc)
    {
        if (m < 0 || n < 0 || k < 0)
            throw new KernelException(kernel, $"sizes must be non-negative, got m={m}, n={n}, k={k}");
        CheckMatrix(kernel, "A", transA ? k : m, transA ? m : k, aLength, lda, transA);
        CheckMatrix(kernel, "B", transB ? n : k, transB ? k : n, bLength, ldb, transB);
        CheckMatrix(kernel, "C", m, n, cLength, ldc, false);
    }

    private static void CheckMatrix(string kernel, string name, int rows, int cols, int length, int ld, bool trans)
    {
        long needed = rows == 0 || cols == 0 ? 0 : (long)(rows - 1) * ld + cols;
        if (ld >= cols && length >= needed) return;
        string stored = $"{name}{(trans ? " (transposed)" : "")} stored as {rows} x {cols}";
        if (ld < cols)
            throw new KernelException(kernel, $"{stored} needs a leading dimension >= {cols}, got {ld}");
        throw new KernelException(kernel, $"{stored} with leading dimension {ld} needs {needed} elements, got {length}");
    }

    /// <summary>C = beta * C (k == 0 or alpha == 0); beta == 0 clears without reading C.</summary>
    private static void ScaleC(int m, int n, float beta, Span<float> c, int ldc)
    {
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <summary>
    /// Chooses how to spread the product over threads. With enough rows, op(B) is packed once and shared,
    /// and the threads take blocks of rows of C from a common counter, so a thread that the OS preempts
    /// (the cores are shared) is covered by the others. With few rows (skinny m), the columns of C are
    /// split evenly and each thread runs the whole blocked product on its columns.
    /// </summary>
    private static void Packed(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        long work = (long)m * n * k;
        int threads = (int)Math.Min(CpuParallel.Threads, Math.Max(1, work / MinWorkPerThread));
        if (threads <= 1)
        {
            Blocked(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        // A multiple of the thread count of row blocks, each at most MC rows, so that they share out evenly.
        int rowBlocks = Math.Max(UnitsPerThread * threads, RoundUp((m + MC - 1) / MC, threads));
        int rowBlock = Math.Max(MinRowBlock, RoundUp((m + rowBlocks - 1) / rowBlocks, MR));
        if (m >= threads * rowBlock)
        {
            SharedB(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads, rowBlock);
            return;
        }
        int nTiles = (n + NR - 1) / NR;
        CpuParallel.For(nTiles, Math.Max(1, nTiles / threads), (start, end) =>
        {
            int j0 = (int)start * NR, j1 = Math.Min(n, (int)end * NR);
            float* bj = transB ? b + (long)j0 * ldb : b + j0;
            Blocked(transA, transB, m, j1 - j0, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc);
        });
    }

    /// <summary>
    /// Multithreaded product over rows, with two fork-joins per block of columns: first the threads pack
    /// every KC x NR micro-panel of op(B) over the whole depth into one shared buffer (L3-sized), then
    /// they take blocks of <paramref name="rowBlock"/> rows of C from a common counter and run the whole
    /// depth on each, packing its rows of A into their own buffers. Each element of C still sums its
    /// depth blocks in order, so the result does not depend on the thread count.
    /// </summary>
    private static void SharedB(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, int threads, int rowBlock)
    {
        int ncMax = Math.Clamp(SharedPackFloats / k / NR * NR, NR, NC);
        int ncRounded = RoundUp(Math.Min(ncMax, n), NR);
        float* packB = PackBuffer(ref s_packB, checked(k * ncRounded));
        int rowBlocks = (m + rowBlock - 1) / rowBlock;
        int depthBlocks = (k + KC - 1) / KC;
        for (int jc = 0; jc < n; jc += ncMax)
        {
            int nc = Math.Min(ncMax, n - jc);
            int panels = (nc + NR - 1) / NR;
            CpuParallel.For((long)depthBlocks * panels, Math.Max(1, depthBlocks * panels / threads), (start, end) =>
            {
                for (long unit = start; unit < end; unit++)
                {
                    int pc = (int)(unit / panels) * KC, jr = (int)(unit % panels) * NR, j = jc + jr;
                    int kc = Math.Min(KC, k - pc);
                    PackBPanel(transB, Math.Min(NR, nc - jr), kc,
                        transB ? b + (long)j * ldb + pc : b + (long)pc * ldb + j, ldb, packB + (long)pc * ncRounded + (long)jr * kc);
                }
            });
            int nextBlock = 0;
            CpuParallel.For(threads, 1, (_, _) =>
            {
                float* packA = PackBuffer(ref s_packA, rowBlock * Math.Min(KC, k));
                for (int block; (block = Interlocked.Increment(ref nextBlock) - 1) < rowBlocks;)
                {
                    int ic = block * rowBlock, mc = Math.Min(rowBlock, m - ic);
                    for (int pc = 0; pc < k; pc += KC)
                    {
                        MacroKernel(transA, transB, false, mc, nc, Math.Min(KC, k - pc), alpha, pc == 0 ? beta : 1f,
                            transA ? a + (long)pc * lda + ic : a + (long)ic * lda + pc, lda,
                            b, ldb, packA, packB + (long)pc * ncRounded, c + (long)ic * ldc + jc, ldc);
                    }
                }
            });
        }
    }

    /// <summary>
    /// One thread's product, blocked for the caches (Goto's algorithm, BLIS loop order jc, pc, ic, jr, ir):
    /// B in KC x NC blocks (L3), A in MC x KC blocks (L2), micro-panels of B (L1) and of A streamed
    /// through the register tile. The first depth block applies the caller's beta, the following ones
    /// accumulate (beta = 1).
    /// </summary>
    private static void Blocked(bool transA, bool transB, int m, int n, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        int kcMax = Math.Min(KC, k);
        float* packA = PackBuffer(ref s_packA, RoundUp(Math.Min(MC, m), MR) * kcMax);
        float* packB = PackBuffer(ref s_packB, RoundUp(Math.Min(NC, n), NR) * kcMax);
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int pc = 0; pc < k; pc += KC)
            {
                int kc = Math.Min(KC, k - pc);
                float betaBlock = pc == 0 ? beta : 1f;
                float* bBlock = transB ? b + (long)jc * ldb + pc : b + (long)pc * ldb + jc;
                for (int ic = 0; ic < m; ic += MC)
                {
                    MacroKernel(transA, transB, ic == 0, Math.Min(MC, m - ic), nc, kc, alpha, betaBlock,
                        transA ? a + (long)pc * lda + ic : a + (long)ic * lda + pc, lda,
                        bBlock, ldb, packA, packB, c + (long)ic * ldc + jc, ldc);
                }
            }
        }
    }

    /// <summary>
    /// C[mc x nc] = alpha * op(A)[mc x kc] * op(B)[kc x nc] + beta * C, with aBlock, bBlock and cBlock at
    /// the blocks' first elements. Every A micro-panel is packed just before its first use (in the first
    /// column sweep), and so is every B micro-panel when <paramref name="packB"/> is set (otherwise
    /// <paramref name="packedB"/> already holds them): the loads of packing overlap the micro-kernels
    /// instead of stalling in a separate pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MacroKernel(bool transA, bool transB, bool packB, int mc, int nc, int kc, float alpha, float beta,
        float* aBlock, int lda, float* bBlock, int ldb, float* packedA, float* packedB, float* cBlock, int ldc)
    {
        bool wide = Vector512.IsHardwareAccelerated;
        for (int jr = 0; jr < nc; jr += NR)
        {
            int cols = Math.Min(NR, nc - jr);
            float* bp = packedB + (long)jr * kc;
            if (packB) PackBPanel(transB, cols, kc, transB ? bBlock + (long)jr * ldb : bBlock + jr, ldb, bp);
            float* cj = cBlock + jr;
            for (int ir = 0; ir < mc; ir += MR)
            {
                int rows = Math.Min(MR, mc - ir);
                float* ap = packedA + (long)ir * kc;
                if (jr == 0)
                    PackAPanel(transA, rows, Math.Min(MR, mc - ir - MR), kc, transA ? aBlock + ir : aBlock + (long)ir * lda, lda, ap);
                if (wide) Kernel512(kc, ap, bp, cj + (long)ir * ldc, ldc, rows, cols, alpha, beta);
                else Kernel256(kc, ap, bp, cj + (long)ir * ldc, ldc, rows, cols, alpha, beta);
            }
        }
    }

    /// <summary>
    /// Packs rows x kc of op(A) (src points at its first element) into an MR-row micro-panel stored column
    /// by column (element (r, p) at p * MR + r), zero-padded to MR rows. <paramref name="nextRows"/> rows
    /// of the following panel are prefetched.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackAPanel(bool transA, int rows, int nextRows, int kc, float* src, int lda, float* dst)
    {
        if (transA)
        {
            // op(A)(i, p) = A[p, i]: MR consecutive floats of stored row p.
            float* s = src;
            for (int p = 0; p < kc; p++, s += lda)
            {
                float* d = dst + p * MR;
                if (rows == MR) Vector256.Store(Vector256.Load(s), d);
                else for (int r = 0; r < MR; r++) d[r] = r < rows ? s[r] : 0f;
            }
            return;
        }

        // op(A)(i, p) = A[i, p]: rows of A become columns of the panel, 8 x 8 blocks at a time.
        int p0 = 0;
        if (rows == MR && Avx.IsSupported)
        {
            // The next panel's rows are short strided streams (kc floats, lda apart) that the hardware
            // prefetcher barely catches; fetch them a cache line per row at a time.
            float* next = src + MR * (long)lda;
            for (; p0 + 8 <= kc; p0 += 8)
            {
                if ((p0 & 15) == 0)
                    for (int r = 0; r < nextRows; r++) Sse.Prefetch0(next + r * (long)lda + p0);
                Transpose8x8(src + p0, lda, dst + p0 * MR, MR);
            }
        }
        for (int r = 0; r < MR; r++)
        {
            float* d = dst + r;
            if (r >= rows) for (int p = p0; p < kc; p++) d[p * MR] = 0f;
            else for (int p = p0; p < kc; p++) d[p * MR] = src[(long)r * lda + p];
        }
    }

    /// <summary>
    /// Packs kc x cols of op(B) (src points at its first element) into an NR-column micro-panel stored row
    /// by row (element (p, j) at p * NR + j), zero-padded to NR columns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBPanel(bool transB, int cols, int kc, float* src, int ldb, float* dst)
    {
        if (!transB)
        {
            // op(B)(p, j) = B[p, j]: NR consecutive floats of stored row p.
            float* s = src;
            for (int p = 0; p < kc; p++, s += ldb)
            {
                float* d = dst + p * NR;
                if (cols == NR)
                {
                    Vector256.Store(Vector256.Load(s), d);
                    Vector256.Store(Vector256.Load(s + 8), d + 8);
                    Vector256.Store(Vector256.Load(s + 16), d + 16);
                    Vector256.Store(Vector256.Load(s + 24), d + 24);
                }
                else for (int j = 0; j < NR; j++) d[j] = j < cols ? s[j] : 0f;
            }
            return;
        }

        // op(B)(p, j) = B[j, p]: rows of B become columns of the panel, 8 x 8 blocks at a time.
        int p0 = 0;
        if (cols == NR && Avx.IsSupported)
            for (; p0 + 8 <= kc; p0 += 8)
                for (int jb = 0; jb < NR; jb += 8) Transpose8x8(src + (long)jb * ldb + p0, ldb, dst + p0 * NR + jb, NR);
        for (int j = 0; j < NR; j++)
        {
            float* d = dst + j;
            if (j >= cols) for (int p = p0; p < kc; p++) d[p * NR] = 0f;
            else for (int p = p0; p < kc; p++) d[p * NR] = src[(long)j * ldb + p];
        }
    }

    /// <summary>
    /// dst[q * dstStride + r] = src[r * ld + q] for r, q in [0, 8): the usual AVX 8 x 8 transpose in three
    /// rounds of shuffles (pairs of rows, pairs of pairs, then 128-bit halves).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* src, int ld, float* dst, int dstStride)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + ld);
        var r2 = Avx.LoadVector256(src + 2L * ld); var r3 = Avx.LoadVector256(src + 3L * ld);
        var r4 = Avx.LoadVector256(src + 4L * ld); var r5 = Avx.LoadVector256(src + 5L * ld);
        var r6 = Avx.LoadVector256(src + 6L * ld); var r7 = Avx.LoadVector256(src + 7L * ld);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + dstStride, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * dstStride, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * dstStride, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * dstStride, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * dstStride, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * dstStride, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * dstStride, Avx.Permute2x128(u3, u7, 0x31));
    }

    private static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;

    /// <summary>
    /// This thread's packing buffer of at least <paramref name="length"/> floats, aligned to 64 bytes.
    /// Kept per thread on the pinned heap and grown only when a larger block is asked for, so a steady
    /// sequence of products allocates nothing.
    /// </summary>
    private static float* PackBuffer(ref float[]? buffer, int length)
    {
        const int alignFloats = 64 / sizeof(float);
        if (buffer is null || buffer.Length < length + alignFloats)
            buffer = GC.AllocateUninitializedArray<float>(length + alignFloats, pinned: true);
        float* p = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        return (float*)(((nint)p + 63) & ~(nint)63);
    }
}
