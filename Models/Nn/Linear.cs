using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Nn;

/// <summary>y = x Wᵀ + b with W of shape [out, in] (PyTorch's layout and default initialisation).</summary>
public sealed class Linear : Module
{
    /// <summary>
    /// Creates the layer with weights drawn from <paramref name="generator"/>, held in <paramref name="dtype"/>
    /// (the values are drawn in float32 either way, so a float64 layer holds exactly the float32 layer's values).
    /// </summary>
    public Linear(int inFeatures, int outFeatures, Generator generator, bool bias = true, Device? device = null, DType dtype = DType.Float32)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), $"Linear({inFeatures}, {outFeatures}) needs positive sizes");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = AddParameter("weight", Precision.To(Init.FanIn([outFeatures, inFeatures], inFeatures, generator, device), dtype));
        Bias = bias ? AddParameter("bias", Precision.To(Init.FanIn([outFeatures], inFeatures, generator, device), dtype)) : null;
    }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }

    /// <summary>Output width.</summary>
    public int OutFeatures { get; }

    /// <summary>[out, in] weight.</summary>
    public Tensor Weight { get; }

    /// <summary>[out] bias, or null.</summary>
    public Tensor? Bias { get; }

    /// <summary>Applies the layer over the last axis.</summary>
    public Tensor Forward(Tensor x) => Ops.Linear(x, Weight, Bias);
}
