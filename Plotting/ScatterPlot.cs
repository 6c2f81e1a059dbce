namespace DiffusionCore.Plotting;

/// <summary>One set of 2-D points in a scatter panel.</summary>
/// <param name="Points">Interleaved coordinates (x0, y0, x1, y1, ...), as <c>Toy2d.Sample</c> returns them.</param>
/// <param name="Color">Colour of the points.</param>
/// <param name="Label">Legend entry, or null for none.</param>
public sealed record ScatterSeries(float[] Points, Rgb Color, string? Label = null);

/// <summary>A titled square panel of one or more point sets.</summary>
/// <param name="Title">Title drawn above the panel.</param>
/// <param name="Series">The point sets, drawn in order (later ones on top).</param>
public sealed record ScatterPanel(string Title, IReadOnlyList<ScatterSeries> Series)
{
    /// <summary>A panel of a single point set.</summary>
    public ScatterPanel(string title, float[] points, Rgb color) : this(title, [new ScatterSeries(points, color)])
    {
    }
}

/// <summary>The closed interval [Min, Max] an axis shows.</summary>
/// <param name="Min">Lower end.</param>
/// <param name="Max">Upper end, greater than <paramref name="Min"/>.</param>
public readonly record struct AxisRange(double Min, double Max);

/// <summary>
/// Side-by-side square scatter panels (e.g. "data" next to "samples") sharing one axis range in x and y,
/// so that shapes are neither stretched nor rescaled between panels.
/// </summary>
public static class ScatterPlot
{
    /// <summary>Side of a panel's plotting square in pixels, unless the caller picks another.</summary>
    public const int DefaultPanelSize = 320;

    private const int LeftMargin = 56, RightMargin = 14, TopMargin = 30, BottomMargin = 34;
    private const int TickLength = 4, TickCount = 5;
    private const float PointRadius = 1.6f, PointAlpha = 0.6f;
    private const double RangeQuantile = 0.001, RangePadding = 0.05;

    /// <summary>Renders <paramref name="panels"/> and saves them as a PNG (atomically, creating the directory).</summary>
    /// <param name="path">Output file.</param>
    /// <param name="panels">The panels, left to right.</param>
    /// <param name="range">Shared range of both axes; null picks <see cref="AutoRange"/>.</param>
    /// <param name="panelSize">Side of each plotting square in pixels.</param>
    /// <param name="xLabel">Caption under each panel's x axis.</param>
    /// <param name="yLabel">Caption beside each panel's y axis (read bottom to top).</param>
    public static void Save(string path, IReadOnlyList<ScatterPanel> panels, AxisRange? range = null, int panelSize = DefaultPanelSize,
        string xLabel = "x1", string yLabel = "x2") =>
        Render(panels, range, panelSize, xLabel, yLabel).SavePng(path);

