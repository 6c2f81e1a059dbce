namespace DiffusionCore.Plotting;

/// <summary>A grid of small images (e.g. MNIST samples) in one PNG, like torchvision's make_grid.</summary>
public static class ImageGrid
{
    /// <summary>Pixels of separator between and around the images.</summary>
    public const int Padding = 2;

    private static readonly Rgb SeparatorColor = new(96, 96, 96), CaptionColor = new(255, 230, 120);

    // Shown where a value is NaN, so that a diverged sample is visible rather than silently black.
    private static readonly Rgb NotANumberColor = new(255, 0, 0);

    /// <summary>Renders the grid and saves it as a PNG (atomically, creating the directory).</summary>
    /// <param name="path">Output file.</param>
    /// <param name="images">Images in NCHW order: n x channels x height x width floats.</param>
    /// <param name="n">Number of images.</param>
    /// <param name="channels">1 (grayscale) or 3 (RGB).</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    /// <param name="rows">Grid rows.</param>
    /// <param name="cols">Grid columns; rows x cols must hold all n images, filled row by row.</param>
    /// <param name="min">Value shown as black; lower values are clamped.</param>
    /// <param name="max">Value shown as white; higher values are clamped.</param>
    /// <param name="scale">Each image pixel becomes a scale x scale square.</param>
    /// <param name="captions">One caption per image (e.g. its class label), drawn above it, or null for none.</param>
    /// <param name="title">A title above the grid, or null for none.</param>
    public static void Save(string path, float[] images, int n, int channels, int height, int width, int rows, int cols,
        float min = -1f, float max = 1f, int scale = 1, IReadOnlyList<string>? captions = null, string? title = null) =>
        Render(images, n, channels, height, width, rows, cols, min, max, scale, captions, title).SavePng(path);

    /// <summary>Draws the grid: value v maps to round(255 (v - min) / (max - min)) after clamping; NaN is drawn red.</summary>
    /// <param name="images">Images in NCHW order: n x channels x height x width floats.</param>
    /// <param name="n">Number of images.</param>
    /// <param name="channels">1 (grayscale) or 3 (RGB).</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    /// <param name="rows">Grid rows.</param>
    /// <param name="cols">Grid columns; rows x cols must hold all n images, filled row by row.</param>
    /// <param name="min">Value shown as black; lower values are clamped.</param>
    /// <param name="max">Value shown as white; higher values are clamped.</param>
    /// <param name="scale">Each image pixel becomes a scale x scale square.</param>
    /// <param name="captions">One caption per image (e.g. its class label), drawn above it, or null for none.</param>
    /// <param name="title">A title above the grid, or null for none.</param>
    public static Canvas Render(float[] images, int n, int channels, int height, int width, int rows, int cols,
        float min = -1f, float max = 1f, int scale = 1, IReadOnlyList<string>? captions = null, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (channels != 1 && channels != 3) throw new ArgumentException($"ImageGrid: channels must be 1 or 3, got {channels}", nameof(channels));
        if (n < 0 || height < 1 || width < 1 || rows < 1 || cols < 1 || scale < 1)
        {
            throw new ArgumentException($"ImageGrid: bad sizes n={n} height={height} width={width} rows={rows} cols={cols} scale={scale}");
        }
        if (images.Length != (long)n * channels * height * width)
        {
            throw new ArgumentException($"ImageGrid: {images.Length} values do not make {n} x {channels} x {height} x {width} images", nameof(images));
        }
        if (n > rows * cols) throw new ArgumentException($"ImageGrid: {n} images do not fit a {rows} x {cols} grid", nameof(n));
        if (!(max > min)) throw new ArgumentException($"ImageGrid: value range [{min}, {max}] is empty", nameof(max));
        if (captions is not null && captions.Count != n) throw new ArgumentException($"ImageGrid: {captions.Count} captions for {n} images", nameof(captions));

        int cellWidth = width * scale, cellHeight = height * scale;
        int captionHeight = captions is null ? 0 : BitmapFont.GlyphHeight + 4;
        int titleHeight = title is null ? 0 : BitmapFont.GlyphHeight + 8;
        int gridWidth = cols * (cellWidth + Padding) + Padding;
        var canvas = new Canvas(Math.Max(gridWidth, title is null ? 0 : BitmapFont.TextWidth(title) + 8), titleHeight + rows * (cellHeight + captionHeight + Padding) + Padding, SeparatorColor);
        if (title is not null) canvas.DrawText((canvas.Width - BitmapFont.TextWidth(title)) / 2, 4, title, Rgb.White);
        int plane = height * width;
        for (int k = 0; k < n; k++)
        {
            int originX = Padding + k % cols * (cellWidth + Padding), originY = titleHeight + Padding + k / cols * (cellHeight + captionHeight + Padding) + captionHeight;
            if (captions is not null)
            {
                string caption = captions[k];
                canvas.DrawText(originX + (cellWidth - BitmapFont.TextWidth(caption)) / 2, originY - captionHeight + 2, caption, CaptionColor);
            }
            int imageStart = k * channels * plane;
            for (int y = 0; y < height; y++)
            {
                for (int x = 0; x < width; x++)
                {
                    int at = imageStart + y * width + x;
                    Rgb color = channels == 1
                        ? Gray(images[at], min, max)
                        : Color(images[at], images[at + plane], images[at + 2 * plane], min, max);
                    canvas.FillRect(originX + x * scale, originY + y * scale, scale, scale, color);
                }
            }
        }
        return canvas;
    }

    private static Rgb Gray(float v, float min, float max)
    {
        if (float.IsNaN(v)) return NotANumberColor;
        byte level = Level(v, min, max);
        return new Rgb(level, level, level);
    }

    private static Rgb Color(float r, float g, float b, float min, float max) =>
        float.IsNaN(r) || float.IsNaN(g) || float.IsNaN(b)
            ? NotANumberColor
            : new Rgb(Level(r, min, max), Level(g, min, max), Level(b, min, max));

    private static byte Level(float v, float min, float max) =>
        (byte)MathF.Round(255f * (Math.Clamp(v, min, max) - min) / (max - min));
}
