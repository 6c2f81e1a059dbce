using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// A time-conditioned classifier of noisy images p(y | x_t, t), for classifier guidance (Dhariwal and Nichol 2021,
/// whose classifier is the U-Net's encoder): the U-Net's "temb", "conv_in" and down path ("down.i"), optionally its
/// middle ("mid"), then GroupNorm -> SiLU ("norm_out"), a global average pool over the positions, and
/// Linear(C, classes) ("head") to logits. Built from a <see cref="UNetConfig"/> (its NumClasses must be 0: the
/// classifier is not conditioned on the label it predicts).
/// </summary>
public sealed class NoisyClassifier : Module
{
    private readonly ConditionEmbedding _temb;
    private readonly Conv2d _convIn;
    private readonly DownLevel[] _down;
    private readonly MiddleBlock? _mid;
    private readonly GroupNorm _normOut;
    private readonly Linear _head;

    /// <summary>Builds the classifier for <paramref name="numClasses"/> classes with weights from <paramref name="generator"/>.</summary>
    public NoisyClassifier(UNetConfig config, int numClasses, Generator generator, bool useMiddle = true, Device? device = null, DType dtype = DType.Float32)
    {
        config.Validate();
        if (config.NumClasses != 0)
            throw new ArgumentException($"NoisyClassifier: configuration '{config.Name}' has NumClasses = {config.NumClasses}; a classifier is not label-conditioned, use NumClasses = 0", nameof(config));
        if (numClasses < 2) throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "NoisyClassifier needs at least 2 classes");
        Config = config;
        NumClasses = numClasses;
        _temb = AddModule("temb", new ConditionEmbedding(config.Channels, config.Condition, config.FourierScale, generator, device, dtype));
        _convIn = AddModule("conv_in", new Conv2d(config.InChannels, config.Channels, 3, generator, padding: 1, device: device, dtype: dtype));
        int c = config.Channels;
        _down = new DownLevel[config.Levels];
        for (int i = 0; i < config.Levels; i++)
        {
            _down[i] = AddModule($"down.{i}", new DownLevel(config, i, c, generator, device, dtype));
            c = _down[i].OutChannels;
        }
        if (useMiddle) _mid = AddModule("mid", new MiddleBlock(config, c, generator, device, dtype));
        _normOut = AddModule("norm_out", new GroupNorm(config.NormGroups, c, config.NormEps, device, dtype));
        _head = AddModule("head", new Linear(c, numClasses, generator, device: device, dtype: dtype));
    }

    /// <summary>The configuration of the encoder.</summary>
    public UNetConfig Config { get; }

    /// <summary>Number of classes (width of the logits).</summary>
    public int NumClasses { get; }

    /// <summary>The generator dropout masks are drawn from while training (needed when the configuration has dropout).</summary>
    public Generator? DropoutGenerator { get; set; }

    /// <summary>Class logits [B, classes] of x[B, in, S, S] at conditioning values t ([B]).</summary>
    public Tensor Forward(Tensor x, Tensor t)
    {
        var c = Config;
        if (x.Rank != 4 || x.Shape[1] != c.InChannels || x.Shape[2] != c.ImageSize || x.Shape[3] != c.ImageSize)
            throw new TensorException("NoisyClassifier", $"'{c.Name}' takes [B, {c.InChannels}, {c.ImageSize}, {c.ImageSize}], got {ShapeUtil.Format(x.Shape)}");
        if (t.Rank != 1 || t.Shape[0] != x.Shape[0])
            throw new TensorException("NoisyClassifier", $"'{c.Name}': conditioning values must be [{x.Shape[0]}], got {ShapeUtil.Format(t.Shape)}");
        if (Training && c.Dropout > 0 && DropoutGenerator is null)
            throw new InvalidOperationException(
                $"NoisyClassifier '{c.Name}' has dropout {c.Dropout} and is in training mode: set DropoutGenerator, or call SetTraining(false) for evaluation");
        var embSilu = Ops.Silu(_temb.Forward(t));
        var generator = DropoutGenerator;
        var h = _convIn.Forward(x);
        foreach (var level in _down)
        {
            var next = level.Forward(h, embSilu, generator, null);
            Intermediate.Release(h);
            h = next;
        }
        if (_mid is not null)
        {
            var next = _mid.Forward(h, embSilu, generator);
            Intermediate.Release(h);
            h = next;
        }
        var normed = _normOut.Forward(h, silu: true);
        Intermediate.Release(h);
        var pooled = Ops.Mean(normed, [2, 3]);
        Intermediate.Release(normed);
        return _head.Forward(pooled);
    }
}
