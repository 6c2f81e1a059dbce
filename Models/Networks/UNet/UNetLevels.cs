using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// One resolution level of the U-Net's down path: NumResBlocks residual blocks ("res.j"), each followed by
/// self-attention ("attn.j") at the configured resolutions, then a stride-2 downsampling ("downsample") unless it is
/// the last level. Every block's output is a skip connection for the up path.
/// </summary>
internal sealed class DownLevel : Module
{
    private readonly ResBlock[] _res;
    private readonly AttnBlock?[] _attn;
    private readonly Downsample? _downsample;

    public DownLevel(UNetConfig config, int level, int inChannels, Generator generator, Device? device, DType dtype)
    {
        int c = inChannels, width = config.LevelChannels(level);
        _res = new ResBlock[config.NumResBlocks];
        _attn = new AttnBlock?[config.NumResBlocks];
        for (int j = 0; j < config.NumResBlocks; j++)
        {
            _res[j] = AddModule($"res.{j}", new ResBlock(c, width, config.EmbeddingDim, config.Dropout, config.NormGroups, config.NormEps, generator, device, dtype));
            c = width;
            if (config.HasAttention(level)) _attn[j] = AddModule($"attn.{j}", new AttnBlock(c, config.NormGroups, config.NormEps, generator, device, dtype));
        }
        if (level < config.Levels - 1) _downsample = AddModule("downsample", new Downsample(c, generator, device, dtype));
        OutChannels = c;
    }

    public int OutChannels { get; }

    /// <summary>Channels of the skip connections this level pushes, in order.</summary>
    public IEnumerable<int> SkipChannels => Enumerable.Repeat(OutChannels, _res.Length + (_downsample is null ? 0 : 1));

    /// <summary>
    /// Runs the level; when <paramref name="skips"/> is given, every block's output is appended to it (and kept);
    /// otherwise (an encoder without skips) the level frees its intermediates during inference. The input stays the caller's.
    /// </summary>
    public Tensor Forward(Tensor h, Tensor embeddingSilu, Generator? dropoutGenerator, List<Tensor>? skips)
    {
        var input = h;
        void Consumed(Tensor t)
        {
            if (skips is null && !ReferenceEquals(t, input)) Intermediate.Release(t);
        }
        for (int j = 0; j < _res.Length; j++)
        {
            var r = _res[j].Forward(h, embeddingSilu, dropoutGenerator);
            Consumed(h);
            h = r;
            if (_attn[j] is { } attn)
            {
                h = attn.Forward(r);
                Intermediate.Release(r);
            }
            skips?.Add(h);
        }
        if (_downsample is not null)
        {
            var d = _downsample.Forward(h);
            Consumed(h);
            h = d;
            skips?.Add(h);
        }
        return h;
    }
}

/// <summary>The U-Net's middle at the lowest resolution: residual block ("res.0"), self-attention ("attn.0"), residual block ("res.1").</summary>
internal sealed class MiddleBlock : Module
{
    private readonly ResBlock _res0;
    private readonly AttnBlock _attn;
    private readonly ResBlock _res1;

    public MiddleBlock(UNetConfig config, int channels, Generator generator, Device? device, DType dtype)
    {
        _res0 = AddModule("res.0", new ResBlock(channels, channels, config.EmbeddingDim, config.Dropout, config.NormGroups, config.NormEps, generator, device, dtype));
        _attn = AddModule("attn.0", new AttnBlock(channels, config.NormGroups, config.NormEps, generator, device, dtype));
        _res1 = AddModule("res.1", new ResBlock(channels, channels, config.EmbeddingDim, config.Dropout, config.NormGroups, config.NormEps, generator, device, dtype));
    }

    /// <summary>Runs the middle; the input stays the caller's, the intermediates are freed during inference.</summary>
    public Tensor Forward(Tensor h, Tensor embeddingSilu, Generator? dropoutGenerator)
    {
        var r = _res0.Forward(h, embeddingSilu, dropoutGenerator);
        var a = _attn.Forward(r);
        Intermediate.Release(r);
        var y = _res1.Forward(a, embeddingSilu, dropoutGenerator);
        Intermediate.Release(a);
        return y;
    }
}

/// <summary>
/// One resolution level of the up path: NumResBlocks + 1 residual blocks ("res.j"), each taking the running features
/// concatenated (along channels) with the most recent unused skip connection, each followed by self-attention
/// ("attn.j") at the configured resolutions, then nearest-neighbour upsampling and a 3x3 convolution ("upsample")
/// unless it is the full-resolution level 0.
/// </summary>
internal sealed class UpLevel : Module
{
    private readonly ResBlock[] _res;
    private readonly AttnBlock?[] _attn;
    private readonly Upsample? _upsample;

    /// <summary>Builds the level; consumes this level's skip widths from the end of <paramref name="skipChannels"/>.</summary>
    public UpLevel(UNetConfig config, int level, int inChannels, List<int> skipChannels, Generator generator, Device? device, DType dtype)
    {
        int c = inChannels, width = config.LevelChannels(level);
        _res = new ResBlock[config.NumResBlocks + 1];
        _attn = new AttnBlock?[_res.Length];
        for (int j = 0; j < _res.Length; j++)
        {
            int skip = skipChannels[^1];
            skipChannels.RemoveAt(skipChannels.Count - 1);
            _res[j] = AddModule($"res.{j}", new ResBlock(c + skip, width, config.EmbeddingDim, config.Dropout, config.NormGroups, config.NormEps, generator, device, dtype));
            c = width;
            if (config.HasAttention(level)) _attn[j] = AddModule($"attn.{j}", new AttnBlock(c, config.NormGroups, config.NormEps, generator, device, dtype));
        }
        if (level > 0) _upsample = AddModule("upsample", new Upsample(c, generator, device, dtype));
        OutChannels = c;
    }

    public int OutChannels { get; }

    /// <summary>
    /// Runs the level, taking its skip connections from the end of <paramref name="skips"/>. It takes ownership of
    /// <paramref name="h"/> and of the skips it uses: during inference it frees them once consumed.
    /// </summary>
    public Tensor Forward(Tensor h, Tensor embeddingSilu, Generator? dropoutGenerator, List<Tensor> skips)
    {
        for (int j = 0; j < _res.Length; j++)
        {
            var skip = skips[^1];
            skips.RemoveAt(skips.Count - 1);
            var joined = Ops.Concat([h, skip], 1);
            Intermediate.Release(h, skip);
            h = _res[j].Forward(joined, embeddingSilu, dropoutGenerator);
            Intermediate.Release(joined);
            if (_attn[j] is { } attn)
            {
                var a = attn.Forward(h);
                Intermediate.Release(h);
                h = a;
            }
        }
        if (_upsample is null) return h;
        var up = _upsample.Forward(h);
        Intermediate.Release(h);
        return up;
    }
}
