using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DiffusionCore.Bench.Peer;

/// <summary>
/// One U-Net configuration of BENCHMARKS.md "Models": input size, base width <paramref name="Ch"/>, the
/// per-level width multipliers, residual blocks per level, the resolutions that carry self-attention and the
/// dropout rate.
/// </summary>
/// <param name="Name">The BENCHMARKS.md id, e.g. "unet-b".</param>
/// <param name="InChannels">Image channels in and out.</param>
/// <param name="Resolution">Image height and width.</param>
/// <param name="Ch">Base channel count (the widths are Ch * ChMult[level]).</param>
/// <param name="ChMult">Width multiplier per resolution level, highest resolution first.</param>
/// <param name="NumResBlocks">Residual blocks per level on the down path (one more on the up path).</param>
/// <param name="AttentionResolutions">Resolutions at which every residual block is followed by self-attention.</param>
/// <param name="Dropout">Dropout rate inside the residual blocks.</param>
public sealed record TorchUNetConfig(string Name, int InChannels, int Resolution, int Ch, int[] ChMult,
    int NumResBlocks, int[] AttentionResolutions, double Dropout)
{
    /// <summary>unet-s: 1x32x32, ch 32, (1,2,2), 1 block, attention at 8x8, no dropout (1,112,801 parameters).</summary>
    public static TorchUNetConfig UnetS { get; } = new("unet-s", 1, 32, 32, [1, 2, 2], 1, [8], 0.0);

    /// <summary>unet-b: 3x32x32, ch 64, (1,2,2), 2 blocks, attention at 16x16, no dropout (6,472,195 parameters).</summary>
    public static TorchUNetConfig UnetB { get; } = new("unet-b", 3, 32, 64, [1, 2, 2], 2, [16], 0.0);

    /// <summary>
    /// ddpm-cifar10: the CIFAR-10 model of Ho et al. 2020 (3x32x32, ch 128, (1,2,2,2), 2 blocks, attention
    /// at 16x16, dropout 0.1; 35,746,307 parameters).
    /// </summary>
    public static TorchUNetConfig DdpmCifar10 { get; } = new("ddpm-cifar10", 3, 32, 128, [1, 2, 2, 2], 2, [16], 0.1);

    /// <summary>The three configurations, in BENCHMARKS.md's order.</summary>
    public static IReadOnlyList<TorchUNetConfig> All { get; } = [UnetS, UnetB, DdpmCifar10];
}

