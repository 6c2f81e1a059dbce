using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Nn;

/// <summary>
/// 2-D convolution over NCHW tensors with a square kernel: weight [out, in, k, k] and bias [out] in PyTorch's
/// layout and default initialisation (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in·k·k), the same stride
/// and zero padding on both axes.
/// </summary>
public sealed class Conv2d : Module
{
    /// <summary>Creates the layer with weights drawn from <paramref name="generator"/>, held in <paramref name="dtype"/>.</summary>
    public Conv2d(int inChannels, int outChannels, int kernelSize, Generator generator, int stride = 1, int padding = 0, bool bias = true,
        Device? device = null, DType dtype = DType.Float32)
    {
        if (inChannels <= 0 || outChannels <= 0 || kernelSize <= 0 || stride <= 0 || padding < 0)
            throw new ArgumentOutOfRangeException(nameof(inChannels),
                $"Conv2d({inChannels}, {outChannels}, kernel {kernelSize}, stride {stride}, padding {padding}) needs positive sizes and stride, and padding >= 0");
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        int fanIn = inChannels * kernelSize * kernelSize;
        Weight = AddParameter("weight", Precision.To(Init.FanIn([outChannels, inChannels, kernelSize, kernelSize], fanIn, generator, device), dtype));
        Bias = bias ? AddParameter("bias", Precision.To(Init.FanIn([outChannels], fanIn, generator, device), dtype)) : null;
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>Height and width of the kernel.</summary>
    public int KernelSize { get; }

    /// <summary>Step between kernel positions on both axes.</summary>
    public int Stride { get; }

    /// <summary>Zeros added on each side of both axes.</summary>
    public int Padding { get; }

    /// <summary>[out, in, k, k] weight.</summary>
    public Tensor Weight { get; }

    /// <summary>[out] bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>Applies the convolution to x[N, in, H, W].</summary>
    public Tensor Forward(Tensor x) => Ops.Conv2d(x, Weight, Bias, Stride, Padding);
}
