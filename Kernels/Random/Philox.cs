using System.Runtime.CompilerServices;

namespace DiffusionCore.Kernels.Random;

/// <summary>
/// Philox4x32-10, the counter-based generator of Salmon et al. (SC'11, "Parallel random numbers: as easy
/// as 1, 2, 3"). A 128-bit counter and a 64-bit key give four 32-bit outputs; no state is carried, so
/// element e of a stream is computed directly from (seed, e) on any device.
/// </summary>
public static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57;
    private const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The ten-round Philox4x32 bijection of counter (c0..c3) under key (k0, k1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Block(ref uint c0, ref uint c1, ref uint c2, ref uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += W0;
                k1 += W1;
            }
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n1 = (uint)p1;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            uint n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        }
    }

    /// <summary>The four outputs of stream block <paramref name="block"/> under <paramref name="seed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint, uint, uint, uint) StreamBlock(ulong seed, ulong block)
    {
        uint c0 = (uint)block, c1 = (uint)(block >> 32), c2 = 0, c3 = 0;
        Block(ref c0, ref c1, ref c2, ref c3, (uint)seed, (uint)(seed >> 32));
        return (c0, c1, c2, c3);
    }

    /// <summary>Uniform on [0, 1) from the top 24 bits (every value exactly representable in float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToUniform(uint x) => (x >> 8) * (1.0f / 16777216.0f);

    /// <summary>Uniform on (0, 1] from the top 24 bits: safe to take the logarithm of.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToUniformOpenZero(uint x) => ((x >> 8) + 1) * (1.0f / 16777216.0f);

    /// <summary>Box-Muller: two independent standard normals from two 32-bit draws.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (float, float) BoxMuller(uint x, uint y)
    {
        float r = MathF.Sqrt(-2.0f * MathF.Log(ToUniformOpenZero(x)));
        float theta = 2.0f * MathF.PI * ToUniform(y);
        return (r * MathF.Cos(theta), r * MathF.Sin(theta));
    }

    /// <summary>An integer in [0, n) (Lemire's multiply-shift; bias at most n / 2^32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ToInt(uint x, int n) => (int)(((ulong)x * (ulong)n) >> 32);
}
