using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The DDPM single-head self-attention block (Ho et al. 2020; Wang et al. 2018, non-local networks): with
/// h = GroupNorm(x) and q, k, v, proj 1x1 convolutions, out = x + proj(softmax(q(h)ᵀ k(h) / sqrt(C)) applied to v(h))
/// over the H·W positions. Parameters: norm, q, k, v, proj (1x1 convolution weights [C, C, 1, 1], as in PyTorch).
/// </summary>
public sealed class AttnBlock : Module
{
    private readonly GroupNorm _norm;
    private readonly Conv2d _q;
    private readonly Conv2d _k;
    private readonly Conv2d _v;
    private readonly Conv2d _proj;

    /// <summary>Creates the block for <paramref name="channels"/> channels.</summary>
    public AttnBlock(int channels, int groups, double eps, Generator generator, Device? device = null, DType dtype = DType.Float32)
    {
        Channels = channels;
        _norm = AddModule("norm", new GroupNorm(groups, channels, eps, device, dtype));
        _q = AddModule("q", new Conv2d(channels, channels, 1, generator, device: device, dtype: dtype));
        _k = AddModule("k", new Conv2d(channels, channels, 1, generator, device: device, dtype: dtype));
        _v = AddModule("v", new Conv2d(channels, channels, 1, generator, device: device, dtype: dtype));
        _proj = AddModule("proj", new Conv2d(channels, channels, 1, generator, device: device, dtype: dtype));
    }

    /// <summary>Channels C (the width of queries, keys and values).</summary>
    public int Channels { get; }

    /// <summary>
    /// Applies the block to x[B, C, H, W]. A 1x1 convolution is a matrix product over channels, so the projections
    /// are written as GEMMs on the [B, C, H·W] view with transposed operands: q = hᵀ Wqᵀ + bq lands directly in the
    /// [B, H·W, C] layout attention takes, and proj = Wp oᵀ + bp directly back in [B, C, H·W]; no permute copies.
    /// </summary>
    public Tensor Forward(Tensor x)
    {
        if (x.Rank != 4 || x.Shape[1] != Channels)
            throw new TensorException("AttnBlock", $"input must be [B, {Channels}, H, W], got {ShapeUtil.Format(x.Shape)}");
        int b = x.Shape[0], c = Channels, n = x.Shape[2] * x.Shape[3];
        var normed = _norm.Forward(x);
        var h = Ops.Reshape(normed, b, c, n);
        var q = Project(h, _q);
        var k = Project(h, _k);
        var v = Project(h, _v);
        Intermediate.Release(normed, h);
        var o = Ops.ScaledDotProductAttention(q, k, v);
        Intermediate.Release(q, k, v);
        var weight = Ops.Reshape(_proj.Weight, c, c);
        var product = Ops.MatMul(weight, o, transposeB: true);
        var bias = Ops.Reshape(_proj.Bias!, c, 1);
        var projected = Ops.Add(product, bias);
        Intermediate.Release(o, weight, product, bias);
        var image = Ops.Reshape(projected, x.Shape);
        var y = Ops.Add(x, image);
        Intermediate.Release(projected, image);
        return y;
    }

    /// <summary>hᵀ Wᵀ + b for h [B, C, N]: the 1x1 convolution's output, laid out [B, N, C].</summary>
    private static Tensor Project(Tensor h, Conv2d conv)
    {
        var weight = Ops.Reshape(conv.Weight, conv.OutChannels, conv.InChannels);
        var product = Ops.MatMul(h, weight, transposeA: true, transposeB: true);
        var y = Ops.Add(product, conv.Bias!);
        Intermediate.Release(weight, product);
        return y;
    }
}
