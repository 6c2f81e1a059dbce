using StbImageWriteSharp;

namespace DiffusionCore.Plotting;

/// <summary>
/// An RGB raster with the few drawing primitives the plots need (pixels, rectangles, lines, discs, text in
/// <see cref="BitmapFont"/>), saved as PNG through the managed StbImageWriteSharp encoder. Coordinates are
/// pixels from the top-left corner; everything is clipped to the canvas.
/// </summary>
public sealed class Canvas
{
    /// <summary>Creates a <paramref name="width"/> x <paramref name="height"/> canvas filled with <paramref name="background"/>.</summary>
    public Canvas(int width, int height, Rgb background)
    {
        if (width < 1 || height < 1) throw new ArgumentException($"canvas size must be positive, got {width} x {height}");
        Width = width;
        Height = height;
        Background = background;
        Pixels = new byte[3 * width * height];
        FillRect(0, 0, width, height, background);
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The colour the canvas was created with.</summary>
    public Rgb Background { get; }

    /// <summary>The pixels, row-major from the top-left, three bytes (R, G, B) each.</summary>
    public byte[] Pixels { get; }

    /// <summary>The colour at (<paramref name="x"/>, <paramref name="y"/>), which must lie on the canvas.</summary>
    public Rgb GetPixel(int x, int y)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height)
        {
            throw new ArgumentOutOfRangeException(nameof(x), $"pixel ({x}, {y}) is outside the {Width} x {Height} canvas");
        }
        int p = 3 * (y * Width + x);
        return new Rgb(Pixels[p], Pixels[p + 1], Pixels[p + 2]);
    }

    /// <summary>Sets one pixel; ignored outside the canvas.</summary>
    public void SetPixel(int x, int y, Rgb color)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int p = 3 * (y * Width + x);
        Pixels[p] = color.R;
        Pixels[p + 1] = color.G;
        Pixels[p + 2] = color.B;
    }

    /// <summary>Mixes <paramref name="color"/> into one pixel with opacity <paramref name="alpha"/> in [0, 1]; ignored outside the canvas.</summary>
    public void BlendPixel(int x, int y, Rgb color, float alpha)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        int p = 3 * (y * Width + x);
        Pixels[p] = Mix(Pixels[p], color.R, alpha);
        Pixels[p + 1] = Mix(Pixels[p + 1], color.G, alpha);
        Pixels[p + 2] = Mix(Pixels[p + 2], color.B, alpha);
    }

    /// <summary>Fills the rectangle with top-left (<paramref name="x"/>, <paramref name="y"/>) and the given size.</summary>
    public void FillRect(int x, int y, int width, int height, Rgb color)
    {
        int x0 = Math.Max(0, x), y0 = Math.Max(0, y);
        int x1 = Math.Min(Width, x + width), y1 = Math.Min(Height, y + height);
        for (int row = y0; row < y1; row++)
        {
            for (int col = x0; col < x1; col++) SetPixel(col, row, color);
        }
    }

    /// <summary>Draws the one-pixel outline of the rectangle with top-left (<paramref name="x"/>, <paramref name="y"/>) and the given size.</summary>
    public void DrawRect(int x, int y, int width, int height, Rgb color)
    {
        if (width < 1 || height < 1) return;
        DrawLine(x, y, x + width - 1, y, color);
        DrawLine(x, y + height - 1, x + width - 1, y + height - 1, color);
        DrawLine(x, y, x, y + height - 1, color);
        DrawLine(x + width - 1, y, x + width - 1, y + height - 1, color);
    }

    /// <summary>
    /// Draws the segment between the two points, both ends included (Bresenham's algorithm), with a square pen
    /// <paramref name="thickness"/> pixels wide.
    /// </summary>
    public void DrawLine(int x0, int y0, int x1, int y1, Rgb color, int thickness = 1)
    {
        int dx = Math.Abs(x1 - x0), dy = -Math.Abs(y1 - y0);
        int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
        int error = dx + dy;
        int half = (thickness - 1) / 2;
        while (true)
        {
            if (thickness <= 1) SetPixel(x0, y0, color);
            else FillRect(x0 - half, y0 - half, thickness, thickness, color);
            if (x0 == x1 && y0 == y1) return;
            int twice = 2 * error;
            if (twice >= dy) { error += dy; x0 += sx; }
            if (twice <= dx) { error += dx; y0 += sy; }
        }
    }

    /// <summary>
    /// Draws a filled disc centred at (<paramref name="x"/>, <paramref name="y"/>): every pixel whose centre lies
    /// within <paramref name="radius"/>, blended with opacity <paramref name="alpha"/> so dense regions read darker.
    /// </summary>
    public void DrawPoint(float x, float y, float radius, Rgb color, float alpha = 1f)
    {
        int x0 = (int)MathF.Floor(x - radius), x1 = (int)MathF.Ceiling(x + radius);
        int y0 = (int)MathF.Floor(y - radius), y1 = (int)MathF.Ceiling(y + radius);
        float r2 = radius * radius;
        for (int row = y0; row <= y1; row++)
        {
            for (int col = x0; col <= x1; col++)
            {
                float ddx = col + 0.5f - x, ddy = row + 0.5f - y;
                if (ddx * ddx + ddy * ddy <= r2) BlendPixel(col, row, color, alpha);
            }
        }
    }

    /// <summary>
    /// Draws <paramref name="text"/> with its top-left corner at (<paramref name="x"/>, <paramref name="y"/>),
    /// each font pixel a <paramref name="scale"/> x <paramref name="scale"/> square.
    /// </summary>
    public void DrawText(int x, int y, string text, Rgb color, int scale = 1)
    {
        foreach (char c in text)
        {
            ReadOnlySpan<byte> rows = BitmapFont.Glyph(c);
            for (int row = 0; row < BitmapFont.GlyphHeight; row++)
            {
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                {
                    if ((rows[row] >> (BitmapFont.GlyphWidth - 1 - col) & 1) != 0)
                    {
                        FillRect(x + col * scale, y + row * scale, scale, scale, color);
                    }
                }
            }
            x += BitmapFont.Advance * scale;
        }
    }

    /// <summary>
    /// Draws <paramref name="text"/> turned a quarter to the left (read bottom to top, as a y-axis caption), starting
    /// at its bottom-left corner (<paramref name="x"/>, <paramref name="y"/>).
    /// </summary>
    public void DrawTextUp(int x, int y, string text, Rgb color)
    {
        foreach (char c in text)
        {
            ReadOnlySpan<byte> rows = BitmapFont.Glyph(c);
            for (int row = 0; row < BitmapFont.GlyphHeight; row++)
            {
                for (int col = 0; col < BitmapFont.GlyphWidth; col++)
                {
                    if ((rows[row] >> (BitmapFont.GlyphWidth - 1 - col) & 1) != 0) SetPixel(x + row, y - col, color);
                }
            }
            y -= BitmapFont.Advance;
        }
    }

    /// <summary>The canvas encoded as an 8-bit RGB PNG.</summary>
    public byte[] EncodePng()
    {
        using var stream = new MemoryStream();
        WritePng(stream);
        return stream.ToArray();
    }

    /// <summary>Saves the canvas as PNG at <paramref name="path"/>, creating the directory and replacing the file atomically.</summary>
    public void SavePng(string path) => AtomicFile.Write(path, WritePng);

    private void WritePng(Stream stream) =>
        new ImageWriter().WritePng(Pixels, Width, Height, ColorComponents.RedGreenBlue, stream);

    private static byte Mix(byte under, byte over, float alpha) =>
        (byte)Math.Clamp(MathF.Round(under + (over - under) * alpha), 0f, 255f);
}
