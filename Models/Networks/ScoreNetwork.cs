using DiffusionCore.Engine;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// A network that maps a noisy input x, its diffusion time t ([B]) and optional class labels to a
/// tensor shaped like x (a noise, score or x0 prediction, depending on how it is trained).
/// </summary>
public abstract class ScoreNetwork : Module
{
    /// <summary>Evaluates the network.</summary>
    public abstract Tensor Forward(Tensor x, Tensor t, int[]? labels = null);
}
