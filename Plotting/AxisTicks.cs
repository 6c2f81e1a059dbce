using System.Globalization;

namespace DiffusionCore.Plotting;

/// <summary>Tick positions and labels for plot axes: "nice" steps of 1, 2 or 5 times a power of ten.</summary>
public static class AxisTicks
{
    /// <summary>
    /// About <paramref name="target"/> evenly spaced ticks inside [<paramref name="min"/>, <paramref name="max"/>],
    /// at multiples of a step of 1, 2 or 5 times a power of ten (Heckbert, "Nice numbers for graph labels", 1990).
    /// </summary>
    public static double[] Linear(double min, double max, int target = 5)
    {
        if (!double.IsFinite(min) || !double.IsFinite(max) || !(max > min)) return double.IsFinite(min) ? [min] : [];
        double step = NiceStep((max - min) / Math.Max(1, target));
        long first = (long)Math.Ceiling(min / step - 1e-9), last = (long)Math.Floor(max / step + 1e-9);
        var ticks = new double[Math.Max(0, last - first + 1)];
        for (long k = first; k <= last; k++) ticks[k - first] = k == 0 ? 0 : k * step;
        return ticks;
    }

    /// <summary>
    /// Ticks for a logarithmic axis over [<paramref name="min"/>, <paramref name="max"/>] (both positive): the powers
    /// of ten inside it (thinned to at most <paramref name="target"/> + 1) when there are at least three; otherwise
    /// the values 1, 2 and 5 times a power of ten inside it; linear ticks when even those are fewer than two.
    /// </summary>
    public static double[] Log10(double min, double max, int target = 5)
    {
        if (!(min > 0) || !(max > min) || !double.IsFinite(max)) return Linear(min, max, target);
        int lo = (int)Math.Ceiling(Math.Log10(min) - 1e-9), hi = (int)Math.Floor(Math.Log10(max) + 1e-9);
        var ticks = new List<double>();
        if (hi - lo >= 2)
        {
            int every = (hi - lo + target - 1) / target;
            for (int e = lo; e <= hi; e += every) ticks.Add(Math.Pow(10, e));
            return ticks.ToArray();
        }
        for (int e = lo - 1; e <= hi; e++)
        {
            foreach (double mantissa in (ReadOnlySpan<double>)[1, 2, 5])
            {
                double v = mantissa * Math.Pow(10, e);
                if (v >= min * (1 - 1e-12) && v <= max * (1 + 1e-12)) ticks.Add(v);
            }
        }
        return ticks.Count >= 2 ? ticks.ToArray() : Linear(min, max, target);
    }

    /// <summary>
    /// A label with up to four significant digits and no trailing zeros ("0.05", "2", "2.5"), for ticks that are
    /// not evenly spaced (logarithmic axes); mantissa-exponent form for very large or small magnitudes.
    /// </summary>
    public static string FormatCompact(double value)
    {
        double magnitude = Math.Abs(value);
        if (value != 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return Format(value, magnitude);
        return value.ToString("G4", CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// A short label for <paramref name="value"/> on an axis whose ticks are <paramref name="step"/> apart: as many
    /// decimals as the step needs, or mantissa-exponent form ("2.5e-4") for very large or small magnitudes.
    /// </summary>
    public static string Format(double value, double step)
    {
        if (value == 0) return "0";
        double magnitude = Math.Abs(value);
        if (magnitude >= 1e5 || magnitude < 1e-3)
        {
            int exponent = (int)Math.Floor(Math.Log10(magnitude));
            double mantissa = Math.Round(value / Math.Pow(10, exponent), 2);
            return mantissa.ToString("0.##", CultureInfo.InvariantCulture) + "e" + exponent.ToString(CultureInfo.InvariantCulture);
        }
        int decimals = step > 0 && double.IsFinite(step) ? Math.Clamp((int)-Math.Floor(Math.Log10(step) + 1e-9), 0, 6) : 3;
        return value.ToString("F" + decimals, CultureInfo.InvariantCulture);
    }

    private static double NiceStep(double raw)
    {
        double power = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double fraction = raw / power;
        double nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10;
        return nice * power;
    }
}
