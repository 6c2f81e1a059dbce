namespace DiffusionCore.Plotting;

/// <summary>
/// A training-loss plot: the raw per-step losses in a light colour with an exponentially smoothed curve over them
/// (TensorBoard's debiased EMA), so that the trend stays readable under minibatch noise.
/// </summary>
public static class LossCurve
{
    /// <summary>
    /// The debiased exponential moving average of <paramref name="values"/> with weight <paramref name="decay"/> on the
    /// past: m_i = decay m_(i-1) + (1 - decay) v_i, reported as m_i / (1 - decay^i) so the start is not pulled to 0.
    /// Non-finite values are skipped (their entry repeats the previous average, NaN before the first finite value).
    /// </summary>
    public static double[] Smooth(IReadOnlyList<double> values, double decay)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (!(decay >= 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), decay, "LossCurve.Smooth: decay must be in [0, 1)");
        var smoothed = new double[values.Count];
        double average = 0, weight = 0;
        for (int i = 0; i < values.Count; i++)
        {
            if (double.IsFinite(values[i]))
            {
                average = decay * average + (1 - decay) * values[i];
                weight = decay * weight + (1 - decay);
            }
            smoothed[i] = weight > 0 ? average / weight : double.NaN;
        }
        return smoothed;
    }

    /// <summary>The smoothing used for <paramref name="count"/> points: a span of about a twentieth of the run (1 to 500 steps).</summary>
    public static double DefaultDecay(int count) => 1 - 1.0 / Math.Clamp(count / 20.0, 1, 500);

    /// <summary>
    /// Saves the plot of <paramref name="losses"/> (entry i is step i + 1) to <paramref name="path"/>: a log y axis
    /// when every loss is positive, a linear one otherwise (sliced score matching's loss can be negative).
    /// </summary>
    public static void Save(string path, IReadOnlyList<double> losses, string title = "training loss") =>
        Render(losses, title).SavePng(path);

    /// <summary>Draws the plot of <paramref name="losses"/>; see <see cref="Save"/>.</summary>
    public static Canvas Render(IReadOnlyList<double> losses, string title = "training loss")
    {
        ArgumentNullException.ThrowIfNull(losses);
        var steps = Enumerable.Range(1, losses.Count).Select(i => (double)i).ToArray();
        double decay = DefaultDecay(losses.Count);
        var smoothed = Smooth(losses, decay);
        bool logY = losses.Count > 0 && losses.All(l => l > 0);
        int span = (int)Math.Round(1 / (1 - decay));
        return LinePlot.Render(title,
        [
            new LineSeries("raw", steps, losses, new Rgb(174, 199, 232), 1),
            new LineSeries(span > 1 ? $"smoothed (EMA over ~{span} steps)" : "smoothed", steps, smoothed, Rgb.Palette[0], 2),
        ], logY, xLabel: "training step", yLabel: logY ? "loss (log scale)" : "loss");
    }
}
