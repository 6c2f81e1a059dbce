namespace DiffusionCore.Plotting;

/// <summary>
/// A square plotting area with the same range on both axes, its grid, ticks, tick labels, axis captions and title:
/// the frame the trajectory and density plots draw into.
/// </summary>
internal sealed class SquareAxes
{
    public const int LeftMargin = 56, TopMargin = 30, BottomMargin = 34, RightMargin = 14;
    private const int TickLength = 4, TickCount = 5;

    public SquareAxes(int left, int top, int size, AxisRange range)
    {
        Left = left;
        Top = top;
        Size = size;
        Range = range;
    }

    public int Left { get; }

    public int Top { get; }

    public int Size { get; }

    public AxisRange Range { get; }

    public float X(double v) => (float)(Left + (v - Range.Min) / (Range.Max - Range.Min) * (Size - 1));

    public float Y(double v) => (float)(Top + (Range.Max - v) / (Range.Max - Range.Min) * (Size - 1));

    public bool Contains(double x, double y) => x >= Range.Min && x <= Range.Max && y >= Range.Min && y <= Range.Max;

    /// <summary>Grid lines under the data (call before drawing it).</summary>
    public void DrawGrid(Canvas canvas)
    {
        foreach (double t in AxisTicks.Linear(Range.Min, Range.Max, TickCount))
        {
            int px = (int)MathF.Round(X(t)), py = (int)MathF.Round(Y(t));
            canvas.DrawLine(px, Top, px, Top + Size - 1, Rgb.LightGray);
            canvas.DrawLine(Left, py, Left + Size - 1, py, Rgb.LightGray);
        }
    }

    /// <summary>Frame, ticks, tick labels, axis captions and the title (call after drawing the data).</summary>
    public void DrawFrame(Canvas canvas, string title, string xLabel, string yLabel)
    {
        double[] ticks = AxisTicks.Linear(Range.Min, Range.Max, TickCount);
        double step = ticks.Length > 1 ? ticks[1] - ticks[0] : Range.Max - Range.Min;
        foreach (double t in ticks)
        {
            int px = (int)MathF.Round(X(t)), py = (int)MathF.Round(Y(t));
            canvas.DrawLine(px, Top + Size, px, Top + Size + TickLength - 1, Rgb.Gray);
            canvas.DrawLine(Left - TickLength, py, Left - 1, py, Rgb.Gray);
            string label = AxisTicks.Format(t, step);
            canvas.DrawText(px - BitmapFont.TextWidth(label) / 2, Top + Size + TickLength + 3, label, Rgb.Black);
            canvas.DrawText(Left - TickLength - 3 - BitmapFont.TextWidth(label), py - BitmapFont.GlyphHeight / 2, label, Rgb.Black);
        }
        canvas.DrawRect(Left - 1, Top - 1, Size + 2, Size + 2, Rgb.Gray);
        canvas.DrawText(Left + (Size - BitmapFont.TextWidth(xLabel)) / 2, Top + Size + BottomMargin - BitmapFont.GlyphHeight - 2, xLabel, Rgb.Black);
        canvas.DrawTextUp(Left - LeftMargin + 3, Top + (Size + BitmapFont.TextWidth(yLabel)) / 2, yLabel, Rgb.Black);
        int scale = BitmapFont.TextWidth(title, 2) <= Size ? 2 : 1;
        canvas.DrawText(Math.Max(2, Left + (Size - BitmapFont.TextWidth(title, scale)) / 2), (TopMargin - BitmapFont.TextHeight(scale)) / 2, title, Rgb.Black, scale);
    }
}
