using NUnit.Framework;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Random;

namespace DiffusionCore.Tests.Kernels;

/// <summary>Philox4x32-10 against the Random123 known answers, and the CPU fill built on it.</summary>
[TestFixture]
public sealed class PhiloxTests
{
    // The three "philox4x32 10" lines of Random123's tests/kat_vectors (D. E. Shaw Research,
    // github.com/DEShawResearch/random123): columns are CTR (4 words), KEY (2 words), EXPECTED (4 words).
    //   philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
    //   philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
    //   philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
    private static readonly uint[][] KnownAnswers =
    [
        [0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ];

    private static IEnumerable<TestCaseData> KnownAnswerCases() =>
        KnownAnswers.Select((v, i) => new TestCaseData(v).SetName($"Block_MatchesRandom123KnownAnswer_{new[] { "zeros", "ones", "pi" }[i]}"));

    [TestCaseSource(nameof(KnownAnswerCases))]
    public void Block_MatchesRandom123KnownAnswer(uint[] v)
    {
        uint c0 = v[0], c1 = v[1], c2 = v[2], c3 = v[3];
        Philox.Block(ref c0, ref c1, ref c2, ref c3, v[4], v[5]);
        Assert.That(new[] { c0, c1, c2, c3 }, Is.EqualTo(v[6..10]));
    }

    [Test]
    public void StreamBlock_IsBlockOfCounterBlockIndexUnderKeySeed()
    {
        // The stream puts the block index in counter words 0 (low) and 1 (high) and the seed in the key, low word first.
        const ulong seed = 0x299f31d0a4093822UL, block = 0x85a308d3243f6a88UL;
        uint c0 = 0x243f6a88, c1 = 0x85a308d3, c2 = 0, c3 = 0;
        Philox.Block(ref c0, ref c1, ref c2, ref c3, 0xa4093822, 0x299f31d0);
        Assert.That(Philox.StreamBlock(seed, block), Is.EqualTo((c0, c1, c2, c3)));
    }

    [Test]
    public void Fill_ElementIsLaneOfStreamBlock()
    {
        // Contract of PhiloxCpu.Fill: element e is lane e % 4 of block blockOffset + e / 4.
        const ulong seed = 17, offset = 5;
        var u = new float[11];
        PhiloxCpu.Fill(u, u.Length, RandomDistribution.Uniform, seed, offset);
        for (int e = 0; e < u.Length; e++)
        {
            var (x0, x1, x2, x3) = Philox.StreamBlock(seed, offset + (ulong)(e / 4));
            uint lane = (e % 4) switch { 0 => x0, 1 => x1, 2 => x2, _ => x3 };
            Assert.That(u[e], Is.EqualTo(Philox.ToUniform(lane)), $"element {e}");
        }
    }

    [TestCase(RandomDistribution.Uniform)]
    [TestCase(RandomDistribution.Normal)]
    [TestCase(RandomDistribution.Rademacher)]
    public void Fill_IsIdenticalForOneAndTwoThreads(RandomDistribution distribution)
    {
        // 100003 elements = 25001 blocks: more than two tasks' worth of CpuParallel's 4096-block minimum,
        // so two threads really split the range, and the tail block is partial.
        const int count = 100_003;
        var one = new float[count];
        var two = new float[count];
        int saved = CpuParallel.Threads;
        try
        {
            CpuParallel.Threads = 1;
            PhiloxCpu.Fill(one, count, distribution, 42, 3);
            CpuParallel.Threads = 2;
            PhiloxCpu.Fill(two, count, distribution, 42, 3);
        }
        finally
        {
            CpuParallel.Threads = saved;
        }
        Assert.That(two, Is.EqualTo(one));
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(7)]
    [TestCase(250)]
    public void Fill_TwoPartialFillsWithOffsetsEqualOneFill(int firstBlocks)
    {
        // Filling 4*b elements from offset o, then the rest from offset o + b, must reproduce one fill from o.
        const int count = 1003;
        const ulong seed = 9, offset = 1000;
        var whole = new float[count];
        PhiloxCpu.Fill(whole, count, RandomDistribution.Normal, seed, offset);

        int head = 4 * firstBlocks;
        var first = new float[head];
        var rest = new float[count - head];
        PhiloxCpu.Fill(first, head, RandomDistribution.Normal, seed, offset);
        PhiloxCpu.Fill(rest, rest.Length, RandomDistribution.Normal, seed, offset + (ulong)firstBlocks);
        Assert.That(first.Concat(rest).ToArray(), Is.EqualTo(whole));
    }

    [Test]
    public void Fill_DifferentSeedsGiveDifferentStreams()
    {
        var a = new float[64];
        var b = new float[64];
        PhiloxCpu.Fill(a, a.Length, RandomDistribution.Uniform, 1, 0);
        PhiloxCpu.Fill(b, b.Length, RandomDistribution.Uniform, 2, 0);
        Assert.That(a.Zip(b).Count(p => p.First == p.Second), Is.LessThan(2));
    }

    [Test]
    public void Uniform_IsInUnitIntervalWithMeanOneHalf()
    {
        const int n = 100_000;
        var u = new float[n];
        PhiloxCpu.Fill(u, n, RandomDistribution.Uniform, 123, 0);
        Assert.That(u.All(x => x >= 0f && x < 1f), Is.True);
        // U(0,1) has standard deviation 1/sqrt(12); the mean of n draws is within 5 standard errors
        // except with probability about 6e-7.
        double se = 1.0 / Math.Sqrt(12.0 * n);
        Assert.That(u.Average(x => (double)x), Is.EqualTo(0.5).Within(5 * se));
        Assert.That(Philox.ToUniform(uint.MaxValue), Is.LessThan(1f));
        Assert.That(Philox.ToUniformOpenZero(0), Is.GreaterThan(0f));
    }

    [Test]
    public void Normal_HasMeanZeroAndUnitVariance()
    {
        const int n = 100_000;
        var z = new float[n];
        PhiloxCpu.Fill(z, n, RandomDistribution.Normal, 321, 0);
        Assert.That(z.All(float.IsFinite), Is.True);
        double mean = z.Average(x => (double)x);
        double variance = z.Sum(x => (x - mean) * (x - mean)) / (n - 1);
        // Standard errors for N(0,1): mean 1/sqrt(n); sample variance sqrt(2/(n-1)) (Var s^2 = 2 sigma^4/(n-1)).
        Assert.That(mean, Is.EqualTo(0.0).Within(5.0 / Math.Sqrt(n)));
        Assert.That(variance, Is.EqualTo(1.0).Within(5.0 * Math.Sqrt(2.0 / (n - 1))));
    }

    [Test]
    public void Rademacher_IsPlusOrMinusOneWithMeanZero()
    {
        const int n = 100_000;
        var r = new float[n];
        PhiloxCpu.Fill(r, n, RandomDistribution.Rademacher, 555, 0);
        Assert.That(r.All(x => x == 1f || x == -1f), Is.True);
        // Each value has variance 1, so the mean of n has standard error 1/sqrt(n).
        Assert.That(r.Average(x => (double)x), Is.EqualTo(0.0).Within(5.0 / Math.Sqrt(n)));
    }

    [Test]
    public void Fill_DoublePrecisionMatchesFloat()
    {
        // The generic fill draws in float32 and converts, so double storage holds exactly the float values.
        var f = new float[13];
        var d = new double[13];
        PhiloxCpu.Fill(f, f.Length, RandomDistribution.Normal, 8, 2);
        PhiloxCpu.Fill(d, d.Length, RandomDistribution.Normal, 8, 2);
        Assert.That(d, Is.EqualTo(f.Select(x => (double)x).ToArray()));
    }
}
