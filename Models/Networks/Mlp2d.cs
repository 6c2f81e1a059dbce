using DiffusionCore.Engine;
using DiffusionCore.Models.Nn;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The mlp-2d score network of shared/BENCHMARKS.md: input x [B, 2] concatenated with a 32-wide
/// sinusoidal embedding of t, three hidden layers of 128 with SiLU, output [B, 2]. 37,762 parameters.
/// With <see cref="ConditionKind.Sigma"/> the conditioning input is a noise level sigma &gt; 0 (NCSN, VE),
/// and the same embedding is applied to <see cref="SigmaEmbeddingScale"/> ln sigma; the parameter count
/// does not change.
/// </summary>
public sealed class Mlp2d : ScoreNetwork
{
    /// <summary>
    /// The factor on ln sigma before the sinusoidal embedding. The embedding's frequencies (1 down to 1e-4)
    /// were chosen for DDPM step indices spanning about 1000 units; the noise levels of NCSN and VE span
    /// ln sigma in about [ln 0.01, ln 50] = [-4.6, 3.9], so a factor of 100 spreads them over about 850 units,
    /// the same resolution the time embedding gets (ln sigma itself, spanning 8.5 units, would leave the
    /// lower half of the frequencies almost constant and the embedding of distant levels almost equal).
    /// </summary>
    public const double SigmaEmbeddingScale = 100.0;

    private readonly Linear[] _layers;

    /// <summary>
    /// Creates the network with weights from <paramref name="generator"/>; <paramref name="condition"/> says
    /// whether <see cref="Forward"/>'s second input is a time (the default) or a noise level sigma.
    /// </summary>
    public Mlp2d(Generator generator, int dataDim = 2, int embeddingDim = 32, int hidden = 128, int depth = 3, Device? device = null,
        ConditionKind condition = ConditionKind.Time)
    {
        if (!Enum.IsDefined(condition)) throw new ArgumentOutOfRangeException(nameof(condition), condition, "Mlp2d: unknown condition kind");
        DataDim = dataDim;
        EmbeddingDim = embeddingDim;
        Condition = condition;
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

    /// <summary>What the conditioning input of <see cref="Forward"/> is: a time or a noise level sigma.</summary>
    public ConditionKind Condition { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor x, Tensor t, int[]? labels = null)
    {
        if (x.Rank != 2 || x.Shape[1] != DataDim) throw new TensorException("Mlp2d", $"input must be [B, {DataDim}], got {ShapeUtil.Format(x.Shape)}");
        if (t.Rank != 1 || t.Shape[0] != x.Shape[0]) throw new TensorException("Mlp2d", $"times must be [{x.Shape[0]}], got {ShapeUtil.Format(t.Shape)}");
        var h = Ops.Concat([x, TimeEmbedding.Sinusoidal(EmbeddingInput(t), EmbeddingDim)], 1);
        for (int i = 0; i < _layers.Length; i++)
        {
            h = _layers[i].Forward(h);
            if (i < _layers.Length - 1) h = Ops.Silu(h);
        }
        return h;
    }

    // The value the sinusoidal embedding sees: t itself, or SigmaEmbeddingScale ln sigma. A sigma that is not
    // positive would turn into -inf or NaN features, so it is refused here, where it still has a name.
    private Tensor EmbeddingInput(Tensor t)
    {
        if (Condition == ConditionKind.Time) return t;
        var sigmas = t.ToDoubleArray();
        for (int i = 0; i < sigmas.Length; i++)
            if (!(sigmas[i] > 0) || double.IsPositiveInfinity(sigmas[i]))
                throw new ArgumentOutOfRangeException(nameof(t), sigmas[i], $"Mlp2d (ConditionKind.Sigma): noise level {i} must be a finite sigma > 0");
        return Ops.Scale(Ops.Log(t), SigmaEmbeddingScale);
    }
}
