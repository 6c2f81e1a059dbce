using DiffusionCore.Models.Processes;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The hyper-parameters of a DDPM U-Net (Ho et al. 2020, the CIFAR-10 model; see <see cref="UNet"/>), with the named
/// configurations of shared/BENCHMARKS.md ("unet-s", "unet-b", "ddpm-cifar10") available through <see cref="Get"/>.
/// Derive variants with <c>with</c>, e.g. <c>UNetConfig.Get("unet-s") with { NumClasses = 10 }</c>.
/// </summary>
public sealed record UNetConfig
{
    /// <summary>Name of the configuration (for messages and logs).</summary>
    public required string Name { get; init; }

    /// <summary>Channels of the input image.</summary>
    public int InChannels { get; init; } = 3;

    /// <summary>Channels of the output; null means the same as <see cref="InChannels"/> (a noise or score prediction).</summary>
    public int? OutChannels { get; init; }

    /// <summary>Height and width of the (square) input image.</summary>
    public int ImageSize { get; init; } = 32;

    /// <summary>Base channel count ch; level i has ch · ChannelMult[i] channels and the time embedding is 4 ch wide.</summary>
    public int Channels { get; init; } = 128;

    /// <summary>Channel multiplier of each resolution level; the image is halved between consecutive levels.</summary>
    public IReadOnlyList<int> ChannelMult { get; init; } = [1, 2, 2, 2];

    /// <summary>Residual blocks per level on the down path (the up path has one more per level).</summary>
    public int NumResBlocks { get; init; } = 2;

    /// <summary>Resolutions (height of the feature map) after whose residual blocks a self-attention block sits.</summary>
    public IReadOnlyList<int> AttentionResolutions { get; init; } = [16];

    /// <summary>Dropout probability inside the residual blocks.</summary>
    public double Dropout { get; init; }

    /// <summary>Number of classes for label conditioning; 0 means unconditional.</summary>
    public int NumClasses { get; init; }

    /// <summary>What the conditioning input t means: a time (sinusoidal embedding) or a noise level sigma (Fourier features of log sigma).</summary>
    public ConditionKind Condition { get; init; } = ConditionKind.Time;

    /// <summary>Groups of every GroupNorm (32 in DDPM).</summary>
    public int NormGroups { get; init; } = 32;

    /// <summary>GroupNorm epsilon (1e-6, the value of the DDPM code's tf.contrib.layers.group_norm).</summary>
    public double NormEps { get; init; } = 1e-6;

    /// <summary>Standard deviation of the Gaussian Fourier frequencies when <see cref="Condition"/> is Sigma (16 in NCSN++).</summary>
    public double FourierScale { get; init; } = 16.0;

    /// <summary>Output channels after resolving the default.</summary>
    public int ResolvedOutChannels => OutChannels ?? InChannels;

    /// <summary>Width of the time embedding after its MLP (4 ch, as in DDPM).</summary>
    public int EmbeddingDim => 4 * Channels;

    /// <summary>Number of resolution levels.</summary>
    public int Levels => ChannelMult.Count;

    /// <summary>Channels of level <paramref name="level"/>.</summary>
    public int LevelChannels(int level) => Channels * ChannelMult[level];

    /// <summary>Feature-map height and width at level <paramref name="level"/>.</summary>
    public int LevelResolution(int level) => ImageSize >> level;

    /// <summary>True when level <paramref name="level"/> has self-attention after its residual blocks.</summary>
    public bool HasAttention(int level) => AttentionResolutions.Contains(LevelResolution(level));

    /// <summary>unet-s: the MNIST demo model on a CPU, 1,112,801 parameters.</summary>
    public static UNetConfig UnetS { get; } = new()
    {
        Name = "unet-s", InChannels = 1, ImageSize = 32, Channels = 32, ChannelMult = [1, 2, 2], NumResBlocks = 1, AttentionResolutions = [8], Dropout = 0,
    };

    /// <summary>unet-b: the CPU benchmark model, 6,472,195 parameters.</summary>
    public static UNetConfig UnetB { get; } = new()
    {
        Name = "unet-b", InChannels = 3, ImageSize = 32, Channels = 64, ChannelMult = [1, 2, 2], NumResBlocks = 2, AttentionResolutions = [16], Dropout = 0,
    };

    /// <summary>ddpm-cifar10: the DDPM paper's CIFAR-10 model (35,746,307 parameters), the GPU benchmark model.</summary>
    public static UNetConfig DdpmCifar10 { get; } = new()
    {
        Name = "ddpm-cifar10", InChannels = 3, ImageSize = 32, Channels = 128, ChannelMult = [1, 2, 2, 2], NumResBlocks = 2, AttentionResolutions = [16], Dropout = 0.1,
    };

    private static readonly UNetConfig[] Named = [UnetS, UnetB, DdpmCifar10];

    /// <summary>The names <see cref="Get"/> accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = Named.Select(c => c.Name).ToArray();

    /// <summary>The named configuration; an <see cref="ArgumentException"/> listing the valid names otherwise.</summary>
    public static UNetConfig Get(string name) =>
        Named.FirstOrDefault(c => c.Name == name)
        ?? throw new ArgumentException($"unknown U-Net configuration '{name}'; valid names: {string.Join(", ", Names)}", nameof(name));

    /// <summary>Throws an <see cref="ArgumentException"/> naming the configuration and the offending value when the net cannot be built.</summary>
    public void Validate()
    {
        void Fail(string what) => throw new ArgumentException($"U-Net configuration '{Name}': {what}");
        if (InChannels <= 0 || ResolvedOutChannels <= 0) Fail($"channels in {InChannels} / out {ResolvedOutChannels} must be positive");
        if (Channels < 4 || Channels % 2 != 0 || NumResBlocks <= 0) Fail($"Channels {Channels} must be even and at least 4 (the width of the time embedding), NumResBlocks {NumResBlocks} positive");
        if (ChannelMult.Count == 0 || ChannelMult.Any(m => m <= 0)) Fail($"ChannelMult [{string.Join(", ", ChannelMult)}] must be non-empty and positive");
        if (NormGroups <= 0) Fail($"NormGroups {NormGroups} must be positive");
        foreach (int c in ChannelMult.Select(m => m * Channels))
            if (c % NormGroups != 0) Fail($"level width {c} is not divisible into {NormGroups} GroupNorm groups");
        if (ImageSize <= 0 || ImageSize % (1 << (Levels - 1)) != 0)
            Fail($"ImageSize {ImageSize} must be a positive multiple of 2^{Levels - 1} to be halved between {Levels} levels");
        if (!(Dropout >= 0 && Dropout < 1)) Fail($"Dropout {Dropout} must lie in [0, 1)");
        if (NumClasses < 0) Fail($"NumClasses {NumClasses} must be >= 0");
        if (Condition == ConditionKind.Sigma && !(FourierScale > 0)) Fail($"FourierScale {FourierScale} must be positive");
        if (!(NormEps >= 0)) Fail($"NormEps {NormEps} must be >= 0");
    }
}
