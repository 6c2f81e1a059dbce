using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Kernels.Cpu;
using DiffusionCore.Kernels.Random;

namespace DiffusionCore.Training.Data;

/// <summary>The two-dimensional toy distributions of the FFJORD and score-SDE experiments.</summary>
public enum Toy2dKind
{
    /// <summary>Eight Gaussian blobs evenly spaced on a circle.</summary>
    EightGaussians,
    /// <summary>Two interleaved half circles (scikit-learn's make_moons).</summary>
    TwoMoons,
    /// <summary>The (x, z) section of scikit-learn's Swiss roll: a one-and-a-half turn spiral.</summary>
    SwissRoll,
    /// <summary>Uniform on the eight dark squares of a 4 x 4 checkerboard over [-2, 2]^2.</summary>
    Checkerboard,
    /// <summary>Five curved arms (Johnson et al.'s pinwheel).</summary>
    Pinwheel,
    /// <summary>Two interleaved spirals, point reflections of each other.</summary>
    TwoSpirals,
    /// <summary>Two concentric noisy circles, the inner of half the radius (scikit-learn's make_circles).</summary>
    Circles,
}

/// <summary>
/// Samplers for the 2-D toy data sets, after FFJORD's toy_data.py (Grathwohl et al. 2019), rescaled so that
/// each set is centred with about unit variance per coordinate (the average of the two coordinate variances is
/// 1 to within a few percent; the checkerboard keeps its [-2, 2]^2 square, variance 4/3). Point i is drawn from
/// the two Philox blocks <c>blockOffset + 2i</c> and <c>blockOffset + 2i + 1</c> of stream <c>seed</c>, so a
/// (seed, offset) pair gives the same points on any machine and thread count, and a point does not depend on
/// how many others are drawn with it.
/// </summary>
public static class Toy2d
{
    /// <summary>Philox blocks consumed per point: the next call's offset is <c>blockOffset + BlocksPerPoint * count</c>.</summary>
    public const int BlocksPerPoint = 2;

    private const int MinPointsPerTask = 2048;

    // Eight Gaussians: FFJORD's radius : std ratio of 4 : 0.5, scaled so that R^2/2 + s^2 = 1.
    private const float GaussiansRadius = 1.3926f;
    private const float GaussiansStd = GaussiansRadius / 8f;

    // Two moons: scikit-learn's moons with noise 0.1, centred on their mean (0.5, 0.25); coordinate variances
    // are 0.76 and 0.254, so the isotropic scale 1.4 brings their average to 1.
    private const float MoonsNoise = 0.1f;
    private const float MoonsCentreX = 0.5f, MoonsCentreY = 0.25f;
    private const float MoonsScale = 1.4f;

    // Swiss roll: t uniform on [1.5 pi, 4.5 pi], point (t cos t, t sin t) plus N(0, 0.5^2) noise. Its mean is
    // (2, 2/(3 pi)) and its coordinate variances 43.9 and 48.3 (+0.25 noise), hence the scale 1/6.8.
    private const float SwissNoise = 0.5f;
    private const float SwissCentreX = 2f, SwissCentreY = 2f / (3f * MathF.PI);
    private const float SwissScale = 1f / 6.8f;

    // Pinwheel: radial coordinate N(1, 0.3^2), tangential N(0, 0.1^2), rotated by the arm's angle plus
    // 0.25 exp(radial); E|p|^2 = 1.1, so the scale 1/sqrt(0.55) gives unit variance per coordinate.
    private const int PinwheelArms = 5;
    private const float PinwheelRadialStd = 0.3f, PinwheelTangentialStd = 0.1f, PinwheelRate = 0.25f;
    private const float PinwheelScale = 1.3484f;

    // Two spirals: n = 3 pi sqrt(u) (540 degrees), point (-n cos n, n sin n) or its reflection; E n^2 = 9 pi^2 / 2,
    // so the per-coordinate variance is 22.2 (+0.09 noise) and the scale 1/4.72. FFJORD's uniform jitter is left out.
    private const float SpiralsTurn = 3f * MathF.PI;
    private const float SpiralsNoise = 0.3f;
    private const float SpiralsScale = 1f / 4.72f;

    // Circles: radii R and R/2 with noise 0.08 R (scikit-learn's factor 0.5, noise 0.08); the per-coordinate
    // variance is R^2 (5/16 + 0.0064) = 1 at R = 1.771.
    private const float CirclesRadius = 1.771f;
    private const float CirclesNoise = 0.08f * CirclesRadius;

    private static readonly (string Name, Toy2dKind Kind)[] Aliases =
    [
        ("8gaussians", Toy2dKind.EightGaussians), ("eightgaussians", Toy2dKind.EightGaussians),
        ("twomoons", Toy2dKind.TwoMoons), ("moons", Toy2dKind.TwoMoons),
        ("swissroll", Toy2dKind.SwissRoll),
        ("checkerboard", Toy2dKind.Checkerboard),
        ("pinwheel", Toy2dKind.Pinwheel),
        ("2spirals", Toy2dKind.TwoSpirals), ("twospirals", Toy2dKind.TwoSpirals), ("spirals", Toy2dKind.TwoSpirals),
        ("circles", Toy2dKind.Circles),
    ];

    /// <summary>The canonical names <see cref="Parse"/> accepts, one per kind, in enum order.</summary>
    public static IReadOnlyList<string> ValidNames { get; } =
        ["8gaussians", "two-moons", "swiss-roll", "checkerboard", "pinwheel", "2spirals", "circles"];

    /// <summary>The canonical kebab-case name of <paramref name="kind"/> (e.g. "two-moons").</summary>
    public static string Name(Toy2dKind kind) =>
        (int)kind >= 0 && (int)kind < ValidNames.Count
            ? ValidNames[(int)kind]
            : throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown 2-D toy data set");

