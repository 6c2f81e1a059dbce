namespace DiffusionCore.Plotting;

/// <summary>An opaque 8-bit-per-channel colour.</summary>
/// <param name="R">Red, 0..255.</param>
/// <param name="G">Green, 0..255.</param>
/// <param name="B">Blue, 0..255.</param>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    /// <summary>White, the plots' background.</summary>
    public static Rgb White => new(255, 255, 255);

    /// <summary>Black, for text and axes.</summary>
    public static Rgb Black => new(0, 0, 0);

    /// <summary>Mid grey, for frames and tick marks.</summary>
    public static Rgb Gray => new(128, 128, 128);

    /// <summary>Light grey, for grid lines.</summary>
    public static Rgb LightGray => new(225, 225, 225);

    /// <summary>
    /// Ten distinguishable series colours (matplotlib's "tab10" cycle): series k of a plot takes entry k mod 10.
    /// </summary>
    public static IReadOnlyList<Rgb> Palette { get; } =
    [
        new(31, 119, 180), new(255, 127, 14), new(44, 160, 44), new(214, 39, 40), new(148, 103, 189),
        new(140, 86, 75), new(227, 119, 194), new(127, 127, 127), new(188, 189, 34), new(23, 190, 207),
    ];
}
