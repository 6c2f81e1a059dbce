using DiffusionCore.Engine;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The mlp-2d score network of shared/BENCHMARKS.md: input x [B, 2] concatenated with a 32-wide
/// sinusoidal embedding of t, three hidden layers of 128 with SiLU, output [B, 2]. 37,762 parameters.
/// </summary>
public sealed class Mlp2d : ScoreNetwork
{
    private readonly Linear[] _layers;

    /// <summary>Creates the network with weights from <paramref name="generator"/>.</summary>
    public Mlp2d(Generator generator, int dataDim = 2, int embeddingDim = 32, int hidden = 128, int depth = 3, Device? device = null)
    {
        DataDim = dataDim;
        EmbeddingDim = embeddingDim;
        var widths = new List<int> { dataDim + embeddingDim };
        for (int i = 0; i < depth; i++) widths.Add(hidden);
        widths.Add(dataDim);
        _layers = new Linear[widths.Count - 1];
        for (int i = 0; i < _layers.Length; i++)
            _layers[i] = AddModule($"net.{i}", new Linear(widths[i], widths[i + 1], generator, device: device));
    }

    /// <summary>Width of x.</summary>
    public int DataDim { get; }

    /// <summary>Width of the time embedding.</summary>
    public int EmbeddingDim { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor x, Tensor t, int[]? labels = null)
    {
        if (x.Rank != 2 || x.Shape[1] != DataDim) throw new TensorException("Mlp2d", $"input must be [B, {DataDim}], got {ShapeUtil.Format(x.Shape)}");
        if (t.Rank != 1 || t.Shape[0] != x.Shape[0]) throw new TensorException("Mlp2d", $"times must be [{x.Shape[0]}], got {ShapeUtil.Format(t.Shape)}");
        var h = Ops.Concat([x, TimeEmbedding.Sinusoidal(t, EmbeddingDim)], 1);
        for (int i = 0; i < _layers.Length; i++)
        {
            h = _layers[i].Forward(h);
            if (i < _layers.Length - 1) h = Ops.Silu(h);
        }
        return h;
    }
}