    /// <summary>
    /// Parses a data set name, ignoring case, hyphens and underscores: "8gaussians", "two-moons" or "moons",
    /// "swiss-roll", "checkerboard", "pinwheel", "2spirals" or "two-spirals", "circles".
    /// </summary>
    /// <exception cref="ArgumentException">The name is none of these; the message lists the valid names.</exception>
    public static Toy2dKind Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = new string(name.Trim().ToLowerInvariant().Where(c => c != '-' && c != '_').ToArray());
        foreach (var (alias, kind) in Aliases)
        {
            if (alias == key) return kind;
        }
        throw new ArgumentException(
            $"unknown 2-D toy data set '{name}'; valid names: {string.Join(", ", ValidNames)} (also 'moons', 'two-spirals')",
            nameof(name));
    }

    /// <summary>
    /// Draws <paramref name="count"/> points of <paramref name="kind"/>, interleaved as (x0, y0, x1, y1, ...).
    /// Point i uses Philox blocks <c>blockOffset + 2i</c> and <c>blockOffset + 2i + 1</c> of stream <paramref name="seed"/>.
    /// </summary>
    public static float[] Sample(Toy2dKind kind, int count, ulong seed, ulong blockOffset = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown 2-D toy data set");
        var points = new float[2 * count];
        CpuParallel.For(count, MinPointsPerTask, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                ulong block = blockOffset + (ulong)(BlocksPerPoint * i);
                var (x, y) = Point(kind, Philox.StreamBlock(seed, block), Philox.StreamBlock(seed, block + 1));
                points[2 * i] = x;
                points[2 * i + 1] = y;
            }
        });
        return points;
    }

    /// <summary>
    /// A batch of <paramref name="count"/> points as a [count, 2] tensor, drawn from <paramref name="generator"/>'s
    /// stream at its current offset, which then advances past them: the way a training loss draws its data, so
    /// that a checkpointed generator resumes the same data stream.
    /// </summary>
    public static Tensor Batch(Toy2dKind kind, int count, Generator generator, Device? device = null)
    {
        var points = Sample(kind, count, generator.Seed, generator.Offset);
        generator.Offset += (ulong)count * BlocksPerPoint;
        return Tensor.FromSpan<float>(points, [count, 2], DType.Float32, device);
    }

    // One point from eight random words: the first block's words feed uniforms and discrete choices,
    // the second block's feed two standard normals (Box-Muller on its first two lanes).
    private static (float X, float Y) Point(Toy2dKind kind, (uint, uint, uint, uint) a, (uint, uint, uint, uint) b)
    {
        var (a0, a1, a2, _) = a;
        var (n0, n1) = Philox.BoxMuller(b.Item1, b.Item2);
        float u0 = Philox.ToUniform(a0), u1 = Philox.ToUniform(a1);
        bool flip = (a2 >> 31) != 0;
        switch (kind)
        {
            case Toy2dKind.EightGaussians:
            {
                float angle = Philox.ToInt(a0, 8) * (2f * MathF.PI / 8f);
                return (GaussiansRadius * MathF.Cos(angle) + GaussiansStd * n0,
                        GaussiansRadius * MathF.Sin(angle) + GaussiansStd * n1);
            }
            case Toy2dKind.TwoMoons:
            {
                float t = MathF.PI * u0;
                float x = flip ? 1f - MathF.Cos(t) : MathF.Cos(t);
                float y = flip ? 0.5f - MathF.Sin(t) : MathF.Sin(t);
                return (MoonsScale * (x + MoonsNoise * n0 - MoonsCentreX),
                        MoonsScale * (y + MoonsNoise * n1 - MoonsCentreY));
            }
            case Toy2dKind.SwissRoll:
            {
                float t = 1.5f * MathF.PI * (1f + 2f * u0);
                return (SwissScale * (t * MathF.Cos(t) + SwissNoise * n0 - SwissCentreX),
                        SwissScale * (t * MathF.Sin(t) + SwissNoise * n1 - SwissCentreY));
            }
            case Toy2dKind.Checkerboard:
            {
                // Column c in 0..3 from x; the filled rows of a column are those with r = c (mod 2).
                float x = -2f + 4f * u0;
                int column = Math.Min(3, (int)MathF.Floor(x + 2f));
                int row = (flip ? 2 : 0) + (column & 1);
                return (x, -2f + row + u1);
            }
            case Toy2dKind.Pinwheel:
            {
                float radial = 1f + PinwheelRadialStd * n0;
                float tangential = PinwheelTangentialStd * n1;
                float angle = Philox.ToInt(a0, PinwheelArms) * (2f * MathF.PI / PinwheelArms) + PinwheelRate * MathF.Exp(radial);
                float cos = MathF.Cos(angle), sin = MathF.Sin(angle);
                return (PinwheelScale * (cos * radial - sin * tangential),
                        PinwheelScale * (sin * radial + cos * tangential));
            }
            case Toy2dKind.TwoSpirals:
            {
                float n = SpiralsTurn * MathF.Sqrt(u0);
                float sign = flip ? -1f : 1f;
                return (SpiralsScale * (sign * -n * MathF.Cos(n) + SpiralsNoise * n0),
                        SpiralsScale * (sign * n * MathF.Sin(n) + SpiralsNoise * n1));
            }
            case Toy2dKind.Circles:
            {
                float radius = flip ? 0.5f * CirclesRadius : CirclesRadius;
                float angle = 2f * MathF.PI * u0;
                return (radius * MathF.Cos(angle) + CirclesNoise * n0, radius * MathF.Sin(angle) + CirclesNoise * n1);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown 2-D toy data set");
        }
    }
}
