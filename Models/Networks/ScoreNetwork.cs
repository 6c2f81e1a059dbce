using DiffusionCore.Engine;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// A network that maps a noisy input x, its diffusion time t ([B]) and optional class labels to a
/// tensor shaped like x (a noise, score or x0 prediction, depending on how it is trained).
/// </summary>
public abstract class ScoreNetwork : Module
{
    /// <summary>
    /// The generator dropout layers draw their masks from while training (null: none set). A network with active
    /// dropout throws if it is missing; a trainer sets it to its own generator, so that a checkpoint of the
    /// trainer's random state covers the masks too.
    /// </summary>
    public Generator? DropoutGenerator { get; set; }

    /// <summary>Evaluates the network.</summary>
    public abstract Tensor Forward(Tensor x, Tensor t, int[]? labels = null);
}
