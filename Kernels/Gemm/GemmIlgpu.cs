using System.Numerics;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;

namespace DiffusionCore.Kernels.Gemm;

/// <summary>Scalars of one (batched) GEMM launch, passed by value to <see cref="GemmIlgpu.Gemm{T}"/>.</summary>
public struct GemmParams<T> where T : unmanaged
{
    /// <summary>1 when A is stored transposed (k x m, lda = m), else 0 (m x k, lda = k).</summary>
    public int TransA;

    /// <summary>1 when B is stored transposed (n x k, ldb = k), else 0 (k x n, ldb = n).</summary>
    public int TransB;

    /// <summary>Rows of op(A) and C.</summary>
    public int M;

    /// <summary>Columns of op(B) and C.</summary>
    public int N;

    /// <summary>Depth: columns of op(A), rows of op(B).</summary>
    public int K;

    /// <summary>Row stride of the stored A.</summary>
    public int Lda;

    /// <summary>Row stride of the stored B.</summary>
    public int Ldb;

    /// <summary>Element offsets of the first matrix and batch strides (0 reuses one matrix for every batch entry).</summary>
    public long AOffset, ABatchStride, BOffset, BBatchStride, COffset, CBatchStride;

    /// <summary>C = Alpha op(A) op(B) + Beta C; Beta = 0 does not read C.</summary>
    public T Alpha, Beta;
}

/// <summary>
/// A 4 x 4 block of accumulators held in registers: sixteen named fields rather than an array, so that ILGPU
/// keeps them as scalar values (an array would live in local memory, which on a GPU is slow off-chip memory).
/// </summary>
public struct Block4x4<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Row 0.</summary>
    public T C00, C01, C02, C03;

    /// <summary>Row 1.</summary>
    public T C10, C11, C12, C13;

    /// <summary>Row 2.</summary>
    public T C20, C21, C22, C23;

    /// <summary>Row 3.</summary>
    public T C30, C31, C32, C33;

    /// <summary>Adds the outer product of column (a0..a3) and row (b0..b3).</summary>
    public void Fma(T a0, T a1, T a2, T a3, T b0, T b1, T b2, T b3)
    {
        C00 += a0 * b0; C01 += a0 * b1; C02 += a0 * b2; C03 += a0 * b3;
        C10 += a1 * b0; C11 += a1 * b1; C12 += a1 * b2; C13 += a1 * b3;
        C20 += a2 * b0; C21 += a2 * b1; C22 += a2 * b2; C23 += a2 * b3;
        C30 += a3 * b0; C31 += a3 * b1; C32 += a3 * b2; C33 += a3 * b3;
    }
}

/// <summary>
/// Tiled, register-blocked GEMM for ILGPU (the structure of the classic CUDA SGEMM kernels, e.g. Volkov and
/// Demmel 2008; NVIDIA's CUTLASS "thread tile" design): each group of <see cref="GroupSize"/> threads computes a
/// <see cref="TileM"/> x <see cref="TileN"/> tile of C, stepping through the depth <see cref="TileK"/> at a time.
/// At each step the group stages a TileK-deep slice of op(A) and op(B) in shared memory (loads coalesced along
/// the stored rows, out-of-range elements as zeros), then every thread accumulates an 8 x 8 sub-tile in
/// registers from them: per depth index it reads 8 values of A and 8 of B and does 64 multiply-adds, so shared
/// memory traffic is 1/4 of the arithmetic. A thread's 8 x 8 is four 4 x 4 blocks half a tile apart, which
/// spreads a warp's shared-memory reads over the banks. Batched through the grid's third axis.
/// </summary>
public static class GemmIlgpu
{
    /// <summary>Rows of C per group.</summary>
    public const int TileM = 128;

    /// <summary>Columns of C per group.</summary>
    public const int TileN = 128;

    /// <summary>Depth staged in shared memory per step.</summary>
    public const int TileK = 8;

    /// <summary>Threads across the columns of a tile.</summary>
    public const int ThreadsX = 16;

    /// <summary>Threads down the rows of a tile.</summary>
    public const int ThreadsY = 16;

    /// <summary>Threads per group (TileM * TileN / 64: each thread owns 64 outputs).</summary>
    public const int GroupSize = ThreadsX * ThreadsY;

    /// <summary>Side of a thread's accumulator blocks (<see cref="Block4x4{T}"/>).</summary>
    private const int Sub = 4;

    /// <summary>Distance between a thread's two blocks along each axis: half a tile.</summary>
    private const int Half = TileM / 2;

    /// <summary>
    /// Padding of each shared row. Untransposed A is written to shared memory transposed (depth-major) by threads
    /// that walk the depth; without padding the eight depth values of one row would land in one bank.
    /// </summary>
    private const int Pad = 4;

    private const int StrideM = TileM + Pad;
    private const int StrideN = TileN + Pad;

    /// <summary>Elements of the A (and of the B) tile each thread stages per step.</summary>
    private const int LoadsPerThread = TileK * TileM / GroupSize;

