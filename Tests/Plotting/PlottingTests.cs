using System.Buffers.Binary;
using DiffusionCore.Training.Data;
using DiffusionCore.Plotting;
using NUnit.Framework;

namespace DiffusionCore.Tests.Plotting;

/// <summary>PNG output of the canvas and the three plot kinds, the bitmap font and the axis ticks.</summary>
[TestFixture]
public sealed class PlottingTests
{
    private static readonly byte[] PngSignature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    private string directory = "";

    [SetUp]
    public void CreateDirectory() =>
        directory = Path.Combine(Path.GetTempPath(), "diffusioncore-plot-tests-" + Guid.NewGuid().ToString("N"));

    [TearDown]
    public void DeleteDirectory()
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    // Checks the PNG signature and the IHDR chunk (the first chunk: length 13, type "IHDR", then big-endian
    // width and height, bit depth 8, colour type 2 = RGB), and that the file holds more than the fixed chunks
    // (8 signature + 25 IHDR + 12 IDAT framing + 12 IEND = 57 bytes), i.e. some image data.
    private static void AssertPng(string path, int width, int height)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.That(bytes.Length, Is.GreaterThan(57), "file size");
        Assert.That(bytes[..8], Is.EqualTo(PngSignature), "signature");
        Assert.That(BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(8)), Is.EqualTo(13), "IHDR length");
        Assert.That(System.Text.Encoding.ASCII.GetString(bytes, 12, 4), Is.EqualTo("IHDR"));
        Assert.That(BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), Is.EqualTo(width), "width");
        Assert.That(BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)), Is.EqualTo(height), "height");
        Assert.That(bytes[24], Is.EqualTo(8), "bit depth");
        Assert.That(bytes[25], Is.EqualTo(2), "colour type RGB");
        Assert.That(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.tmp"), Is.Empty, "temporary file left behind");
    }

    private static int CountPixels(Canvas canvas, Rgb color)
    {
        int count = 0;
        for (int p = 0; p < canvas.Pixels.Length; p += 3)
        {
            if (canvas.Pixels[p] == color.R && canvas.Pixels[p + 1] == color.G && canvas.Pixels[p + 2] == color.B) count++;
        }
        return count;
    }

    private static int CountNonBackground(Canvas canvas) => canvas.Pixels.Length / 3 - CountPixels(canvas, canvas.Background);

    [Test]
    public void Font_HasSevenRowsOfFiveBitsForEveryCharacter()
    {
        Assert.That(BitmapFont.Characters.Distinct().Count(), Is.EqualTo(BitmapFont.Characters.Length), "duplicate characters");
        foreach (char c in BitmapFont.Characters)
        {
            ReadOnlySpan<byte> rows = BitmapFont.Glyph(c);
            Assert.That(rows.Length, Is.EqualTo(BitmapFont.GlyphHeight), $"'{c}'");
            foreach (byte row in rows) Assert.That(row, Is.LessThan(1 << BitmapFont.GlyphWidth), $"'{c}'");
            bool blank = true;
            foreach (byte row in rows) blank &= row == 0;
            Assert.That(blank, Is.EqualTo(c == ' '), $"'{c}' blank");
        }
        foreach (char c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-:=/()%,")
        {
            Assert.That(BitmapFont.HasGlyph(c), Is.True, $"'{c}'");
        }
    }

    [Test]
    public void Font_GlyphsAreDistinct()
    {
        // Two characters with one bitmap would be unreadable; 'l' vs '1' vs 'I' and 'O' vs '0' must differ.
        var seen = new Dictionary<ulong, char>();
        foreach (char c in BitmapFont.Characters)
        {
            ulong key = 0;
            foreach (byte row in BitmapFont.Glyph(c)) key = key << 5 | row;
            Assert.That(seen.TryAdd(key, c), Is.True, $"'{c}' looks like '{(seen.TryGetValue(key, out char other) ? other : ' ')}'");
        }
    }

    [Test]
    public void Canvas_DrawsTextLinesAndPoints()
    {
        var canvas = new Canvas(60, 20, Rgb.White);
        canvas.DrawText(1, 1, "L", Rgb.Black);
        // 'L' is a 7-pixel vertical bar and a 5-pixel base sharing one corner: 11 pixels.
        Assert.That(CountPixels(canvas, Rgb.Black), Is.EqualTo(11));
        Assert.That(canvas.GetPixel(1, 1), Is.EqualTo(Rgb.Black));
        Assert.That(canvas.GetPixel(5, 7), Is.EqualTo(Rgb.Black));
        Assert.That(canvas.GetPixel(2, 1), Is.EqualTo(Rgb.White));

        canvas.DrawText(10, 1, "\u00e9", Rgb.Black, scale: 2);
        Assert.That(CountPixels(canvas, Rgb.Black), Is.EqualTo(11 + 4 * PixelCount(BitmapFont.Glyph('?'))), "unknown character draws '?'");

        var red = new Rgb(255, 0, 0);
        canvas.DrawLine(20, 2, 40, 12, red);
        Assert.That(canvas.GetPixel(20, 2), Is.EqualTo(red));
        Assert.That(canvas.GetPixel(40, 12), Is.EqualTo(red));
        Assert.That(CountPixels(canvas, red), Is.EqualTo(21), "a 20 x 10 Bresenham line sets one pixel per column");

        canvas.DrawLine(-10, -10, 100, 100, red);
        canvas.FillRect(50, 15, 100, 100, red);
        canvas.DrawPoint(-3f, -3f, 2f, red);
        Assert.That(canvas.GetPixel(59, 19), Is.EqualTo(red), "clipped drawing still reaches the edge");
        Assert.Throws<ArgumentOutOfRangeException>(() => canvas.GetPixel(60, 0));
        Assert.That(BitmapFont.TextWidth("abc", 2), Is.EqualTo(2 * (3 * BitmapFont.Advance - 1)));
    }

    private static int PixelCount(ReadOnlySpan<byte> rows)
    {
        int count = 0;
        foreach (byte row in rows) count += System.Numerics.BitOperations.PopCount(row);
        return count;
    }

    [Test]
    public void Canvas_SavePngCreatesDirectoryAndReplacesFileAtomically()
    {
        var canvas = new Canvas(37, 23, new Rgb(10, 20, 30));
        canvas.DrawLine(0, 0, 36, 22, Rgb.White);
        string path = Path.Combine(directory, "nested", "canvas.png");
        canvas.SavePng(path);
        AssertPng(path, 37, 23);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(canvas.EncodePng()));

        new Canvas(5, 4, Rgb.Black).SavePng(path);
        AssertPng(path, 5, 4);
        Assert.That(Directory.GetFiles(Path.Combine(directory, "nested")), Has.Length.EqualTo(1));
    }

    [Test]
    public void ScatterPlot_WritesSideBySidePanelsWithPointsAndLabels()
    {
        float[] data = Toy2d.Sample(Toy2dKind.TwoMoons, 500, seed: 1);
        float[] samples = Toy2d.Sample(Toy2dKind.EightGaussians, 500, seed: 2);
        var blue = Rgb.Palette[0];
        var orange = Rgb.Palette[1];
        ScatterPanel[] panels =
        [
            new("data", data, blue),
            new("samples", [new ScatterSeries(samples, orange, "model"), new ScatterSeries([100f, 100f], blue, "far")]),
        ];
        Canvas canvas = ScatterPlot.Render(panels, panelSize: 200);
        Assert.That(canvas.Height, Is.GreaterThan(200));
        Assert.That(canvas.Width, Is.GreaterThan(2 * 200));
        // Opaque pixels of a series colour appear where points overlap or in the legend swatch; blended
        // ones elsewhere, so count pixels close to each colour in each half.
        int half = canvas.Width / 2;
        Assert.That(CountNear(canvas, blue, 0, half), Is.GreaterThan(300), "data points in the left panel");
        Assert.That(CountNear(canvas, orange, half, canvas.Width), Is.GreaterThan(300), "sample points in the right panel");
        Assert.That(CountNear(canvas, orange, 0, half), Is.Zero, "no samples in the data panel");
        Assert.That(CountPixels(canvas, Rgb.Black), Is.GreaterThan(200), "titles and tick labels");

        string path = Path.Combine(directory, "scatter.png");
        ScatterPlot.Save(path, panels, panelSize: 200);
        AssertPng(path, canvas.Width, canvas.Height);
    }

    // Pixels in columns [from, to) whose colour is within 60 per channel of `color` (blended points over white
    // land between the colour and white; grey and black text do not come that close to a saturated colour).
    private static int CountNear(Canvas canvas, Rgb color, int from, int to)
    {
        int count = 0;
        for (int y = 0; y < canvas.Height; y++)
        {
            for (int x = from; x < to; x++)
            {
                Rgb p = canvas.GetPixel(x, y);
                if (Math.Abs(p.R - color.R) < 60 && Math.Abs(p.G - color.G) < 60 && Math.Abs(p.B - color.B) < 60) count++;
            }
        }
        return count;
    }

    [Test]
    public void ScatterPlot_AutoRangeIgnoresRareOutliersAndExplicitRangeIsUsed()
    {
        float[] points = new float[2 * 5000];
        var random = new System.Random(3);
        for (int i = 0; i < points.Length; i++) points[i] = (float)(random.NextDouble() * 2 - 1);
        points[0] = 1e6f;
        points[1] = float.NaN;
        AxisRange range = ScatterPlot.AutoRange([new ScatterPanel("p", points, Rgb.Black)]);
        Assert.That(range.Min, Is.InRange(-1.2, -0.9));
        Assert.That(range.Max, Is.InRange(0.9, 1.2));
        Assert.Throws<ArgumentException>(() => ScatterPlot.Render([new ScatterPanel("p", [1f, 2f, 3f], Rgb.Black)]));
        Assert.Throws<ArgumentException>(() => ScatterPlot.Render([new ScatterPanel("p", points, Rgb.Black)], new AxisRange(1, 1)));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void LinePlot_WritesCurvesWithLegend(bool logY)
    {
        double[] steps = Enumerable.Range(0, 200).Select(i => (double)i * 10).ToArray();
        double[] loss = steps.Select(s => 2.0 * Math.Exp(-s / 400) + 0.01).ToArray();
        double[] ema = loss.Select(l => l * 1.1).ToArray();
        ema[50] = double.NaN;
        ema[60] = -1;
        LineSeries[] series = [new("loss", steps, loss), new("ema loss", steps, ema)];
        Canvas canvas = LinePlot.Render("training loss", series, logY, xLabel: "step", width: 400, height: 260);
        Assert.That((canvas.Width, canvas.Height), Is.EqualTo((400, 260)));
        Assert.That(CountPixels(canvas, Rgb.Palette[0]), Is.GreaterThan(300), "first curve");
        Assert.That(CountPixels(canvas, Rgb.Palette[1]), Is.GreaterThan(300), "second curve");
        Assert.That(CountPixels(canvas, Rgb.Black), Is.GreaterThan(200), "title, labels and legend text");

        string path = Path.Combine(directory, logY ? "loss-log.png" : "loss.png");
        LinePlot.Save(path, "training loss", series, logY, "step", width: 400, height: 260);
        AssertPng(path, 400, 260);
        Assert.Throws<ArgumentException>(() => LinePlot.Render("bad", [new LineSeries("x", [1.0, 2.0], [1.0])]));
    }

    [Test]
    public void ImageGrid_MapsValuesAndLaysOutCells()
    {
        // Three 2 x 3 grayscale images in a 2 x 2 grid at scale 2: values -1, 0, 1 map to 0, 128, 255.
        const int n = 3, h = 2, w = 3, scale = 2;
        float[] images = new float[n * h * w];
        for (int k = 0; k < n; k++)
        {
            for (int i = 0; i < h * w; i++) images[k * h * w + i] = k - 1;
        }
        images[5] = float.NaN;
        Canvas canvas = ImageGrid.Render(images, n, 1, h, w, rows: 2, cols: 2, scale: scale);
        int cellW = w * scale + ImageGrid.Padding, cellH = h * scale + ImageGrid.Padding;
        Assert.That((canvas.Width, canvas.Height), Is.EqualTo((2 * cellW + ImageGrid.Padding, 2 * cellH + ImageGrid.Padding)));
        int Origin(int index) => ImageGrid.Padding + index * cellW;
        Assert.That(canvas.GetPixel(Origin(0), ImageGrid.Padding), Is.EqualTo(new Rgb(0, 0, 0)));
        Assert.That(canvas.GetPixel(Origin(1) + 1, ImageGrid.Padding + 1), Is.EqualTo(new Rgb(128, 128, 128)));
        Assert.That(canvas.GetPixel(ImageGrid.Padding, ImageGrid.Padding + cellH), Is.EqualTo(new Rgb(255, 255, 255)));
        // Last pixel of image 0 (row 1, column 2) is NaN: drawn red at its 2 x 2 block.
        Assert.That(canvas.GetPixel(Origin(0) + 2 * scale + 1, ImageGrid.Padding + scale + 1), Is.EqualTo(new Rgb(255, 0, 0)));

        string path = Path.Combine(directory, "grid.png");
        ImageGrid.Save(path, images, n, 1, h, w, 2, 2, scale: scale);
        AssertPng(path, canvas.Width, canvas.Height);
    }

    [Test]
    public void ImageGrid_RgbChannelsAreReadFromTheirPlanes()
    {
        // One 1 x 2 RGB image: pixel 0 pure red, pixel 1 pure blue, in NCHW layout (R plane, G plane, B plane).
        float[] image = [1f, -1f, -1f, -1f, -1f, 1f];
        Canvas canvas = ImageGrid.Render(image, 1, 3, 1, 2, 1, 1);
        Assert.That(canvas.GetPixel(ImageGrid.Padding, ImageGrid.Padding), Is.EqualTo(new Rgb(255, 0, 0)));
        Assert.That(canvas.GetPixel(ImageGrid.Padding + 1, ImageGrid.Padding), Is.EqualTo(new Rgb(0, 0, 255)));
        Assert.Throws<ArgumentException>(() => ImageGrid.Render(image, 1, 2, 1, 3, 1, 1));
        Assert.Throws<ArgumentException>(() => ImageGrid.Render(image, 2, 3, 1, 1, 1, 1));
        Assert.Throws<ArgumentException>(() => ImageGrid.Render(image, 1, 3, 1, 2, 1, 1, min: 1, max: 1));
    }

    [Test]
    public void AxisTicks_AreNiceAndWellFormatted()
    {
        Assert.That(AxisTicks.Linear(0, 1, 5), Is.EqualTo(new[] { 0, 0.2, 0.4, 0.6000000000000001, 0.8, 1 }).Within(1e-12));
        Assert.That(AxisTicks.Linear(-2.3, 2.3, 5), Is.EqualTo(new double[] { -2, -1, 0, 1, 2 }));
        Assert.That(AxisTicks.Linear(0, 1000, 4), Is.EqualTo(new double[] { 0, 200, 400, 600, 800, 1000 }));
        Assert.That(AxisTicks.Log10(0.003, 20), Is.EqualTo(new[] { 0.01, 0.1, 1, 10 }).Within(1e-12));
        Assert.That(AxisTicks.Log10(0.045, 2.3), Is.EqualTo(new[] { 0.05, 0.1, 0.2, 0.5, 1, 2 }).Within(1e-12), "1-2-5 ticks below three decades");
        Assert.That(AxisTicks.Log10(2.1, 4.9), Is.EqualTo(new[] { 2.5, 3, 3.5, 4, 4.5 }).Within(1e-12), "linear ticks in a narrow range");
        Assert.That(AxisTicks.FormatCompact(0.05), Is.EqualTo("0.05"));
        Assert.That(AxisTicks.FormatCompact(0.1), Is.EqualTo("0.1"));
        Assert.That(AxisTicks.FormatCompact(2.5), Is.EqualTo("2.5"));
        Assert.That(AxisTicks.FormatCompact(1e-6), Is.EqualTo("1e-6"));
        Assert.That(AxisTicks.Format(0.4, 0.2), Is.EqualTo("0.4"));
        Assert.That(AxisTicks.Format(-1.5, 0.5), Is.EqualTo("-1.5"));
        Assert.That(AxisTicks.Format(600, 200), Is.EqualTo("600"));
        Assert.That(AxisTicks.Format(0.01, 0.01), Is.EqualTo("0.01"));
        Assert.That(AxisTicks.Format(2.5e-4, 1e-4), Is.EqualTo("2.5e-4"));
        Assert.That(AxisTicks.Format(3e6, 1e6), Is.EqualTo("3e6"));
        Assert.That(AxisTicks.Format(0, 0.1), Is.EqualTo("0"));
    }
}