/// <summary>
/// The DDPM U-Net (Ho et al. 2020, Appendix B; the CIFAR-10 model of their TensorFlow code) in TorchSharp
/// modules, the libtorch peer of DiffusionCore's U-Net for BENCHMARKS.md's E1-E5 and K7. Parameters are
/// named by PyTorch module paths as in the PyTorch port of the DDPM code (pesser/pytorch_diffusion):
/// <c>temb.dense.0</c>, <c>conv_in</c>, <c>down.{level}.block.{i}</c> / <c>.attn.{i}</c> /
/// <c>.downsample.conv</c>, <c>mid.block_1</c>, <c>mid.attn_1</c>, <c>mid.block_2</c>,
/// <c>up.{level}.block.{i}</c> / <c>.attn.{i}</c> / <c>.upsample.conv</c>, <c>norm_out</c>,
/// <c>conv_out</c>; residual blocks hold <c>norm1, conv1, temb_proj, norm2, conv2, nin_shortcut</c> and
/// attention blocks <c>norm, q, k, v, proj_out</c>. Weights keep PyTorch's default initialisation except
/// GroupNorm's (see <see cref="Layers.GroupNorm"/>); <c>conv_out</c> works around a libtorch defect (see
/// <see cref="OutConv"/>). Forward: <c>eps = model.call(x, t)</c> with x[B, C, H, W]
/// and t[B] (float timesteps, e.g. DDPM indices 0..999).
/// </summary>
public sealed class TorchUNet : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly TorchUNetConfig _config;
    private readonly TimestepMlp _temb;
    private readonly Conv2d _convIn;
    private readonly ModuleList<UNetLevel> _down;
    private readonly UNetMiddle _mid;
    private readonly ModuleList<UNetLevel> _up;
    private readonly GroupNorm _normOut;
    private readonly OutConv _convOut;

    /// <summary>Builds the network of <paramref name="config"/>.</summary>
    /// <exception cref="ArgumentException">A width is not a multiple of GroupNorm's 32 groups, or the
    /// resolution does not halve evenly down the levels.</exception>
    public TorchUNet(TorchUNetConfig config) : base(config.Name)
    {
        _config = config;
        int levels = config.ChMult.Length;
        if (config.Ch % Layers.Groups != 0 || config.Resolution % (1 << (levels - 1)) != 0)
            throw new ArgumentException($"TorchUNet {config.Name}: ch {config.Ch} must be a multiple of {Layers.Groups} and resolution {config.Resolution} divisible by 2^{levels - 1}", nameof(config));
        int ch = config.Ch, tembCh = 4 * ch;
        _temb = new TimestepMlp(ch, tembCh);
        _convIn = nn.Conv2d(config.InChannels, ch, 3, padding: 1);

        // Down path: the widths of every skip connection (conv_in's output, each block's, each downsample's)
        // in push order, for the up path to pop.
        var skips = new Stack<int>();
        skips.Push(ch);
        int width = ch, resolution = config.Resolution;
        var down = new UNetLevel[levels];
        for (int level = 0; level < levels; level++)
        {
            int outWidth = ch * config.ChMult[level];
            var blocks = new ResBlock[config.NumResBlocks];
            var attns = new List<AttnBlock>();
            for (int i = 0; i < config.NumResBlocks; i++)
            {
                blocks[i] = new ResBlock(width, outWidth, tembCh, config.Dropout);
                width = outWidth;
                if (config.AttentionResolutions.Contains(resolution)) attns.Add(new AttnBlock(width));
                skips.Push(width);
            }
            Resample? downsample = null;
            if (level != levels - 1)
            {
                downsample = new Resample(width, up: false);
                resolution /= 2;
                skips.Push(width);
            }
            down[level] = new UNetLevel(blocks, attns, "downsample", downsample);
        }
        _down = nn.ModuleList(down);
        _mid = new UNetMiddle(width, tembCh, config.Dropout);

        // Up path, lowest resolution first; stored by level index (up.0 is the full-resolution level).
        var up = new UNetLevel[levels];
        for (int level = levels - 1; level >= 0; level--)
        {
            int outWidth = ch * config.ChMult[level];
            var blocks = new ResBlock[config.NumResBlocks + 1];
            var attns = new List<AttnBlock>();
            for (int i = 0; i <= config.NumResBlocks; i++)
            {
                blocks[i] = new ResBlock(width + skips.Pop(), outWidth, tembCh, config.Dropout);
                width = outWidth;
                if (config.AttentionResolutions.Contains(resolution)) attns.Add(new AttnBlock(width));
            }
            Resample? upsample = null;
            if (level != 0)
            {
                upsample = new Resample(width, up: true);
                resolution *= 2;
            }
            up[level] = new UNetLevel(blocks, attns, "upsample", upsample);
        }
        _up = nn.ModuleList(up);
        _normOut = Layers.GroupNorm(width);
        _convOut = new OutConv(width, config.InChannels);

        register_module("temb", _temb);
        register_module("conv_in", _convIn);
        register_module("down", _down);
        register_module("mid", _mid);
        register_module("up", _up);
        register_module("norm_out", _normOut);
        register_module("conv_out", _convOut);
    }

    /// <summary>The configuration this network was built from.</summary>
    public TorchUNetConfig Config => _config;

    /// <summary>Total number of scalar parameters.</summary>
    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>
    /// The network output (an epsilon prediction) for x[B, C, H, W] at timesteps t[B]. SiLU(temb) is formed
    /// once and shared by every residual block's projection, which is what each block's own SiLU would compute.
    /// </summary>
    public override Tensor forward(Tensor x, Tensor t)
    {
        Tensor tembAct = F.silu(_temb.call(TimestepMlp.Sinusoidal(t, _config.Ch, x.dtype)));
        var hs = new Stack<Tensor>();
        Tensor h = _convIn.call(x);
        hs.Push(h);
        foreach (var level in _down)
        {
            for (int i = 0; i < level.Blocks.Count; i++)
            {
                h = level.Blocks[i].call(h, tembAct);
                if (level.Attns.Count > 0) h = level.Attns[i].call(h);
                hs.Push(h);
            }
            if (level.Resample is not null)
            {
                h = level.Resample.call(h);
                hs.Push(h);
            }
        }
        h = _mid.call(h, tembAct);
        for (int l = _up.Count - 1; l >= 0; l--)
        {
            var level = _up[l];
            for (int i = 0; i < level.Blocks.Count; i++)
            {
                h = level.Blocks[i].call(torch.cat([h, hs.Pop()], 1), tembAct);
                if (level.Attns.Count > 0) h = level.Attns[i].call(h);
            }
            if (level.Resample is not null) h = level.Resample.call(h);
        }
        return _convOut.call(F.silu(_normOut.call(h)));
    }

    /// <summary>Shared layer constructors of <see cref="TorchUNet"/>.</summary>
    private static class Layers
    {
        /// <summary>GroupNorm's group count throughout the DDPM U-Net.</summary>
        public const int Groups = 32;

        /// <summary>
        /// GroupNorm(32, channels) with eps 1e-6 (the DDPM code's Normalize). TorchSharp 0.107's nn.GroupNorm leaves
        /// its affine weight and bias uninitialised (BENCHMARKS.md), so they are set to PyTorch's 1 and 0 here.
        /// </summary>
        public static GroupNorm GroupNorm(int channels)
        {
            var norm = nn.GroupNorm(Groups, channels, eps: 1e-6);
            Tensor weight = norm.weight ?? throw new InvalidOperationException("TorchUNet: GroupNorm has no weight");
            Tensor bias = norm.bias ?? throw new InvalidOperationException("TorchUNet: GroupNorm has no bias");
            using (torch.no_grad())
            {
                weight.fill_(1);
                bias.fill_(0);
            }
            return norm;
        }
    }

    /// <summary>
    /// The timestep embedding's MLP, <c>temb.dense.0</c> = Linear(ch, 4ch) then SiLU then <c>temb.dense.1</c> =
    /// Linear(4ch, 4ch), fed by the sinusoidal embedding.
    /// </summary>
    private sealed class TimestepMlp : nn.Module<Tensor, Tensor>
    {
        private readonly ModuleList<Linear> _dense;

        public TimestepMlp(int ch, int tembCh) : base("temb")
        {
            _dense = nn.ModuleList(nn.Linear(ch, tembCh), nn.Linear(tembCh, tembCh));
            register_module("dense", _dense);
        }

        public override Tensor forward(Tensor emb) => _dense[1].call(F.silu(_dense[0].call(emb)));

        /// <summary>
        /// The DDPM code's get_timestep_embedding (Vaswani et al. 2017): with half = dim/2 and
        /// f_i = exp(-ln(10000) i / (half - 1)), emb(t) = [sin(t f), cos(t f)], [B] to [B, dim]; the same
        /// formula as DiffusionCore's TimeEmbedding.Sinusoidal. Computed in <paramref name="dtype"/>, the network's.
        /// </summary>
        public static Tensor Sinusoidal(Tensor t, int dim, ScalarType dtype)
        {
            int half = dim / 2;
            Tensor freqs = torch.exp(torch.arange(half, dtype: dtype) * (-Math.Log(10000.0) / (half - 1)));
            Tensor args = t.to_type(dtype).unsqueeze(1) * freqs.unsqueeze(0);
            return torch.cat([torch.sin(args), torch.cos(args)], 1);
        }
    }

    /// <summary>
    /// A DDPM residual block: h = conv1(SiLU(norm1(x))) + temb_proj(SiLU(temb)) per channel;
    /// h = conv2(dropout(SiLU(norm2(h)))); out = nin_shortcut(x) + h, the 1x1 shortcut only where the width changes.
    /// Its second argument is SiLU(temb), already activated.
    /// </summary>
    private sealed class ResBlock : nn.Module<Tensor, Tensor, Tensor>
    {
        private readonly GroupNorm _norm1, _norm2;
        private readonly Conv2d _conv1, _conv2;
        private readonly Linear _tembProj;
        private readonly Dropout _dropout;
        private readonly Conv2d? _ninShortcut;

        public ResBlock(int inCh, int outCh, int tembCh, double dropout) : base("ResnetBlock")
        {
            _norm1 = Layers.GroupNorm(inCh);
            _conv1 = nn.Conv2d(inCh, outCh, 3, padding: 1);
            _tembProj = nn.Linear(tembCh, outCh);
            _norm2 = Layers.GroupNorm(outCh);
            _dropout = nn.Dropout(dropout);
            _conv2 = nn.Conv2d(outCh, outCh, 3, padding: 1);
            register_module("norm1", _norm1);
            register_module("conv1", _conv1);
            register_module("temb_proj", _tembProj);
            register_module("norm2", _norm2);
            register_module("dropout", _dropout);
            register_module("conv2", _conv2);
            if (inCh != outCh)
            {
                _ninShortcut = nn.Conv2d(inCh, outCh, 1);
                register_module("nin_shortcut", _ninShortcut);
            }
        }

        public override Tensor forward(Tensor x, Tensor tembAct)
        {
            Tensor h = _conv1.call(F.silu(_norm1.call(x)));
            h = h + _tembProj.call(tembAct).unsqueeze(-1).unsqueeze(-1);
            h = _conv2.call(_dropout.call(F.silu(_norm2.call(h))));
            return (_ninShortcut is null ? x : _ninShortcut.call(x)) + h;
        }
    }

    /// <summary>
    /// DDPM's single-head self-attention block over the H*W positions: q, k, v = 1x1 convs of norm(x),
    /// softmax(q k^T / sqrt(C)) v through libtorch's fused <c>scaled_dot_product_attention</c> (the path a current
    /// PyTorch user gets, and the one DiffusionCore's Ops.ScaledDotProductAttention mirrors), then
    /// x + proj_out(result).
    /// </summary>
    private sealed class AttnBlock : nn.Module<Tensor, Tensor>
    {
        private readonly GroupNorm _norm;
        private readonly Conv2d _q, _k, _v, _projOut;

        public AttnBlock(int ch) : base("AttnBlock")
        {
            _norm = Layers.GroupNorm(ch);
            _q = nn.Conv2d(ch, ch, 1);
            _k = nn.Conv2d(ch, ch, 1);
            _v = nn.Conv2d(ch, ch, 1);
            _projOut = nn.Conv2d(ch, ch, 1);
            register_module("norm", _norm);
            register_module("q", _q);
            register_module("k", _k);
            register_module("v", _v);
            register_module("proj_out", _projOut);
        }

        public override Tensor forward(Tensor x)
        {
            long b = x.shape[0], c = x.shape[1], height = x.shape[2], width = x.shape[3];
            Tensor h = _norm.call(x);
            Tensor Tokens(Conv2d proj) => proj.call(h).reshape(b, c, height * width).transpose(1, 2);
            Tensor o = F.scaled_dot_product_attention(Tokens(_q), Tokens(_k), Tokens(_v));
            return x + _projOut.call(o.transpose(1, 2).reshape(b, c, height, width));
        }
    }

    /// <summary>
    /// Between levels: <c>downsample.conv</c>, a stride-2 3x3 conv (padding 1, as K4; the DDPM code pads 0 before
    /// and 1 after, the same shapes and cost), or <c>upsample.conv</c>, nearest x2 upsampling then a 3x3 conv.
    /// </summary>
    private sealed class Resample : nn.Module<Tensor, Tensor>
    {
        private readonly Conv2d _conv;
        private readonly bool _up;

        public Resample(int ch, bool up) : base(up ? "Upsample" : "Downsample")
        {
            _up = up;
            _conv = nn.Conv2d(ch, ch, 3, stride: up ? 1 : 2, padding: 1);
            register_module("conv", _conv);
        }

        public override Tensor forward(Tensor x)
            => _conv.call(_up ? F.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest) : x);
    }

    /// <summary>
    /// <c>conv_out</c>: a 3x3 conv (padding 1) to the image's 1 or 3 channels, with PyTorch's nn.Conv2d
    /// parameters (<c>weight</c>[cout, cin, 3, 3], <c>bias</c>[cout], default initialisation) but evaluated with
    /// both zero-padded to <see cref="ChannelBlock"/> output channels and the output cut back to cout.
    /// libtorch 2.10's oneDNN (3.7.1) convolution backward-data returns wrong input gradients, at times NaN, on
    /// this machine whenever the output channel count is not a multiple of 16 (measured against float64 for
    /// cout 1, 3, 4, 8, 15, 17, 24 with cin 32 and 64, one or two threads, AVX-512 or AVX2 kernels; 16 and 32 are
    /// right; the forward and the weight gradient are right), so every gradient below conv_out would be
    /// garbage. With the padding the network computes the same function and its exact gradients, at the cost
    /// of a conv_out with 16 output channels, well under 1% of a U-Net step's flops.
    /// </summary>
    private sealed class OutConv : nn.Module<Tensor, Tensor>
    {
        /// <summary>oneDNN's channel block for float32 on AVX-512 and AVX2 (aBcd16b layouts).</summary>
        public const int ChannelBlock = 16;

        // Named as their parameters: Module.to(dtype) replaces Parameter fields and re-registers them under
        // the field's name.
        private Parameter weight, bias;
        private readonly long[] _weightPad, _biasPad;
        private readonly int _outChannels;

        public OutConv(int inCh, int outCh) : base("conv_out")
        {
            using var init = nn.Conv2d(inCh, outCh, 3, padding: 1);
            weight = new Parameter(init.weight!.detach().clone());
            bias = new Parameter(init.bias!.detach().clone());
            _outChannels = outCh;
            int pad = (ChannelBlock - outCh % ChannelBlock) % ChannelBlock;
            // F.pad lists (before, after) pairs from the last dimension: kw, kh, cin, then cout.
            _weightPad = [0, 0, 0, 0, 0, 0, 0, pad];
            _biasPad = [0, pad];
            register_parameter("weight", weight);
            register_parameter("bias", bias);
        }

        public override Tensor forward(Tensor x)
        {
            Tensor y = F.conv2d(x, F.pad(weight, _weightPad), F.pad(bias, _biasPad), padding: [1, 1]);
            return y.narrow(1, 0, _outChannels);
        }
    }

    /// <summary>One resolution level's modules: <c>block</c>, <c>attn</c> (empty where none) and the resampling conv.</summary>
    private sealed class UNetLevel : nn.Module
    {
        public UNetLevel(ResBlock[] blocks, List<AttnBlock> attns, string resampleName, Resample? resample) : base("level")
        {
            Blocks = nn.ModuleList(blocks);
            Attns = nn.ModuleList(attns.ToArray());
            Resample = resample;
            register_module("block", Blocks);
            register_module("attn", Attns);
            if (resample is not null) register_module(resampleName, resample);
        }

        public ModuleList<ResBlock> Blocks { get; }

        public ModuleList<AttnBlock> Attns { get; }

        public Resample? Resample { get; }
    }

    /// <summary>The middle of the U-Net at its lowest resolution: <c>block_1</c>, <c>attn_1</c>, <c>block_2</c>.</summary>
    private sealed class UNetMiddle : nn.Module<Tensor, Tensor, Tensor>
    {
        private readonly ResBlock _block1, _block2;
        private readonly AttnBlock _attn1;

        public UNetMiddle(int ch, int tembCh, double dropout) : base("mid")
        {
            _block1 = new ResBlock(ch, ch, tembCh, dropout);
            _attn1 = new AttnBlock(ch);
            _block2 = new ResBlock(ch, ch, tembCh, dropout);
            register_module("block_1", _block1);
            register_module("attn_1", _attn1);
            register_module("block_2", _block2);
        }

        public override Tensor forward(Tensor h, Tensor tembAct) => _block2.call(_attn1.call(_block1.call(h, tembAct)), tembAct);
    }
}
