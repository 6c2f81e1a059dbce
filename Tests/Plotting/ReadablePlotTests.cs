using DiffusionCore.Plotting;
using NUnit.Framework;

namespace DiffusionCore.Tests.Plotting;

/// <summary>
/// The parts of a plot that make it readable: axis captions, legends, class captions on grids, the colour bar of a
/// density, the smoothed loss curve, and atomic writes that leave no temporary files behind a killed writer.
/// </summary>
public sealed class ReadablePlotTests
{
    private static int CountColor(Canvas canvas, Rgb color, int x0 = 0, int y0 = 0, int x1 = int.MaxValue, int y1 = int.MaxValue)
    {
        int n = 0;
        for (int y = y0; y < Math.Min(y1, canvas.Height); y++)
            for (int x = x0; x < Math.Min(x1, canvas.Width); x++)
                if (canvas.GetPixel(x, y) == color) n++;
        return n;
    }

    [Test]
    public void SmoothingIsADebiasedMovingAverage()
    {
        // Constant input: the debiased EMA is that constant from the first entry (no pull towards 0).
        Assert.That(LossCurve.Smooth([2.0, 2.0, 2.0], 0.9), Is.EqualTo(new[] { 2.0, 2.0, 2.0 }).Within(1e-12));
        // Two values with decay 0.5: m1 = 0.5*1, w1 = 0.5 -> 1; m2 = 0.25 + 0.5*3 = 1.75, w2 = 0.75 -> 7/3.
        Assert.That(LossCurve.Smooth([1.0, 3.0], 0.5), Is.EqualTo(new[] { 1.0, 7.0 / 3 }).Within(1e-12));
        // A NaN step repeats the previous average instead of poisoning the rest.
        var s = LossCurve.Smooth([double.NaN, 1.0, double.NaN, 1.0], 0.5);
        Assert.That(double.IsNaN(s[0]));
        Assert.That(s[1..], Is.EqualTo(new[] { 1.0, 1.0, 1.0 }).Within(1e-12));
        Assert.Throws<ArgumentOutOfRangeException>(() => LossCurve.Smooth([1.0], 1.0));
    }

    [Test]
    public void TheLossCurveDrawsRawAndSmoothedLinesWithCaptions()
    {
        var rng = new Random(3);
        var losses = Enumerable.Range(1, 400).Select(i => 1.0 / i + 0.3 * rng.NextDouble()).ToArray();
        var canvas = LossCurve.Render(losses);
        var light = new Rgb(174, 199, 232);
        Assert.That(CountColor(canvas, light), Is.GreaterThan(200), "the raw curve, drawn light");
        Assert.That(CountColor(canvas, Rgb.Palette[0]), Is.GreaterThan(200), "the smoothed curve, drawn dark");
        // The y caption is drawn turned, in the left margin; the x caption under the plot.
        Assert.That(CountColor(canvas, Rgb.Black, 0, 40, 12, canvas.Height - 40), Is.GreaterThan(30), "a y-axis caption");
        Assert.That(CountColor(canvas, Rgb.Black, 0, canvas.Height - 12), Is.GreaterThan(30), "an x-axis caption");
    }

    [Test]
    public void ScatterPanelsCaptionBothAxes()
    {
        var canvas = ScatterPlot.Render([new ScatterPanel("p", [0f, 0f, 1f, 1f], Rgb.Palette[0])], panelSize: 100);
        Assert.That(CountColor(canvas, Rgb.Black, 0, 30, 11, 130), Is.GreaterThan(10), "the x2 caption left of the panel");
        Assert.That(CountColor(canvas, Rgb.Black, 0, canvas.Height - 11), Is.GreaterThan(10), "the x1 caption under it");
    }

