namespace DiffusionCore.Plotting;

/// <summary>One named curve of a line plot.</summary>
/// <param name="Name">Legend entry.</param>
/// <param name="Xs">Abscissae (e.g. training steps).</param>
/// <param name="Ys">Ordinates, as many as <paramref name="Xs"/>; NaN, infinite (and, on a log axis, non-positive) values break the line.</param>
/// <param name="Color">Line colour; null takes entry k of <see cref="Rgb.Palette"/> for series k.</param>
/// <param name="Thickness">Line thickness in pixels.</param>
public sealed record LineSeries(string Name, IReadOnlyList<double> Xs, IReadOnlyList<double> Ys, Rgb? Color = null, int Thickness = 2);

/// <summary>Curves against a common x axis with ticks and a legend, for loss curves and the like.</summary>
public static class LinePlot
{
    /// <summary>Default image width in pixels.</summary>
    public const int DefaultWidth = 640;

    /// <summary>Default image height in pixels.</summary>
    public const int DefaultHeight = 400;

    private const int LeftMargin = 70, RightMargin = 16, TopMargin = 32, BottomMargin = 36;
    private const int TickLength = 4, TickCount = 6, LegendLineThickness = 2;
    private const double RangePadding = 0.04;

    /// <summary>Renders the plot and saves it as a PNG (atomically, creating the directory).</summary>
    /// <param name="path">Output file.</param>
    /// <param name="title">Title above the plot.</param>
    /// <param name="series">The curves; series k takes colour k of <see cref="Rgb.Palette"/>.</param>
    /// <param name="logY">Logarithmic y axis (for losses spanning decades).</param>
    /// <param name="xLabel">Caption under the x axis, or null for none.</param>
    /// <param name="yLabel">Caption beside the y axis (read bottom to top), or null for none.</param>
    /// <param name="width">Image width in pixels.</param>
    /// <param name="height">Image height in pixels.</param>
    public static void Save(string path, string title, IReadOnlyList<LineSeries> series, bool logY = false,
        string? xLabel = null, string? yLabel = null, int width = DefaultWidth, int height = DefaultHeight) =>
        Render(title, series, logY, xLabel, yLabel, width, height).SavePng(path);

