using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The DDPM residual block (Ho et al. 2020, after Wide ResNets): h = conv1(SiLU(GroupNorm1(x))) + temb_proj(SiLU(temb));
/// h = conv2(dropout(SiLU(GroupNorm2(h)))); out = skip(x) + h, where skip is a 1x1 convolution when the channel count
/// changes and the identity otherwise. Parameters: norm1, conv1, temb_proj, norm2, conv2 and skip.
/// </summary>
public sealed class ResBlock : Module
{
    private readonly GroupNorm _norm1;
    private readonly Conv2d _conv1;
    private readonly Linear _tembProj;
    private readonly GroupNorm _norm2;
    private readonly Dropout _dropout;
    private readonly Conv2d _conv2;
    private readonly Conv2d? _skip;

    /// <summary>Creates the block from <paramref name="inChannels"/> to <paramref name="outChannels"/> with a <paramref name="embeddingDim"/>-wide time embedding.</summary>
    public ResBlock(int inChannels, int outChannels, int embeddingDim, double dropout, int groups, double eps, Generator generator,
        Device? device = null, DType dtype = DType.Float32)
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        _norm1 = AddModule("norm1", new GroupNorm(groups, inChannels, eps, device, dtype));
        _conv1 = AddModule("conv1", new Conv2d(inChannels, outChannels, 3, generator, padding: 1, device: device, dtype: dtype));
        _tembProj = AddModule("temb_proj", new Linear(embeddingDim, outChannels, generator, device: device, dtype: dtype));
        _norm2 = AddModule("norm2", new GroupNorm(groups, outChannels, eps, device, dtype));
        _dropout = AddModule("dropout", new Dropout(dropout));
        _conv2 = AddModule("conv2", new Conv2d(outChannels, outChannels, 3, generator, padding: 1, device: device, dtype: dtype));
        _skip = inChannels != outChannels ? AddModule("skip", new Conv2d(inChannels, outChannels, 1, generator, device: device, dtype: dtype)) : null;
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>
    /// Applies the block to x[B, in, H, W]. <paramref name="embeddingSilu"/> is SiLU(temb) ([B, embeddingDim]),
    /// activated once by the network and shared by all its blocks; <paramref name="dropoutGenerator"/> supplies the
    /// dropout masks while training.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor embeddingSilu, Generator? dropoutGenerator)
    {
        var a = _norm1.Forward(x, silu: true);
        var h = _conv1.Forward(a);
        Intermediate.Release(a);
        var projected = _tembProj.Forward(embeddingSilu);
        var shift = Ops.Reshape(projected, x.Shape[0], OutChannels, 1, 1);
        var shifted = Ops.Add(h, shift);
        Intermediate.Release(h, shift, projected);
        var b = _norm2.Forward(shifted, silu: true);
        Intermediate.Release(shifted);
        var dropped = _dropout.Forward(b, dropoutGenerator);
        h = _conv2.Forward(dropped);
        Intermediate.Release(b, dropped);
        var skip = _skip is null ? x : _skip.Forward(x);
        var y = Ops.Add(skip, h);
        Intermediate.Release(h);
        if (_skip is not null) Intermediate.Release(skip);
        return y;
    }
}
