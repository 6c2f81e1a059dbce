using DiffusionCore.Kernels;

namespace DiffusionCore.Engine.Optim;

/// <summary>
/// Adam (Kingma and Ba 2015) and, with <c>decoupledWeightDecay</c>, AdamW (Loshchilov and Hutter 2019).
/// Each step is one fused kernel per parameter where the backend has <see cref="IOptimizerKernels"/>, else the same
/// formula from elementwise ops.
/// </summary>
public sealed class Adam : Optimizer
{
    private readonly Tensor[] _m;
    private readonly Tensor[] _v;

    /// <summary>Creates the optimizer; moments start at zero.</summary>
    public Adam(IReadOnlyList<Tensor> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
        double epsilon = 1e-8, double weightDecay = 0.0, bool decoupledWeightDecay = false)
        : base(parameters, learningRate)
    {
        if (beta1 is < 0 or >= 1 || beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), $"betas ({beta1}, {beta2}) must lie in [0, 1)");
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
        Decoupled = decoupledWeightDecay;
        _m = parameters.Select(StateLike).ToArray();
        _v = parameters.Select(StateLike).ToArray();
    }

    /// <summary>AdamW: Adam with decoupled weight decay (default 0.01).</summary>
    public static Adam AdamW(IReadOnlyList<Tensor> parameters, double learningRate = 1e-3, double weightDecay = 0.01, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8)
        => new(parameters, learningRate, beta1, beta2, epsilon, weightDecay, decoupledWeightDecay: true);

    /// <summary>First-moment decay.</summary>
    public double Beta1 { get; }

    /// <summary>Second-moment decay.</summary>
    public double Beta2 { get; }

    /// <summary>Denominator floor.</summary>
    public double Epsilon { get; }

    /// <summary>Weight decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <summary>True for AdamW's decoupled decay.</summary>
    public bool Decoupled { get; }

    /// <inheritdoc />
    protected override void Update(int index, Tensor p, Tensor g)
    {
        var step = new AdamStep(LearningRate, Beta1, Beta2, Epsilon, WeightDecay, Decoupled,
            1.0 - Math.Pow(Beta1, StepCount), 1.0 - Math.Pow(Beta2, StepCount));
        ParameterUpdates.Adam(p, g, _m[index], _v[index], step);
    }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, Tensor> State()
    {
        var d = new Dictionary<string, Tensor>();
        for (int i = 0; i < _m.Length; i++)
        {
            d[$"exp_avg.{i}"] = _m[i];
            d[$"exp_avg_sq.{i}"] = _v[i];
        }
        return d;
    }
}
