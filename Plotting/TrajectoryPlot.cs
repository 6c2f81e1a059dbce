namespace DiffusionCore.Plotting;

/// <summary>
/// Paths of 2-D points through time (e.g. probability-flow ODE trajectories from the prior to the data), drawn over
/// a cloud of reference points, with each path's start and end marked and a legend saying which is which.
/// </summary>
public static class TrajectoryPlot
{
    /// <summary>Side of the plotting square in pixels, unless the caller picks another.</summary>
    public const int DefaultSize = 440;

    private static readonly Rgb BackgroundColor = new(190, 190, 190), StartColor = new(31, 119, 180), EndColor = Rgb.Black;

    /// <summary>Renders the plot and saves it as a PNG (atomically, creating the directory).</summary>
    /// <param name="path">Output file.</param>
    /// <param name="title">Title above the plot.</param>
    /// <param name="frames">Positions of every path at each time, in time order: frame k holds (x, y) of path 0, 1, ... interleaved.</param>
    /// <param name="background">Reference points (x, y interleaved), drawn in grey under the paths, or empty.</param>
    /// <param name="range">Range of both axes; null covers the reference points and the paths' ends.</param>
    /// <param name="labels">Legend entries: the reference points, a path, the start and the end.</param>
    /// <param name="size">Side of the plotting square in pixels.</param>
    public static void Save(string path, string title, IReadOnlyList<float[]> frames, float[] background, AxisRange? range = null,
        TrajectoryLabels? labels = null, int size = DefaultSize) =>
        Render(title, frames, background, range, labels, size).SavePng(path);

    /// <summary>Draws the plot; see <see cref="Save"/>.</summary>
    /// <param name="title">Title above the plot.</param>
    /// <param name="frames">Positions of every path at each time, in time order: frame k holds (x, y) of path 0, 1, ... interleaved.</param>
    /// <param name="background">Reference points (x, y interleaved), drawn in grey under the paths, or empty.</param>
    /// <param name="range">Range of both axes; null covers the reference points and the paths' ends.</param>
    /// <param name="labels">Legend entries: the reference points, a path, the start and the end.</param>
    /// <param name="size">Side of the plotting square in pixels.</param>
    public static Canvas Render(string title, IReadOnlyList<float[]> frames, float[] background, AxisRange? range = null,
        TrajectoryLabels? labels = null, int size = DefaultSize)
    {
        ArgumentNullException.ThrowIfNull(frames);
        ArgumentNullException.ThrowIfNull(background);
        if (frames.Count == 0) throw new ArgumentException("TrajectoryPlot: at least one frame is needed", nameof(frames));
        int width = frames[0].Length;
        if (width % 2 != 0 || frames.Any(f => f.Length != width))
            throw new ArgumentException($"TrajectoryPlot: every frame must hold the same (x, y) pairs; the first has {width} values", nameof(frames));
        if (size < 64) throw new ArgumentException($"TrajectoryPlot: size must be at least 64 pixels, got {size}", nameof(size));
        labels ??= new TrajectoryLabels();
        var axisRange = range ?? ScatterPlot.AutoRange([new ScatterPanel("", background, Rgb.Black), new ScatterPanel("", frames[^1], Rgb.Black), new ScatterPanel("", frames[0], Rgb.Black)]);

        var canvas = new Canvas(SquareAxes.LeftMargin + size + SquareAxes.RightMargin, SquareAxes.TopMargin + size + SquareAxes.BottomMargin, Rgb.White);
        var axes = new SquareAxes(SquareAxes.LeftMargin, SquareAxes.TopMargin, size, axisRange);
        axes.DrawGrid(canvas);
        for (int i = 0; i + 1 < background.Length; i += 2)
            if (axes.Contains(background[i], background[i + 1])) canvas.DrawPoint(axes.X(background[i]) + 0.5f, axes.Y(background[i + 1]) + 0.5f, 1.5f, BackgroundColor, 0.7f);
        int paths = width / 2;
        for (int p = 0; p < paths; p++)
        {
            var color = Rgb.Palette[p % Rgb.Palette.Count];
            for (int s = 1; s < frames.Count; s++)
            {
                double x0 = frames[s - 1][2 * p], y0 = frames[s - 1][2 * p + 1], x1 = frames[s][2 * p], y1 = frames[s][2 * p + 1];
                if (!axes.Contains(x0, y0) || !axes.Contains(x1, y1)) continue;
                canvas.DrawLine((int)MathF.Round(axes.X(x0)), (int)MathF.Round(axes.Y(y0)), (int)MathF.Round(axes.X(x1)), (int)MathF.Round(axes.Y(y1)), color);
            }
        }
        for (int p = 0; p < paths; p++)
        {
            double sx = frames[0][2 * p], sy = frames[0][2 * p + 1], ex = frames[^1][2 * p], ey = frames[^1][2 * p + 1];
            if (axes.Contains(sx, sy)) DrawRing(canvas, axes.X(sx), axes.Y(sy), StartColor);
            if (axes.Contains(ex, ey)) canvas.DrawPoint(axes.X(ex) + 0.5f, axes.Y(ey) + 0.5f, 2.5f, EndColor);
        }
        axes.DrawFrame(canvas, title, labels.XAxis, labels.YAxis);
        ScatterPlot.DrawLegend(canvas,
        [
            new ScatterSeries([], BackgroundColor, labels.Background),
            new ScatterSeries([], Rgb.Palette[1], labels.Path),
            new ScatterSeries([], StartColor, labels.Start),
            new ScatterSeries([], EndColor, labels.End),
        ], axes.Left + 4, axes.Top + 4);
        return canvas;
    }

    private static void DrawRing(Canvas canvas, float x, float y, Rgb color)
    {
        for (int k = 0; k < 16; k++)
        {
            double a = 2 * Math.PI * k / 16;
            canvas.SetPixel((int)MathF.Round(x + 3 * (float)Math.Cos(a)), (int)MathF.Round(y + 3 * (float)Math.Sin(a)), color);
        }
    }
}

/// <summary>The words of a trajectory plot's legend and axes.</summary>
/// <param name="Background">The reference points (e.g. "data").</param>
/// <param name="Path">A path (e.g. "ODE path").</param>
/// <param name="Start">Where paths start (e.g. "start: prior draw").</param>
/// <param name="End">Where paths end (e.g. "end: sample").</param>
/// <param name="XAxis">Caption of the x axis.</param>
/// <param name="YAxis">Caption of the y axis.</param>
public sealed record TrajectoryLabels(string Background = "data", string Path = "path", string Start = "start", string End = "end",
    string XAxis = "x1", string YAxis = "x2");
