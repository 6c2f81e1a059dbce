namespace DiffusionCore.Plotting;

/// <summary>
/// A 2-D function on a square grid (e.g. a learned density) as a heat map in a perceptually ordered colour map
/// (dark blue for low, yellow for high, like matplotlib's viridis), with axes and a colour bar that says which
/// colour is which value.
/// </summary>
public static class DensityPlot
{
    /// <summary>Side of the plotting square in pixels, unless the caller picks another.</summary>
    public const int DefaultSize = 384;

    private const int BarGap = 16, BarWidth = 16, BarLabelRoom = 60, BarTicks = 5;

    // Viridis sampled at 0, 1/4, 1/2, 3/4, 1; linear between.
    private static readonly Rgb[] Stops = [new(68, 1, 84), new(59, 82, 139), new(33, 145, 140), new(94, 201, 98), new(253, 231, 37)];

    /// <summary>Renders the plot and saves it as a PNG (atomically, creating the directory).</summary>
    /// <param name="path">Output file.</param>
    /// <param name="title">Title above the plot.</param>
    /// <param name="values">n x n values, row-major, row 0 at the top (largest y), column 0 at the left (smallest x); NaN is drawn white.</param>
    /// <param name="n">Grid side.</param>
    /// <param name="range">The square [Min, Max]^2 the grid covers (cell centres at Min + (i + 0.5) (Max - Min) / n).</param>
    /// <param name="barLabel">Caption of the colour bar.</param>
    /// <param name="size">Side of the plotting square in pixels.</param>
    public static void Save(string path, string title, double[] values, int n, AxisRange range, string barLabel = "density", int size = DefaultSize) =>
        Render(title, values, n, range, barLabel, size).SavePng(path);

    /// <summary>Draws the plot; see <see cref="Save"/>. The colour bar spans the finite values' minimum to maximum.</summary>
    /// <param name="title">Title above the plot.</param>
    /// <param name="values">n x n values, row-major, row 0 at the top (largest y), column 0 at the left (smallest x); NaN is drawn white.</param>
    /// <param name="n">Grid side.</param>
    /// <param name="range">The square [Min, Max]^2 the grid covers.</param>
    /// <param name="barLabel">Caption of the colour bar.</param>
    /// <param name="size">Side of the plotting square in pixels.</param>
    public static Canvas Render(string title, double[] values, int n, AxisRange range, string barLabel = "density", int size = DefaultSize)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (n < 1 || values.Length != (long)n * n) throw new ArgumentException($"DensityPlot: {values.Length} values do not make a {n} x {n} grid", nameof(values));
        if (!(range.Max > range.Min)) throw new ArgumentException($"DensityPlot: empty range [{range.Min}, {range.Max}]", nameof(range));
        if (size < 64) throw new ArgumentException($"DensityPlot: size must be at least 64 pixels, got {size}", nameof(size));
        var finite = values.Where(double.IsFinite).ToArray();
        double lo = finite.Length > 0 ? finite.Min() : 0, hi = finite.Length > 0 ? finite.Max() : 1;
        if (!(hi > lo)) hi = lo + 1;

        int width = SquareAxes.LeftMargin + size + BarGap + BarWidth + BarLabelRoom;
        var canvas = new Canvas(width, SquareAxes.TopMargin + size + SquareAxes.BottomMargin, Rgb.White);
        var axes = new SquareAxes(SquareAxes.LeftMargin, SquareAxes.TopMargin, size, range);
        for (int py = 0; py < size; py++)
        {
            int row = Math.Min(n - 1, py * n / size);
            for (int px = 0; px < size; px++)
            {
                int col = Math.Min(n - 1, px * n / size);
                double v = values[row * n + col];
                canvas.SetPixel(axes.Left + px, axes.Top + py, double.IsFinite(v) ? ColorOf((v - lo) / (hi - lo)) : Rgb.White);
            }
        }
        axes.DrawFrame(canvas, title, "x1", "x2");

        int barLeft = axes.Left + size + BarGap;
        for (int py = 0; py < size; py++) canvas.FillRect(barLeft, axes.Top + py, BarWidth, 1, ColorOf(1 - (double)py / (size - 1)));
        canvas.DrawRect(barLeft - 1, axes.Top - 1, BarWidth + 2, size + 2, Rgb.Gray);
        double[] ticks = AxisTicks.Linear(lo, hi, BarTicks);
        double step = ticks.Length > 1 ? ticks[1] - ticks[0] : hi - lo;
        foreach (double t in ticks)
        {
            if (t < lo || t > hi) continue;
            int py = axes.Top + (int)Math.Round((hi - t) / (hi - lo) * (size - 1));
            canvas.DrawLine(barLeft + BarWidth, py, barLeft + BarWidth + 3, py, Rgb.Gray);
            canvas.DrawText(barLeft + BarWidth + 6, py - BitmapFont.GlyphHeight / 2, AxisTicks.Format(t, step), Rgb.Black);
        }
        canvas.DrawTextUp(width - 10, axes.Top + (size + BitmapFont.TextWidth(barLabel)) / 2, barLabel, Rgb.Black);
        return canvas;
    }

    /// <summary>The colour of <paramref name="fraction"/> in [0, 1] (clamped) on the colour map.</summary>
    public static Rgb ColorOf(double fraction)
    {
        double f = Math.Clamp(fraction, 0, 1) * (Stops.Length - 1);
        int i = Math.Min(Stops.Length - 2, (int)f);
        double w = f - i;
        static byte Mix(byte a, byte b, double w) => (byte)Math.Round(a + (b - a) * w);
        return new Rgb(Mix(Stops[i].R, Stops[i + 1].R, w), Mix(Stops[i].G, Stops[i + 1].G, w), Mix(Stops[i].B, Stops[i + 1].B, w));
    }
}
