using DiffusionCore.Engine;

namespace DiffusionCore.Models.Nn;

/// <summary>y = x Wᵀ + b with W of shape [out, in] (PyTorch's layout and default initialisation).</summary>
public sealed class Linear : Module
{
    /// <summary>Creates the layer with weights drawn from <paramref name="generator"/>.</summary>
    public Linear(int inFeatures, int outFeatures, Generator generator, bool bias = true, Device? device = null)
    {
        if (inFeatures <= 0 || outFeatures <= 0) throw new ArgumentOutOfRangeException(nameof(inFeatures), $"Linear({inFeatures}, {outFeatures}) needs positive sizes");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = AddParameter("weight", Init.FanIn([outFeatures, inFeatures], inFeatures, generator, device));
        Bias = bias ? AddParameter("bias", Init.FanIn([outFeatures], inFeatures, generator, device)) : null;
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
