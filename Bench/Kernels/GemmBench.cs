using BenchmarkDotNet.Attributes;
using DiffusionCore.Kernels.Gemm;

namespace DiffusionCore.Bench.Kernels;

/// <summary>
/// Reference workloads K1 and K2 (BENCHMARKS.md) for <see cref="GemmCpu.Sgemm"/>: row-major, no transposes,
/// C = A·B with beta = 0. The product is checked against double-precision dot products before timing.
/// </summary>
public class GemmBench
{
    private const int K1M = 1024, K1N = 1024, K1K = 1024;
    private const int K2M = 4096, K2N = 256, K2K = 1024;

    private float[] _a1 = [], _b1 = [], _c1 = [];
    private float[] _a2 = [], _b2 = [], _c2 = [];

    /// <summary>Fills the inputs with uniform values in [-1, 1) and validates one product of each shape.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var rng = new System.Random(20261123);
        (_a1, _b1, _c1) = (Random(rng, K1M * K1K), Random(rng, K1K * K1N), new float[K1M * K1N]);
        (_a2, _b2, _c2) = (Random(rng, K2M * K2K), Random(rng, K2K * K2N), new float[K2M * K2N]);
        K1();
        Validate("K1", K1M, K1N, K1K, _a1, _b1, _c1, rng);
        K2();
        Validate("K2", K2M, K2N, K2K, _a2, _b2, _c2, rng);
    }

    /// <summary>K1: C[1024x1024] = A[1024x1024] · B[1024x1024].</summary>
    [Benchmark(Description = "K1 Sgemm 1024x1024x1024")]
    [Flops(2.0 * K1M * K1N * K1K)]
    public void K1() => GemmCpu.Sgemm(false, false, K1M, K1N, K1K, 1f, _a1, K1K, _b1, K1N, 0f, _c1, K1N);

    /// <summary>K2 (skinny): C[4096x256] = A[4096x1024] · B[1024x256].</summary>
    [Benchmark(Description = "K2 Sgemm 4096x256x1024")]
    [Flops(2.0 * K2M * K2N * K2K)]
    public void K2() => GemmCpu.Sgemm(false, false, K2M, K2N, K2K, 1f, _a2, K2K, _b2, K2N, 0f, _c2, K2N);

    private static float[] Random(System.Random rng, int length)
    {
        var x = new float[length];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>
    /// Compares 256 random entries of C with double-precision dot products, within
    /// (sqrt(k) + 2) · 2^-23 · Σ|a·b| (the float rounding of a k-term sum, as in the GEMM tests).
    /// </summary>
    private static void Validate(string workload, int m, int n, int k, float[] a, float[] b, float[] c, System.Random rng)
    {
        double factor = (Math.Sqrt(k) + 2) * Math.Pow(2, -23);
        for (int t = 0; t < 256; t++)
        {
            int i = rng.Next(m), j = rng.Next(n);
            double sum = 0, magnitude = 0;
            for (int p = 0; p < k; p++)
            {
                double x = (double)a[i * k + p] * b[p * n + j];
                sum += x;
                magnitude += Math.Abs(x);
            }
            if (!(Math.Abs(c[i * n + j] - sum) <= factor * magnitude))
                throw new InvalidOperationException($"{workload}: C[{i},{j}] = {c[i * n + j]}, reference {sum}");
        }
    }
}
