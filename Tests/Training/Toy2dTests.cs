using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Training.Data;
using NUnit.Framework;

namespace DiffusionCore.Tests.Training;

/// <summary>The 2-D toy data sets: shape of the output, scale, determinism and name parsing.</summary>
[TestFixture]
public sealed class Toy2dTests
{
    private static Toy2dKind[] AllKinds => Enum.GetValues<Toy2dKind>();

    private static (double MeanX, double MeanY, double VarX, double VarY) Moments(float[] p)
    {
        int n = p.Length / 2;
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) { mx += p[2 * i]; my += p[2 * i + 1]; }
        mx /= n; my /= n;
        double vx = 0, vy = 0;
        for (int i = 0; i < n; i++)
        {
            vx += (p[2 * i] - mx) * (p[2 * i] - mx);
            vy += (p[2 * i + 1] - my) * (p[2 * i + 1] - my);
        }
        return (mx, my, vx / (n - 1), vy / (n - 1));
    }

    [TestCaseSource(nameof(AllKinds))]
    public void Sample_IsFiniteCentredAndRoughlyStandardised(Toy2dKind kind)
    {
        const int n = 20_000;
        float[] p = Toy2d.Sample(kind, n, seed: 7);
        Assert.That(p, Has.Length.EqualTo(2 * n));
        Assert.That(p.All(float.IsFinite), Is.True);
        var (mx, my, vx, vy) = Moments(p);
        TestContext.Out.WriteLine($"{kind}: mean ({mx:F3}, {my:F3}) var ({vx:F3}, {vy:F3}) avg {(vx + vy) / 2:F3}");
        // Every set is centred by construction: with per-coordinate standard deviation at most ~1.2 the
        // standard error of a mean of 20000 points is under 0.01, so 0.05 leaves a wide margin.
        Assert.That(Math.Abs(mx), Is.LessThan(0.05), "mean x");
        Assert.That(Math.Abs(my), Is.LessThan(0.05), "mean y");
        // The scales are set for an average coordinate variance of 1 (4/3 for the checkerboard on [-2, 2]^2);
        // the anisotropic sets (moons, swiss roll) keep their aspect ratio, hence the wider per-axis band.
        double average = (vx + vy) / 2;
        double expected = kind == Toy2dKind.Checkerboard ? 4.0 / 3.0 : 1.0;
        Assert.That(average, Is.EqualTo(expected).Within(0.05 * expected), "average variance");
        Assert.That(vx, Is.InRange(0.25, 1.8), "variance x");
        Assert.That(vy, Is.InRange(0.25, 1.8), "variance y");
    }

    [TestCaseSource(nameof(AllKinds))]
    public void Sample_IsDeterministicInSeedAndOffset(Toy2dKind kind)
    {
        float[] a = Toy2d.Sample(kind, 101, seed: 3, blockOffset: 10);
        float[] b = Toy2d.Sample(kind, 101, seed: 3, blockOffset: 10);
        float[] otherSeed = Toy2d.Sample(kind, 101, seed: 4, blockOffset: 10);
        float[] otherOffset = Toy2d.Sample(kind, 101, seed: 3, blockOffset: 11);
        Assert.That(b, Is.EqualTo(a));
        Assert.That(otherSeed.Zip(a).Count(t => t.First == t.Second), Is.LessThan(20));
        Assert.That(otherOffset.Zip(a).Count(t => t.First == t.Second), Is.LessThan(20));
    }

    [TestCaseSource(nameof(AllKinds))]
    public void Sample_PointDependsOnlyOnItsBlocks(Toy2dKind kind)
    {
        // Point i uses blocks offset + 2i and offset + 2i + 1: two consecutive calls chained with
        // offset += BlocksPerPoint * count give the same points as one call.
        float[] whole = Toy2d.Sample(kind, 10, seed: 11, blockOffset: 6);
        float[] head = Toy2d.Sample(kind, 3, seed: 11, blockOffset: 6);
        float[] tail = Toy2d.Sample(kind, 7, seed: 11, blockOffset: 6 + Toy2d.BlocksPerPoint * 3);
        Assert.That(head.Concat(tail).ToArray(), Is.EqualTo(whole));
    }

    [Test]
    public void Sample_IsIdenticalForOneAndTwoThreads()
    {
        int saved = CpuParallel.Threads;
        try
        {
            CpuParallel.Threads = 1;
            float[] one = Toy2d.Sample(Toy2dKind.Pinwheel, 9001, seed: 5);
            CpuParallel.Threads = 2;
            float[] two = Toy2d.Sample(Toy2dKind.Pinwheel, 9001, seed: 5);
            Assert.That(two, Is.EqualTo(one));
        }
        finally
        {
            CpuParallel.Threads = saved;
        }
    }

    [Test]
    public void Sample_CountZeroIsEmptyAndNegativeThrows()
    {
        Assert.That(Toy2d.Sample(Toy2dKind.Circles, 0, 1), Is.Empty);
        Assert.Throws<ArgumentOutOfRangeException>(() => Toy2d.Sample(Toy2dKind.Circles, -1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Toy2d.Sample((Toy2dKind)99, 1, 1));
    }

    [Test]
    public void Checkerboard_PointsLieOnDarkSquares()
    {
        float[] p = Toy2d.Sample(Toy2dKind.Checkerboard, 5000, seed: 2);
        for (int i = 0; i < p.Length; i += 2)
        {
            Assert.That(p[i], Is.InRange(-2f, 2f));
            Assert.That(p[i + 1], Is.InRange(-2f, 2f));
            int column = Math.Min(3, (int)MathF.Floor(p[i] + 2f));
            int row = Math.Min(3, (int)MathF.Floor(p[i + 1] + 2f));
            Assert.That((column + row) % 2, Is.Zero, $"point ({p[i]}, {p[i + 1]})");
        }
    }

    [Test]
    public void EightGaussians_FillsEachModeEqually()
    {
        const int n = 8000;
        float[] p = Toy2d.Sample(Toy2dKind.EightGaussians, n, seed: 2);
        var counts = new int[8];
        for (int i = 0; i < p.Length; i += 2)
        {
            double angle = Math.Atan2(p[i + 1], p[i]);
            counts[(int)Math.Round(angle / (Math.PI / 4) + 8) % 8]++;
        }
        // Each mode's count is Binomial(8000, 1/8): mean 1000, standard deviation 29.6; allow 5 of them.
        Assert.That(counts, Has.All.InRange(1000 - 148, 1000 + 148));
    }

    [Test]
    public void Circles_RadiiClusterAtTwoValues()
    {
        float[] p = Toy2d.Sample(Toy2dKind.Circles, 4000, seed: 2);
        var radii = Enumerable.Range(0, p.Length / 2).Select(i => Math.Sqrt(p[2 * i] * p[2 * i] + p[2 * i + 1] * p[2 * i + 1])).ToArray();
        double threshold = 0.75 * 1.771;
        double inner = radii.Where(r => r < threshold).Average();
        double outer = radii.Where(r => r >= threshold).Average();
        // Noise std 0.14 blurs the radii but leaves the two means near R/2 and R (mean radius grows by
        // about s^2/(2R) under isotropic noise, under 0.02 here).
        Assert.That(inner, Is.EqualTo(0.5 * 1.771).Within(0.05));
        Assert.That(outer, Is.EqualTo(1.771).Within(0.05));
        Assert.That(outer / inner, Is.EqualTo(2.0).Within(0.15));
    }

    [Test]
    public void Parse_AcceptsEveryCanonicalNameAndAliases()
    {
        foreach (var kind in AllKinds) Assert.That(Toy2d.Parse(Toy2d.Name(kind)), Is.EqualTo(kind));
        Assert.That(Toy2d.Parse("8gaussians"), Is.EqualTo(Toy2dKind.EightGaussians));
        Assert.That(Toy2d.Parse("two-moons"), Is.EqualTo(Toy2dKind.TwoMoons));
        Assert.That(Toy2d.Parse("moons"), Is.EqualTo(Toy2dKind.TwoMoons));
        Assert.That(Toy2d.Parse("swiss-roll"), Is.EqualTo(Toy2dKind.SwissRoll));
        Assert.That(Toy2d.Parse("checkerboard"), Is.EqualTo(Toy2dKind.Checkerboard));
        Assert.That(Toy2d.Parse("pinwheel"), Is.EqualTo(Toy2dKind.Pinwheel));
        Assert.That(Toy2d.Parse("2spirals"), Is.EqualTo(Toy2dKind.TwoSpirals));
        Assert.That(Toy2d.Parse("circles"), Is.EqualTo(Toy2dKind.Circles));
        Assert.That(Toy2d.Parse(" Swiss_Roll "), Is.EqualTo(Toy2dKind.SwissRoll));
    }

    [Test]
    public void Parse_UnknownNameListsValidNames()
    {
        var ex = Assert.Throws<ArgumentException>(() => Toy2d.Parse("spiral-galaxy"));
        Assert.That(ex!.ParamName, Is.EqualTo("name"));
        Assert.That(ex.Message, Does.Contain("spiral-galaxy"));
        foreach (string name in Toy2d.ValidNames) Assert.That(ex.Message, Does.Contain(name));
    }
}