    /// <summary>Draws the plot; the axes cover every drawable point, padded by 4%.</summary>
    /// <param name="title">Title above the plot.</param>
    /// <param name="series">The curves; series k takes colour k of <see cref="Rgb.Palette"/>.</param>
    /// <param name="logY">Logarithmic y axis (for losses spanning decades).</param>
    /// <param name="xLabel">Caption under the x axis, or null for none.</param>
    /// <param name="yLabel">Caption beside the y axis (read bottom to top), or null for none.</param>
    /// <param name="width">Image width in pixels.</param>
    /// <param name="height">Image height in pixels.</param>
    public static Canvas Render(string title, IReadOnlyList<LineSeries> series, bool logY = false,
        string? xLabel = null, string? yLabel = null, int width = DefaultWidth, int height = DefaultHeight)
    {
        int plotWidth = width - LeftMargin - RightMargin, plotHeight = height - TopMargin - BottomMargin;
        if (plotWidth < 32 || plotHeight < 32) throw new ArgumentException($"LinePlot: image {width} x {height} leaves no room to plot");
        foreach (var s in series)
        {
            if (s.Xs.Count != s.Ys.Count)
            {
                throw new ArgumentException($"LinePlot: series '{s.Name}' has {s.Xs.Count} x values but {s.Ys.Count} y values", nameof(series));
            }
        }

        // The y axis is laid out in t = y, or t = log10 y on a log axis.
        bool Drawable(double x, double y) => double.IsFinite(x) && double.IsFinite(y) && (!logY || y > 0);
        double ToT(double y) => logY ? Math.Log10(y) : y;
        var (xMin, xMax) = Padded(series.SelectMany(s => s.Xs.Where((x, i) => Drawable(x, s.Ys[i]))));
        var (tMin, tMax) = Padded(series.SelectMany(s => s.Ys.Where((y, i) => Drawable(s.Xs[i], y)).Select(ToT)));

        var canvas = new Canvas(width, height, Rgb.White);
        int left = LeftMargin, top = TopMargin;
        float ToPixelX(double x) => (float)(left + (x - xMin) / (xMax - xMin) * (plotWidth - 1));
        float ToPixelY(double t) => (float)(top + (tMax - t) / (tMax - tMin) * (plotHeight - 1));

        double[] xTicks = AxisTicks.Linear(xMin, xMax, TickCount);
        double xStep = xTicks.Length > 1 ? xTicks[1] - xTicks[0] : xMax - xMin;
        foreach (double x in xTicks)
        {
            int px = (int)MathF.Round(ToPixelX(x));
            canvas.DrawLine(px, top, px, top + plotHeight - 1, Rgb.LightGray);
            canvas.DrawLine(px, top + plotHeight, px, top + plotHeight + TickLength - 1, Rgb.Gray);
            string label = AxisTicks.Format(x, xStep);
            canvas.DrawText(px - BitmapFont.TextWidth(label) / 2, top + plotHeight + TickLength + 3, label, Rgb.Black);
        }
        double[] yTicks = logY ? AxisTicks.Log10(Math.Pow(10, tMin), Math.Pow(10, tMax), TickCount) : AxisTicks.Linear(tMin, tMax, TickCount);
        double linearStep = yTicks.Length > 1 ? yTicks[1] - yTicks[0] : tMax - tMin;
        foreach (double y in yTicks)
        {
            int py = (int)MathF.Round(ToPixelY(ToT(y)));
            canvas.DrawLine(left, py, left + plotWidth - 1, py, Rgb.LightGray);
            canvas.DrawLine(left - TickLength, py, left - 1, py, Rgb.Gray);
            string label = logY ? AxisTicks.FormatCompact(y) : AxisTicks.Format(y, linearStep);
            canvas.DrawText(left - TickLength - 3 - BitmapFont.TextWidth(label), py - BitmapFont.GlyphHeight / 2, label, Rgb.Black);
        }

        for (int k = 0; k < series.Count; k++)
        {
            var s = series[k];
            Rgb color = SeriesColor(s, k);
            (int X, int Y)? previous = null;
            for (int i = 0; i < s.Xs.Count; i++)
            {
                if (!Drawable(s.Xs[i], s.Ys[i]))
                {
                    previous = null;
                    continue;
                }
                var current = ((int)MathF.Round(ToPixelX(s.Xs[i])), (int)MathF.Round(ToPixelY(ToT(s.Ys[i]))));
                if (previous is { } p) canvas.DrawLine(p.X, p.Y, current.Item1, current.Item2, color, s.Thickness);
                else canvas.FillRect(current.Item1 - 1, current.Item2 - 1, s.Thickness + 1, s.Thickness + 1, color);
                previous = current;
            }
        }
        canvas.DrawRect(left - 1, top - 1, plotWidth + 2, plotHeight + 2, Rgb.Gray);
        DrawLegend(canvas, series, left + plotWidth - 6, top + 6);

        int scale = BitmapFont.TextWidth(title, 2) <= plotWidth ? 2 : 1;
        canvas.DrawText(left + (plotWidth - BitmapFont.TextWidth(title, scale)) / 2, (TopMargin - BitmapFont.TextHeight(scale)) / 2, title, Rgb.Black, scale);
        if (xLabel is not null)
        {
            canvas.DrawText(left + (plotWidth - BitmapFont.TextWidth(xLabel)) / 2, height - BitmapFont.GlyphHeight - 4, xLabel, Rgb.Black);
        }
        if (yLabel is not null)
        {
            canvas.DrawTextUp(4, top + (plotHeight + BitmapFont.TextWidth(yLabel)) / 2, yLabel, Rgb.Black);
        }
        return canvas;
    }

    private static Rgb SeriesColor(LineSeries s, int k) => s.Color ?? Rgb.Palette[k % Rgb.Palette.Count];

    // The extent of the values widened by 4% on each side; (0, 1) when there are none, +-1 around a single value.
    private static (double Min, double Max) Padded(IEnumerable<double> values)
    {
        double min = double.PositiveInfinity, max = double.NegativeInfinity;
        foreach (double v in values)
        {
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }
        if (min > max) return (0, 1);
        if (min == max) return (min - 1, max + 1);
        double pad = RangePadding * (max - min);
        return (min - pad, max + pad);
    }

    // Legend in the top-right corner of the plot, right edge at `right`.
    private static void DrawLegend(Canvas canvas, IReadOnlyList<LineSeries> series, int right, int y)
    {
        if (series.Count == 0) return;
        const int swatch = 14, gap = 4, lineHeight = 11;
        int width = 3 * gap + swatch + series.Max(s => BitmapFont.TextWidth(s.Name));
        int height = gap + series.Count * lineHeight;
        int x = right - width;
        canvas.FillRect(x, y, width, height, Rgb.White);
        canvas.DrawRect(x, y, width, height, Rgb.Gray);
        for (int k = 0; k < series.Count; k++)
        {
            int rowY = y + gap + k * lineHeight;
            canvas.DrawLine(x + gap, rowY + 3, x + gap + swatch - 1, rowY + 3, SeriesColor(series[k], k), LegendLineThickness);
            canvas.DrawText(x + 2 * gap + swatch, rowY, series[k].Name, Rgb.Black);
        }
    }
}
