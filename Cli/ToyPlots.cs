using DiffusionCore.Training.Plotting;

namespace DiffusionCore.Cli;

/// <summary>The demo's pictures: data next to samples, and the loss curve.</summary>
internal static class ToyPlots
{
    public static void SaveScatter(string path, string dataName, float[] data, float[] samples)
    {
        var palette = Rgb.Palette;
        ScatterPlot.Save(path,
        [
            new ScatterPanel($"data: {dataName}", [new ScatterSeries(data, palette[0])]),
            new ScatterPanel("DDPM samples", [new ScatterSeries(samples, palette[1])]),
        ]);
    }

    public static void SaveLoss(string path, IReadOnlyList<double> losses)
    {
        var steps = Enumerable.Range(1, losses.Count).Select(i => (double)i).ToArray();
        // A running mean over 50 steps shows the trend under the per-batch noise.
        var smooth = new double[losses.Count];
        double acc = 0;
        for (int i = 0; i < losses.Count; i++)
        {
            acc += losses[i] - (i >= 50 ? losses[i - 50] : 0);
            smooth[i] = acc / Math.Min(i + 1, 50);
        }
        LinePlot.Save(path, "training loss (L_simple)", [new LineSeries("loss", steps, losses), new LineSeries("mean of 50", steps, smooth)], logY: true);
    }
}
