using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The DDPM U-Net (Ho et al. 2020, the CIFAR-10 model, after PixelCNN++ and Wide ResNets), as configured by
/// <see cref="UNetConfig"/>:
/// <list type="bullet">
/// <item>"temb": a fixed embedding of t (sinusoidal, or Fourier features of log sigma) -> Linear(ch, 4ch) -> SiLU ->
/// Linear(4ch, 4ch); with classes, "label_emb" (a <see cref="ClassEmbedding"/> with a null label) is added to it.</item>
/// <item>"conv_in": 3x3 convolution to ch channels.</item>
/// <item>"down.i" per level i: residual blocks "res.j" (with "attn.j" at the attention resolutions) and "downsample".</item>
/// <item>"mid": "res.0", "attn.0", "res.1".</item>
/// <item>"up.i" per level i (run from the lowest resolution up): NumResBlocks + 1 blocks "res.j" on
/// concat(features, skip), "attn.j", and "upsample" (x2 nearest, 3x3 conv) except at level 0.</item>
/// <item>"norm_out" (GroupNorm, fused with SiLU) and "conv_out" (3x3) to the output channels.</item>
/// </list>
/// Parameter paths follow this nesting, e.g. "down.0.res.1.conv1.weight", "up.2.attn.0.q.bias", "up.0.res.0.skip.weight".
/// </summary>
public sealed class UNet : ScoreNetwork
{
    private readonly ConditionEmbedding _temb;
    private readonly ClassEmbedding? _labelEmb;
    private readonly Conv2d _convIn;
    private readonly DownLevel[] _down;
    private readonly MiddleBlock _mid;
    private readonly UpLevel[] _up;
    private readonly GroupNorm _normOut;
    private readonly Conv2d _convOut;

    /// <summary>Builds the network with weights drawn from <paramref name="generator"/>, held in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public UNet(UNetConfig config, Generator generator, Device? device = null, DType dtype = DType.Float32)
    {
        config.Validate();
        Config = config;
        _temb = AddModule("temb", new ConditionEmbedding(config.Channels, config.Condition, config.FourierScale, generator, device, dtype));
        if (config.NumClasses > 0) _labelEmb = AddModule("label_emb", new ClassEmbedding(config.NumClasses, config.EmbeddingDim, generator, device, dtype));
        _convIn = AddModule("conv_in", new Conv2d(config.InChannels, config.Channels, 3, generator, padding: 1, device: device, dtype: dtype));

        var skipChannels = new List<int> { config.Channels };
        int c = config.Channels;
        _down = new DownLevel[config.Levels];
        for (int i = 0; i < config.Levels; i++)
        {
            _down[i] = AddModule($"down.{i}", new DownLevel(config, i, c, generator, device, dtype));
            c = _down[i].OutChannels;
            skipChannels.AddRange(_down[i].SkipChannels);
        }
        _mid = AddModule("mid", new MiddleBlock(config, c, generator, device, dtype));

        // The up path consumes skips from the last one pushed, so it is built from the lowest resolution up;
        // it is registered in level order ("up.0" is the full-resolution level, as in the DDPM code).
        _up = new UpLevel[config.Levels];
        for (int i = config.Levels - 1; i >= 0; i--)
        {
            _up[i] = new UpLevel(config, i, c, skipChannels, generator, device, dtype);
            c = _up[i].OutChannels;
        }
        for (int i = 0; i < config.Levels; i++) AddModule($"up.{i}", _up[i]);
        _normOut = AddModule("norm_out", new GroupNorm(config.NormGroups, c, config.NormEps, device, dtype));
        _convOut = AddModule("conv_out", new Conv2d(c, config.ResolvedOutChannels, 3, generator, padding: 1, device: device, dtype: dtype));
    }

    /// <summary>The configuration the network was built from.</summary>
    public UNetConfig Config { get; }

    /// <summary>The label meaning "no label" (NumClasses), for classifier-free guidance; -1 for an unconditional network.</summary>
    public int NullLabel => _labelEmb?.NullLabel ?? -1;

    /// <summary>
    /// Evaluates the network on x[B, in, S, S] (S = ImageSize) at conditioning values t ([B]: times, or sigmas for a
    /// Sigma-conditioned network). <paramref name="labels"/> ([B], each in [0, NumClasses]; NumClasses = no label) is
    /// for class-conditional networks only; null there means no label for every sample. Returns [B, out, S, S].
    /// </summary>
    public override Tensor Forward(Tensor x, Tensor t, int[]? labels = null)
    {
        CheckInputs(x, t, labels);
        var emb = _temb.Forward(t);
        if (_labelEmb is not null)
        {
            var classes = labels ?? Enumerable.Repeat(_labelEmb.NullLabel, x.Shape[0]).ToArray();
            emb = Ops.Add(emb, _labelEmb.Forward(classes));
        }
        // Every residual block takes SiLU(temb) (DDPM's temb_proj(nonlinearity(temb))): activated once, shared.
        var embSilu = Ops.Silu(emb);
        var generator = DropoutGenerator;

        // Every down-path output is kept as a skip; the up path frees each skip once it has been consumed (inference).
        var h = _convIn.Forward(x);
        var skips = new List<Tensor> { h };
        foreach (var level in _down) h = level.Forward(h, embSilu, generator, skips);
        h = _mid.Forward(h, embSilu, generator);
        for (int i = _up.Length - 1; i >= 0; i--) h = _up[i].Forward(h, embSilu, generator, skips);
        var normed = _normOut.Forward(h, silu: true);
        Intermediate.Release(h);
        var y = _convOut.Forward(normed);
        Intermediate.Release(normed);
        return y;
    }

    private void CheckInputs(Tensor x, Tensor t, int[]? labels)
    {
        var c = Config;
        if (x.Rank != 4 || x.Shape[1] != c.InChannels || x.Shape[2] != c.ImageSize || x.Shape[3] != c.ImageSize)
            throw new TensorException("UNet", $"'{c.Name}' takes [B, {c.InChannels}, {c.ImageSize}, {c.ImageSize}], got {ShapeUtil.Format(x.Shape)}");
        if (t.Rank != 1 || t.Shape[0] != x.Shape[0])
            throw new TensorException("UNet", $"'{c.Name}': conditioning values must be [{x.Shape[0]}], got {ShapeUtil.Format(t.Shape)}");
        if (labels is not null && _labelEmb is null)
            throw new ArgumentException($"UNet '{c.Name}' is unconditional (NumClasses = 0) but was given labels", nameof(labels));
        if (labels is not null && labels.Length != x.Shape[0])
            throw new ArgumentException($"UNet '{c.Name}': {labels.Length} labels for a batch of {x.Shape[0]}", nameof(labels));
        if (Training && c.Dropout > 0 && DropoutGenerator is null)
            throw new InvalidOperationException(
                $"UNet '{c.Name}' has dropout {c.Dropout} and is in training mode: set DropoutGenerator (a trainer sets its own generator so that " +
                "checkpoints capture the random state), or call SetTraining(false) for evaluation");
    }
}