    /// <summary>
    /// C[b] = alpha op(A[b]) op(B[b]) + beta C[b], row-major, C rows of length N. Launch with grid
    /// (ceil(N / TileN), ceil(M / TileM), batch) and groups of <see cref="GroupSize"/> threads.
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    public static void Gemm<T>(ArrayView<T> a, ArrayView<T> b, ArrayView<T> c, GemmParams<T> p)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var sa = SharedMemory.Allocate<T>(TileK * StrideM);
        var sb = SharedMemory.Allocate<T>(TileK * StrideN);
        int tid = Group.IdxX;
        int tx = tid % ThreadsX, ty = tid / ThreadsX;
        int m0 = Grid.IdxY * TileM, n0 = Grid.IdxX * TileN;
        long batch = Grid.IdxZ;
        long aBase = p.AOffset + batch * p.ABatchStride;
        long bBase = p.BOffset + batch * p.BBatchStride;
        long cBase = p.COffset + batch * p.CBatchStride;

        var c00 = default(Block4x4<T>);
        var c01 = default(Block4x4<T>);
        var c10 = default(Block4x4<T>);
        var c11 = default(Block4x4<T>);

        for (int k0 = 0; k0 < p.K; k0 += TileK)
        {
            for (int j = 0; j < LoadsPerThread; j++)
            {
                int e = tid + j * GroupSize;
                int mm, kk;
                long src;
                if (p.TransA != 0)
                {
                    kk = e / TileM;
                    mm = e % TileM;
                    src = aBase + (long)(k0 + kk) * p.Lda + m0 + mm;
                }
                else
                {
                    mm = e / TileK;
                    kk = e % TileK;
                    src = aBase + (long)(m0 + mm) * p.Lda + k0 + kk;
                }
                T value = T.Zero;
                if (m0 + mm < p.M && k0 + kk < p.K) value = a[src];
                sa[kk * StrideM + mm] = value;
            }
            for (int j = 0; j < LoadsPerThread; j++)
            {
                int e = tid + j * GroupSize;
                int nn, kk;
                long src;
                if (p.TransB != 0)
                {
                    nn = e / TileK;
                    kk = e % TileK;
                    src = bBase + (long)(n0 + nn) * p.Ldb + k0 + kk;
                }
                else
                {
                    kk = e / TileN;
                    nn = e % TileN;
                    src = bBase + (long)(k0 + kk) * p.Ldb + n0 + nn;
                }
                T value = T.Zero;
                if (n0 + nn < p.N && k0 + kk < p.K) value = b[src];
                sb[kk * StrideN + nn] = value;
            }
            Group.Barrier();

            for (int kk = 0; kk < TileK; kk++)
            {
                int ra = kk * StrideM + ty * Sub, rb = kk * StrideN + tx * Sub;
                T a0 = sa[ra], a1 = sa[ra + 1], a2 = sa[ra + 2], a3 = sa[ra + 3];
                T a4 = sa[ra + Half], a5 = sa[ra + Half + 1], a6 = sa[ra + Half + 2], a7 = sa[ra + Half + 3];
                T b0 = sb[rb], b1 = sb[rb + 1], b2 = sb[rb + 2], b3 = sb[rb + 3];
                T b4 = sb[rb + Half], b5 = sb[rb + Half + 1], b6 = sb[rb + Half + 2], b7 = sb[rb + Half + 3];
                c00.Fma(a0, a1, a2, a3, b0, b1, b2, b3);
                c01.Fma(a0, a1, a2, a3, b4, b5, b6, b7);
                c10.Fma(a4, a5, a6, a7, b0, b1, b2, b3);
                c11.Fma(a4, a5, a6, a7, b4, b5, b6, b7);
            }
            Group.Barrier();
        }

        int r0 = m0 + ty * Sub, r1 = r0 + Half;
        int q0 = n0 + tx * Sub, q1 = q0 + Half;
        StoreBlock(c, cBase, p, r0, q0, c00);
        StoreBlock(c, cBase, p, r0, q1, c01);
        StoreBlock(c, cBase, p, r1, q0, c10);
        StoreBlock(c, cBase, p, r1, q1, c11);
    }

    private static void StoreBlock<T>(ArrayView<T> c, long cBase, GemmParams<T> p, int row, int col, Block4x4<T> acc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        StoreRow(c, cBase, p, row, col, acc.C00, acc.C01, acc.C02, acc.C03);
        StoreRow(c, cBase, p, row + 1, col, acc.C10, acc.C11, acc.C12, acc.C13);
        StoreRow(c, cBase, p, row + 2, col, acc.C20, acc.C21, acc.C22, acc.C23);
        StoreRow(c, cBase, p, row + 3, col, acc.C30, acc.C31, acc.C32, acc.C33);
    }

    private static void StoreRow<T>(ArrayView<T> c, long cBase, GemmParams<T> p, int row, int col, T v0, T v1, T v2, T v3)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (row >= p.M) return;
        long at = cBase + (long)row * p.N + col;
        Store(c, at, p, col, v0);
        Store(c, at + 1, p, col + 1, v1);
        Store(c, at + 2, p, col + 2, v2);
        Store(c, at + 3, p, col + 3, v3);
    }

    private static void Store<T>(ArrayView<T> c, long at, GemmParams<T> p, int col, T value)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (col >= p.N) return;
        // BLAS semantics: with beta = 0 the old C is not read, so NaN or garbage in C does not leak into the result.
        c[at] = p.Beta == T.Zero ? p.Alpha * value : p.Alpha * value + p.Beta * c[at];
    }
}
