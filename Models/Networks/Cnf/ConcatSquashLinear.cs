using DiffusionCore.Engine;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks.Cnf;

/// <summary>
/// FFJORD's time-conditioned linear layer (Grathwohl et al. 2019, code "concatsquash"):
/// y = (W x + b) * sigmoid(W_g t + b_g) + W_b t, so time both gates and shifts every output unit.
/// </summary>
public sealed class ConcatSquashLinear : Module
{
    private readonly Linear _layer;
    private readonly Linear _gate;
    private readonly Linear _hyperBias;

    /// <summary>Creates the layer with PyTorch-default initialisation from <paramref name="generator"/>.</summary>
    public ConcatSquashLinear(int inFeatures, int outFeatures, Generator generator, Device? device = null)
    {
        _layer = AddModule("layer", new Linear(inFeatures, outFeatures, generator, device: device));
        _gate = AddModule("gate", new Linear(1, outFeatures, generator, device: device));
        _hyperBias = AddModule("hyper_bias", new Linear(1, outFeatures, generator, bias: false, device: device));
    }

    /// <summary>Applies the layer to x [B, in] at time <paramref name="t"/> (one time for the whole batch).</summary>
    public Tensor Forward(Tensor x, double t)
    {
        var time = Tensor.Full([1, 1], t, x.DType, x.Device);
        var gate = Ops.Sigmoid(_gate.Forward(time));
        return Ops.Add(Ops.Mul(_layer.Forward(x), gate), _hyperBias.Forward(time));
    }
}
