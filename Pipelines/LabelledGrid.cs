using DiffusionCore.Plotting;
using DiffusionCore.Training.Evaluation;

namespace DiffusionCore.Pipelines;

/// <summary>
/// MNIST-like samples in a grid with one row per class, the class written at the left of its row: the rows are the
/// requested classes of class-conditional samples, or the classifier's classes of unconditional ones. Where a
/// sample's predicted class differs from its row's (class-conditional samples), the cell is framed in red and the
/// predicted class written in its corner, so the misses of the score of <see cref="MnistEvaluator"/> can be seen.
/// </summary>
public static class LabelledGrid
{
    private static readonly Rgb Miss = new(230, 30, 30);
    private static readonly Rgb Text = Rgb.White;
    private static readonly Rgb Background = new(96, 96, 96);

    /// <summary>Renders the grid and saves it as a PNG (atomically, creating the directory).</summary>
    /// <param name="path">Output file.</param>
    /// <param name="images">n images of height x width floats (one channel) in [-1, 1], n = rowLabels.Length.</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    /// <param name="rowLabels">The row (class) of each image; images beyond <paramref name="perRow"/> in a row are left out.</param>
    /// <param name="predicted">The classifier's class of each image, to mark the misses; null to mark none.</param>
    /// <param name="classes">Number of rows.</param>
    /// <param name="perRow">Images per row.</param>
    /// <param name="scale">Each image pixel becomes a scale x scale square.</param>
    public static void Save(string path, float[] images, int height, int width, int[] rowLabels, int[]? predicted, int classes = 10, int perRow = 10, int scale = 2) =>
        Render(images, height, width, rowLabels, predicted, classes, perRow, scale).SavePng(path);

    /// <summary>Draws the grid (see <see cref="Save"/> for the parameters); empty cells are black.</summary>
    public static Canvas Render(float[] images, int height, int width, int[] rowLabels, int[]? predicted, int classes = 10, int perRow = 10, int scale = 2)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(rowLabels);
        int n = rowLabels.Length, plane = height * width;
        if (height < 1 || width < 1 || classes < 1 || perRow < 1 || scale < 1)
            throw new ArgumentException($"LabelledGrid: bad sizes height={height} width={width} classes={classes} perRow={perRow} scale={scale}");
        if (images.Length != (long)n * plane) throw new ArgumentException($"LabelledGrid: {images.Length} values are not {n} images of {height} x {width}", nameof(images));
        if (predicted is not null && predicted.Length != n) throw new ArgumentException($"LabelledGrid: {predicted.Length} predictions for {n} images", nameof(predicted));
        int bad = Array.FindIndex(rowLabels, l => l < 0 || l >= classes);
        if (bad >= 0) throw new ArgumentException($"LabelledGrid: row label {rowLabels[bad]} at {bad} is outside [0, {classes})", nameof(rowLabels));

        // Lay the images out row by row (cell = row * perRow + column), the unused cells black (-1).
        var cells = new float[classes * perRow * plane];
        Array.Fill(cells, -1f);
        var cellOf = new int[n];
        var filled = new int[classes];
        for (int i = 0; i < n; i++)
        {
            int row = rowLabels[i];
            cellOf[i] = filled[row] < perRow ? row * perRow + filled[row]++ : -1;
            if (cellOf[i] >= 0) images.AsSpan(i * plane, plane).CopyTo(cells.AsSpan(cellOf[i] * plane));
        }
        var grid = ImageGrid.Render(cells, classes * perRow, 1, height, width, classes, perRow, scale: scale);

        int textScale = Math.Max(1, scale), margin = BitmapFont.Advance * textScale * (classes > 10 ? 2 : 1) + 2 * ImageGrid.Padding;
        var canvas = new Canvas(grid.Width + margin, grid.Height, Background);
        for (int y = 0; y < grid.Height; y++)
            for (int x = 0; x < grid.Width; x++) canvas.SetPixel(x + margin, y, grid.GetPixel(x, y));
        int cellWidth = width * scale, cellHeight = height * scale;
        for (int row = 0; row < classes; row++)
        {
            int top = ImageGrid.Padding + row * (cellHeight + ImageGrid.Padding);
            canvas.DrawText(ImageGrid.Padding, top + (cellHeight - BitmapFont.TextHeight(textScale)) / 2, row.ToString(System.Globalization.CultureInfo.InvariantCulture), Text, textScale);
        }
        if (predicted is null) return canvas;
        for (int i = 0; i < n; i++)
        {
            if (cellOf[i] < 0 || predicted[i] == rowLabels[i]) continue;
            int left = margin + ImageGrid.Padding + cellOf[i] % perRow * (cellWidth + ImageGrid.Padding);
            int top = ImageGrid.Padding + cellOf[i] / perRow * (cellHeight + ImageGrid.Padding);
            canvas.DrawRect(left - 1, top - 1, cellWidth + 2, cellHeight + 2, Miss);
            canvas.DrawRect(left, top, cellWidth, cellHeight, Miss);
            canvas.DrawText(left + 2, top + 2, predicted[i].ToString(System.Globalization.CultureInfo.InvariantCulture), Miss);
        }
        return canvas;
    }
}
