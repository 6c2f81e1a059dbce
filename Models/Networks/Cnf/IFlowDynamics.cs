using DiffusionCore.Engine;

namespace DiffusionCore.Models.Networks.Cnf;

/// <summary>
/// The vector field f_theta(z, t) of a continuous normalizing flow, with its trainable parameters theta
/// (the adjoint method integrates one adjoint state per parameter tensor).
/// </summary>
public interface IFlowDynamics
{
    /// <summary>Dimension of z.</summary>
    int Dim { get; }

    /// <summary>f_theta(z, t) for z [B, Dim]; differentiable in z and in the parameters.</summary>
    Tensor Forward(Tensor z, double t);

    /// <summary>The parameters theta.</summary>
    IReadOnlyList<Tensor> Parameters();
}