    /// <summary>Draws <paramref name="panels"/> side by side; points outside the range are counted in the panel corner, not drawn.</summary>
    /// <param name="panels">The panels, left to right.</param>
    /// <param name="range">Shared range of both axes; null picks <see cref="AutoRange"/>.</param>
    /// <param name="panelSize">Side of each plotting square in pixels.</param>
    /// <param name="xLabel">Caption under each panel's x axis.</param>
    /// <param name="yLabel">Caption beside each panel's y axis (read bottom to top).</param>
    public static Canvas Render(IReadOnlyList<ScatterPanel> panels, AxisRange? range = null, int panelSize = DefaultPanelSize,
        string xLabel = "x1", string yLabel = "x2")
    {
        if (panels.Count == 0) throw new ArgumentException("ScatterPlot: at least one panel is needed", nameof(panels));
        if (panelSize < 32) throw new ArgumentException($"ScatterPlot: panel size must be at least 32 pixels, got {panelSize}", nameof(panelSize));
        foreach (var panel in panels)
        {
            foreach (var series in panel.Series)
            {
                if (series.Points.Length % 2 != 0)
                {
                    throw new ArgumentException($"ScatterPlot: panel '{panel.Title}' has a series of odd length {series.Points.Length}; expected (x, y) pairs");
                }
            }
        }
        AxisRange axis = range ?? AutoRange(panels);
        if (!(axis.Max > axis.Min)) throw new ArgumentException($"ScatterPlot: empty axis range [{axis.Min}, {axis.Max}]", nameof(range));

        int blockWidth = LeftMargin + panelSize + RightMargin;
        var canvas = new Canvas(blockWidth * panels.Count, TopMargin + panelSize + BottomMargin, Rgb.White);
        double[] ticks = AxisTicks.Linear(axis.Min, axis.Max, TickCount);
        double step = ticks.Length > 1 ? ticks[1] - ticks[0] : axis.Max - axis.Min;
        for (int p = 0; p < panels.Count; p++)
        {
            int left = p * blockWidth + LeftMargin, top = TopMargin;
            float ToPixelX(double v) => (float)(left + (v - axis.Min) / (axis.Max - axis.Min) * (panelSize - 1));
            float ToPixelY(double v) => (float)(top + (axis.Max - v) / (axis.Max - axis.Min) * (panelSize - 1));

            foreach (double t in ticks)
            {
                int px = (int)MathF.Round(ToPixelX(t)), py = (int)MathF.Round(ToPixelY(t));
                canvas.DrawLine(px, top, px, top + panelSize - 1, Rgb.LightGray);
                canvas.DrawLine(left, py, left + panelSize - 1, py, Rgb.LightGray);
                canvas.DrawLine(px, top + panelSize, px, top + panelSize + TickLength - 1, Rgb.Gray);
                canvas.DrawLine(left - TickLength, py, left - 1, py, Rgb.Gray);
                string label = AxisTicks.Format(t, step);
                canvas.DrawText(px - BitmapFont.TextWidth(label) / 2, top + panelSize + TickLength + 3, label, Rgb.Black);
                canvas.DrawText(left - TickLength - 3 - BitmapFont.TextWidth(label), py - BitmapFont.GlyphHeight / 2, label, Rgb.Black);
            }

            int outside = 0;
            foreach (var series in panels[p].Series)
            {
                for (int i = 0; i + 1 < series.Points.Length; i += 2)
                {
                    double x = series.Points[i], y = series.Points[i + 1];
                    if (!(x >= axis.Min && x <= axis.Max && y >= axis.Min && y <= axis.Max))
                    {
                        outside++;
                        continue;
                    }
                    canvas.DrawPoint(ToPixelX(x) + 0.5f, ToPixelY(y) + 0.5f, PointRadius, series.Color, PointAlpha);
                }
            }
            canvas.DrawRect(left - 1, top - 1, panelSize + 2, panelSize + 2, Rgb.Gray);

            if (outside > 0)
            {
                string note = $"{outside} outside";
                canvas.DrawText(left + panelSize - 4 - BitmapFont.TextWidth(note), top + panelSize - 4 - BitmapFont.GlyphHeight, note, Rgb.Gray);
            }
            DrawLegend(canvas, panels[p].Series, left + 4, top + 4);
            canvas.DrawText(left + (panelSize - BitmapFont.TextWidth(xLabel)) / 2, top + panelSize + BottomMargin - BitmapFont.GlyphHeight - 2, xLabel, Rgb.Black);
            canvas.DrawTextUp(p * blockWidth + 3, top + (panelSize + BitmapFont.TextWidth(yLabel)) / 2, yLabel, Rgb.Black);

            string title = panels[p].Title;
            int scale = BitmapFont.TextWidth(title, 2) <= panelSize ? 2 : 1;
            canvas.DrawText(left + (panelSize - BitmapFont.TextWidth(title, scale)) / 2, (TopMargin - BitmapFont.TextHeight(scale)) / 2, title, Rgb.Black, scale);
        }
        return canvas;
    }

    /// <summary>
    /// A square range covering all panels: from the 0.1% to the 99.9% quantile of all finite coordinates (x and y
    /// pooled, so a few diverged samples do not squash the plot), widened by 5% on each side; (-1, 1) with no points.
    /// </summary>
    public static AxisRange AutoRange(IReadOnlyList<ScatterPanel> panels)
    {
        var values = panels.SelectMany(p => p.Series).SelectMany(s => s.Points).Where(float.IsFinite).Select(v => (double)v).ToArray();
        if (values.Length == 0) return new AxisRange(-1, 1);
        Array.Sort(values);
        double lo = values[(int)Math.Floor(RangeQuantile * (values.Length - 1))];
        double hi = values[(int)Math.Ceiling((1 - RangeQuantile) * (values.Length - 1))];
        if (!(hi > lo)) return new AxisRange(lo - 1, hi + 1);
        double pad = RangePadding * (hi - lo);
        return new AxisRange(lo - pad, hi + pad);
    }

    internal static void DrawLegend(Canvas canvas, IReadOnlyList<ScatterSeries> series, int x, int y)
    {
        var labelled = series.Where(s => s.Label is not null).ToArray();
        if (labelled.Length == 0) return;
        const int swatch = 7, gap = 4, lineHeight = 11;
        int width = 2 * gap + swatch + gap + labelled.Max(s => BitmapFont.TextWidth(s.Label!));
        int height = gap + labelled.Length * lineHeight;
        canvas.FillRect(x, y, width, height, Rgb.White);
        canvas.DrawRect(x, y, width, height, Rgb.Gray);
        for (int k = 0; k < labelled.Length; k++)
        {
            int rowY = y + gap + k * lineHeight;
            canvas.FillRect(x + gap, rowY, swatch, swatch, labelled[k].Color);
            canvas.DrawText(x + 2 * gap + swatch, rowY, labelled[k].Label!, Rgb.Black);
        }
    }
}
