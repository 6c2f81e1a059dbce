namespace DiffusionCore.Training.Plotting;

/// <summary>A grid of small images (e.g. MNIST samples) in one PNG, like torchvision's make_grid.</summary>
public static class ImageGrid
{
    /// <summary>Pixels of separator between and around the images.</summary>
    public const int Padding = 2;

    private static readonly Rgb SeparatorColor = new(96, 96, 96);

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
    public static void Save(string path, float[] images, int n, int channels, int height, int width, int rows, int cols,
        float min = -1f, float max = 1f, int scale = 1) =>
        Render(images, n, channels, height, width, rows, cols, min, max, scale).SavePng(path);

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
    public static Canvas Render(float[] images, int n, int channels, int height, int width, int rows, int cols,
        float min = -1f, float max = 1f, int scale = 1)
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

        int cellWidth = width * scale, cellHeight = height * scale;
        var canvas = new Canvas(cols * (cellWidth + Padding) + Padding, rows * (cellHeight + Padding) + Padding, SeparatorColor);
        int plane = height * width;
        for (int k = 0; k < n; k++)
        {
            int originX = Padding + k % cols * (cellWidth + Padding), originY = Padding + k / cols * (cellHeight + Padding);
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
