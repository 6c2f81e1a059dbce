using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>Halves the resolution with a 3x3 convolution of stride 2 and padding 1 ("conv"), as in the DDPM U-Net.</summary>
public sealed class Downsample : Module
{
    private readonly Conv2d _conv;

    /// <summary>Creates the layer for <paramref name="channels"/> channels.</summary>
    public Downsample(int channels, Generator generator, Device? device = null, DType dtype = DType.Float32)
    {
        _conv = AddModule("conv", new Conv2d(channels, channels, 3, generator, stride: 2, padding: 1, device: device, dtype: dtype));
    }

    /// <summary>x[B, C, H, W] to [B, C, ceil(H/2), ceil(W/2)].</summary>
    public Tensor Forward(Tensor x) => _conv.Forward(x);
}
