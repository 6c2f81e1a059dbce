using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace DiffusionCore.Kernels.Gemm;

/// <summary>
/// Register-blocked micro-kernels of the packed GEMM (Goto and van de Geijn 2008; Van Zee and van de
/// Geijn 2015, BLIS): C[MR x NR] = alpha * Ap * Bp + beta * C, where Ap is an MR x kc micro-panel of
/// op(A) stored column by column (element (r, p) at p * MR + r) and Bp is a kc x NR micro-panel of op(B)
/// stored row by row (element (p, j) at p * NR + j), both zero-padded to full MR and NR by the packing.
/// </summary>
internal static unsafe class GemmMicroKernel
{
    /// <summary>Rows of the register tile: one broadcast of A per row and k step.</summary>
    public const int MR = 8;

    /// <summary>Columns of the register tile: two Vector512&lt;float&gt; per row.</summary>
    public const int NR = 32;

    /// <summary>
    /// AVX-512 kernel: 8 rows x 2 zmm = 16 accumulators, enough independent FMA chains to cover the
    /// 4-cycle FMA latency of Zen 5's two 512-bit pipes, plus 2 registers for the B row and one for the
    /// broadcast of A. Per k step: 2 vector loads of B, 8 broadcasts of A, 16 FMAs.
    /// Only the leading <paramref name="rows"/> x <paramref name="cols"/> part of the tile is written to C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Kernel512(int kc, float* a, float* b, float* c, int ldc, int rows, int cols, float alpha, float beta)
    {
        if (Sse.IsSupported)
        {
            // The tile of C is read and written only after the k loop; start fetching its lines now, as
            // they are usually long evicted (rows of C are ldc floats apart, and C is revisited only once
            // per depth block).
            for (int r = 0; r < rows; r++)
            {
                Sse.PrefetchNonTemporal(c + (long)r * ldc);
                Sse.PrefetchNonTemporal(c + (long)r * ldc + cols - 1);
            }
        }
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00); c01 = Vector512.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(ai, b0, c10); c11 = Vector512.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(ai, b0, c20); c21 = Vector512.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(ai, b0, c30); c31 = Vector512.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(ai, b0, c40); c41 = Vector512.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(ai, b0, c50); c51 = Vector512.FusedMultiplyAdd(ai, b1, c51);
            ai = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(ai, b0, c60); c61 = Vector512.FusedMultiplyAdd(ai, b1, c61);
            ai = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(ai, b0, c70); c71 = Vector512.FusedMultiplyAdd(ai, b1, c71);
            a += MR;
            b += NR;
        }

        if (rows == MR && cols == NR)
        {
            UpdateRow(c, c00, c01, alpha, beta); c += ldc;
            UpdateRow(c, c10, c11, alpha, beta); c += ldc;
            UpdateRow(c, c20, c21, alpha, beta); c += ldc;
            UpdateRow(c, c30, c31, alpha, beta); c += ldc;
            UpdateRow(c, c40, c41, alpha, beta); c += ldc;
            UpdateRow(c, c50, c51, alpha, beta); c += ldc;
            UpdateRow(c, c60, c61, alpha, beta); c += ldc;
            UpdateRow(c, c70, c71, alpha, beta);
            return;
        }

        float* tile = stackalloc float[MR * NR];
        c00.Store(tile + 0 * NR); c01.Store(tile + 0 * NR + 16);
        c10.Store(tile + 1 * NR); c11.Store(tile + 1 * NR + 16);
        c20.Store(tile + 2 * NR); c21.Store(tile + 2 * NR + 16);
        c30.Store(tile + 3 * NR); c31.Store(tile + 3 * NR + 16);
        c40.Store(tile + 4 * NR); c41.Store(tile + 4 * NR + 16);
        c50.Store(tile + 5 * NR); c51.Store(tile + 5 * NR + 16);
        c60.Store(tile + 6 * NR); c61.Store(tile + 6 * NR + 16);
        c70.Store(tile + 7 * NR); c71.Store(tile + 7 * NR + 16);
        UpdateFromTile(tile, c, ldc, rows, cols, alpha, beta);
    }

    /// <summary>
    /// Vector256 kernel for machines without accelerated Vector512 (16 ymm registers on AVX2): the tile
    /// is done as four 4 x 16 quarters of 8 accumulators each, reading the same packed panels.
    /// </summary>
    public static void Kernel256(int kc, float* a, float* b, float* c, int ldc, int rows, int cols, float alpha, float beta)
    {
        float* tile = stackalloc float[MR * NR];
        for (int r0 = 0; r0 < rows; r0 += 4)
        {
            for (int j0 = 0; j0 < cols; j0 += 16)
            {
                Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
                Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
                float* ap = a + r0, bp = b + j0;
                for (int p = 0; p < kc; p++)
                {
                    var b0 = Vector256.Load(bp);
                    var b1 = Vector256.Load(bp + 8);
                    var ai = Vector256.Create(ap[0]);
                    c00 = Vector256.FusedMultiplyAdd(ai, b0, c00); c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
                    ai = Vector256.Create(ap[1]);
                    c10 = Vector256.FusedMultiplyAdd(ai, b0, c10); c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
                    ai = Vector256.Create(ap[2]);
                    c20 = Vector256.FusedMultiplyAdd(ai, b0, c20); c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
                    ai = Vector256.Create(ap[3]);
                    c30 = Vector256.FusedMultiplyAdd(ai, b0, c30); c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
                    ap += MR;
                    bp += NR;
                }
                float* t = tile + r0 * NR + j0;
                c00.Store(t); c01.Store(t + 8); t += NR;
                c10.Store(t); c11.Store(t + 8); t += NR;
                c20.Store(t); c21.Store(t + 8); t += NR;
                c30.Store(t); c31.Store(t + 8);
            }
        }
        UpdateFromTile(tile, c, ldc, rows, cols, alpha, beta);
    }

    /// <summary>C row (32 floats) = alpha * acc + beta * C row; beta == 0 never reads C (it may hold NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UpdateRow(float* c, Vector512<float> acc0, Vector512<float> acc1, float alpha, float beta)
    {
        var va = Vector512.Create(alpha);
        if (beta == 0f)
        {
            (acc0 * va).Store(c);
            (acc1 * va).Store(c + 16);
        }
        else if (beta == 1f)
        {
            Vector512.FusedMultiplyAdd(acc0, va, Vector512.Load(c)).Store(c);
            Vector512.FusedMultiplyAdd(acc1, va, Vector512.Load(c + 16)).Store(c + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Vector512.FusedMultiplyAdd(acc0, va, Vector512.Load(c) * vb).Store(c);
            Vector512.FusedMultiplyAdd(acc1, va, Vector512.Load(c + 16) * vb).Store(c + 16);
        }
    }

    /// <summary>Edge tiles: C[rows x cols] = alpha * tile + beta * C, element by element.</summary>
    private static void UpdateFromTile(float* tile, float* c, int ldc, int rows, int cols, float alpha, float beta)
    {
        for (int r = 0; r < rows; r++, c += ldc, tile += NR)
        {
            if (beta == 0f)
                for (int j = 0; j < cols; j++) c[j] = alpha * tile[j];
            else
                for (int j = 0; j < cols; j++) c[j] = MathF.FusedMultiplyAdd(alpha, tile[j], beta * c[j]);
        }
    }
}
