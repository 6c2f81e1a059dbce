using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace DiffusionCore.Cli.CommandLine;

/// <summary>
/// Typed options with their ranges checked at parse time (a bad value is a parse error naming the option, the
/// range and the value given), and the questions a command asks about them.
/// </summary>
internal static class CliOptions
{
    /// <summary>An integer option in [min, max]; null when not given unless <paramref name="fallback"/> is set.</summary>
    public static Option<int?> Int(string name, string description, int min, int max, int? fallback = null, string? helpName = "N")
    {
        var option = new Option<int?>(name) { Description = description, HelpName = helpName };
        option.CustomParser = r => ParseNumber(r, name, min, max, s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : null, "an integer");
        if (fallback is not null) option.DefaultValueFactory = _ => fallback;
        return option;
    }

    /// <summary>A number option in [min, max] (NaN refused); null when not given unless <paramref name="fallback"/> is set.</summary>
    public static Option<double?> Double(string name, string description, double min, double max, double? fallback = null, string? helpName = "X")
    {
        var option = new Option<double?>(name) { Description = description, HelpName = helpName };
        option.CustomParser = r => ParseNumber(r, name, min, max,
            s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && !double.IsNaN(v) ? v : null, "a number");
        if (fallback is not null) option.DefaultValueFactory = _ => fallback;
        return option;
    }

    /// <summary>A seed: an unsigned 64-bit integer.</summary>
    public static Option<ulong> Seed() => new("--seed")
    {
        Description = "seed of every random draw (weights, batches, noise)",
        HelpName = "N",
        DefaultValueFactory = _ => 0UL,
        CustomParser = r =>
        {
            string s = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            if (ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)) return v;
            r.AddError($"--seed must be an integer in [0, {ulong.MaxValue}], got '{s}'");
            return 0;
        },
    };

    /// <summary>One of <paramref name="values"/>; a typo is answered with the nearest value.</summary>
    public static Option<string?> Choice(string name, string description, IReadOnlyList<string> values, string? fallback = null, string helpName = "NAME")
    {
        var option = new Option<string?>(name) { Description = $"{description}: {string.Join(", ", values)}", HelpName = helpName };
        option.CustomParser = r =>
        {
            string s = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            if (values.Contains(s)) return s;
            r.AddError($"{name} '{s}' is unknown{Suggest(s, values)} (expected one of {string.Join(", ", values)})");
            return null;
        };
        if (fallback is not null) option.DefaultValueFactory = _ => fallback;
        return option;
    }

    /// <summary>A string option (a path, a name checked later).</summary>
    public static Option<string?> Text(string name, string description, string helpName, string? fallback = null)
    {
        var option = new Option<string?>(name) { Description = description, HelpName = helpName };
        option.CustomParser = r =>
        {
            string s = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            if (s.Length == 0) r.AddError($"{name} needs a non-empty value");
            return s;
        };
        if (fallback is not null) option.DefaultValueFactory = _ => fallback;
        return option;
    }

    /// <summary>A flag: present or not; it takes no value (so `--resume no` is an error, not a resume).</summary>
    public static Option<bool> Flag(string name, string description) => new(name) { Description = description, Arity = ArgumentArity.Zero };

    /// <summary>True when the user wrote <paramref name="option"/> on the command line (not a default).</summary>
    public static bool Given(this ParseResult result, Option option) => result.GetResult(option) is { Implicit: false };

    /// <summary>", did you mean X?" for the candidate closest to <paramref name="typed"/> (edit distance at most 2, or a prefix), else "".</summary>
    public static string Suggest(string typed, IEnumerable<string> candidates)
    {
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string c in candidates)
        {
            int d = c.StartsWith(typed, StringComparison.Ordinal) && typed.Length >= 3 ? 1 : Distance(typed, c);
            if (d < bestDistance)
            {
                bestDistance = d;
                best = c;
            }
        }
        return best is not null && bestDistance <= Math.Max(1, Math.Min(2, typed.Length / 3)) ? $"; did you mean {best}?" : "";
    }

    // Levenshtein distance with adjacent transpositions counted as one edit (so "stesp" is 1 from "steps").
    private static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        }
        return d[a.Length, b.Length];
    }

    private static T? ParseNumber<T>(ArgumentResult r, string name, T min, T max, Func<string, T?> parse, string what)
        where T : struct, IComparable<T>
    {
        string s = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
        var value = parse(s);
        if (value is T v && v.CompareTo(min) >= 0 && v.CompareTo(max) <= 0) return v;
        r.AddError($"{name} must be {what} in [{Format(min)}, {Format(max)}], got '{s}'");
        return null;
    }

    private static string Format<T>(T value) => value switch
    {
        double d when d == double.MaxValue => "inf",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value?.ToString() ?? "",
    };
}