    [Test]
    public void TrajectoriesHaveALegendAndMarkedEnds()
    {
        var frames = new List<float[]> { new[] { -2f, -2f, 2f, 2f }, new[] { -1f, -1f, 1f, 1f }, new[] { 0f, 0f, 0.5f, 0.5f } };
        var canvas = TrajectoryPlot.Render("paths", frames, [0f, 0f], new AxisRange(-3, 3), size: 200);
        // The legend box (white with a grey frame) sits in the top-left corner with four swatches of 7 x 7.
        Assert.That(CountColor(canvas, new Rgb(31, 119, 180), 56, 30, 140, 80), Is.GreaterThanOrEqualTo(49), "the start swatch in the legend");
        Assert.That(CountColor(canvas, Rgb.Black, 56, 30, 140, 80), Is.GreaterThanOrEqualTo(49 + 20), "the end swatch and the legend text");
        Assert.Throws<ArgumentException>(() => TrajectoryPlot.Render("bad", [new[] { 0f, 0f }, new[] { 0f }], []));
    }

    [Test]
    public void DensitiesHaveAColourBarFromLowToHigh()
    {
        const int n = 8;
        var values = Enumerable.Range(0, n * n).Select(i => (double)(i % n)).ToArray();
        var canvas = DensityPlot.Render("d", values, n, new AxisRange(-1, 1), "p(x)", size: 128);
        int barX = SquareAxesLeft + 128 + 16 + 8;
        Assert.That(canvas.GetPixel(barX, 30), Is.EqualTo(DensityPlot.ColorOf(1)), "the top of the bar is the highest value's colour");
        Assert.That(canvas.GetPixel(barX, 30 + 127), Is.EqualTo(DensityPlot.ColorOf(0)), "the bottom the lowest's");
        // Column 0 of the grid holds the lowest value, the last column the highest.
        Assert.That(canvas.GetPixel(SquareAxesLeft + 2, 60), Is.EqualTo(DensityPlot.ColorOf(0)));
        Assert.That(canvas.GetPixel(SquareAxesLeft + 125, 60), Is.EqualTo(DensityPlot.ColorOf(1)));
        Assert.That(DensityPlot.ColorOf(0), Is.Not.EqualTo(DensityPlot.ColorOf(1)));
    }

    private const int SquareAxesLeft = 56;

    [Test]
    public void GridCaptionsSitAboveEachImage()
    {
        var images = new float[4 * 4 * 4];
        var plain = ImageGrid.Render(images, 4, 1, 4, 4, 1, 4, scale: 3);
        var captioned = ImageGrid.Render(images, 4, 1, 4, 4, 1, 4, scale: 3, captions: ["0", "1", "2", "3"], title: "classes");
        Assert.That(captioned.Height, Is.GreaterThan(plain.Height), "room for the title and a caption row");
        Assert.That(CountColor(captioned, new Rgb(255, 230, 120)), Is.GreaterThan(4 * 5), "each caption drawn");
        Assert.Throws<ArgumentException>(() => ImageGrid.Render(images, 4, 1, 4, 4, 1, 4, captions: ["0"]));
    }

    [Test]
    public void AtomicWritesRemoveTheTemporaryFilesOfDeadWriters()
    {
        string dir = Path.Combine(Path.GetTempPath(), "diffusioncore-atomic-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            // What a writer killed mid-write leaves: one file of an older naming scheme, one with a process id that no
            // longer runs (pid_max on Linux is at most 2^22, so int.MaxValue is never a live process).
            string old = Path.Combine(dir, $".train_loss.png.{Guid.NewGuid():N}.tmp");
            string dead = Path.Combine(dir, AtomicFile.TempName("train_loss.png", int.MaxValue));
            string other = Path.Combine(dir, AtomicFile.TempName("samples.png", int.MaxValue));
            foreach (var f in new[] { old, dead, other }) File.WriteAllBytes(f, [1, 2, 3]);
            new Canvas(4, 4, Rgb.White).SavePng(Path.Combine(dir, "train_loss.png"));
            Assert.That(File.Exists(old) || File.Exists(dead), Is.False, "the dead writers' temporaries of train_loss.png are gone");
            Assert.That(File.Exists(other), "another file's temporaries are left to its own writes");
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "train_loss.png", Path.GetFileName(other) }));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
