using DiffusionCore.Engine;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks.Cnf;

/// <summary>
/// The dynamics f_theta(z, t) of a continuous normalizing flow dz/dt = f_theta(z, t) (Chen et al. 2018;
/// FFJORD, Grathwohl et al. 2019): a stack of <see cref="ConcatSquashLinear"/> layers with tanh between
/// them. tanh keeps f smooth, which the adjoint and the Hutchinson divergence (second derivatives of f)
/// need. Parameters are named "layers.i.layer.weight", "layers.i.gate.weight", ...
/// </summary>
public sealed class CnfDynamics : Module, IFlowDynamics
{
    private readonly ConcatSquashLinear[] _layers;

    /// <summary>Creates dynamics for <paramref name="dim"/>-dimensional data with the given hidden widths.</summary>
    public CnfDynamics(int dim, int[] hidden, Generator generator, Device? device = null)
    {
        if (dim < 1) throw new ArgumentOutOfRangeException(nameof(dim), dim, "the data dimension must be positive");
        if (hidden.Length == 0 || hidden.Any(h => h < 1)) throw new ArgumentException($"hidden widths must be positive, got [{string.Join(", ", hidden)}]", nameof(hidden));
        Dim = dim;
        var widths = new List<int> { dim };
        widths.AddRange(hidden);
        widths.Add(dim);
        _layers = new ConcatSquashLinear[widths.Count - 1];
        for (int i = 0; i < _layers.Length; i++)
            _layers[i] = AddModule($"layers.{i}", new ConcatSquashLinear(widths[i], widths[i + 1], generator, device));
    }

    /// <summary>The FFJORD 2-D toy configuration: three hidden layers of 64.</summary>
    public static CnfDynamics Toy2d(Generator generator, Device? device = null) => new(2, [64, 64, 64], generator, device);

    /// <summary>Dimension of z.</summary>
    public int Dim { get; }

    /// <summary>f_theta(z, t) for z [B, Dim].</summary>
    public Tensor Forward(Tensor z, double t)
    {
        if (z.Rank != 2 || z.Shape[1] != Dim) throw new TensorException("CnfDynamics", $"state must be [B, {Dim}], got {ShapeUtil.Format(z.Shape)}");
        var h = z;
        for (int i = 0; i < _layers.Length; i++)
        {
            h = _layers[i].Forward(h, t);
            if (i < _layers.Length - 1) h = Ops.Tanh(h);
        }
        return h;
    }
}
