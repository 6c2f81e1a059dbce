using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>Doubles the resolution by nearest-neighbour upsampling followed by a 3x3 convolution ("conv"), as in the DDPM U-Net.</summary>
public sealed class Upsample : Module
{
    private readonly Conv2d _conv;

    /// <summary>Creates the layer for <paramref name="channels"/> channels.</summary>
    public Upsample(int channels, Generator generator, Device? device = null, DType dtype = DType.Float32)
    {
        _conv = AddModule("conv", new Conv2d(channels, channels, 3, generator, padding: 1, device: device, dtype: dtype));
    }

    /// <summary>x[B, C, H, W] to [B, C, 2H, 2W].</summary>
    public Tensor Forward(Tensor x)
    {
        var upsampled = Ops.UpsampleNearest2x(x);
        var y = _conv.Forward(upsampled);
        Intermediate.Release(upsampled);
        return y;
    }
}
