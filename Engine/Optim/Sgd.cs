namespace DiffusionCore.Engine.Optim;

/// <summary>Stochastic gradient descent with optional heavy-ball momentum and L2 weight decay.</summary>
public sealed class Sgd : Optimizer
{
    private readonly Tensor[]? _velocity;

    /// <summary>v = momentum v + (g + wd p); p -= lr v (plain SGD when momentum is 0).</summary>
    public Sgd(IReadOnlyList<Tensor> parameters, double learningRate, double momentum = 0.0, double weightDecay = 0.0)
        : base(parameters, learningRate)
    {
        Momentum = momentum;
        WeightDecay = weightDecay;
        if (momentum != 0.0) _velocity = parameters.Select(StateLike).ToArray();
    }

    /// <summary>Momentum coefficient.</summary>
    public double Momentum { get; }

    /// <summary>L2 weight decay coefficient.</summary>
    public double WeightDecay { get; }

    /// <inheritdoc />
    protected override void Update(int index, Tensor p, Tensor g)
    {
        if (_velocity is null)
        {
            if (WeightDecay != 0.0) ParameterUpdates.Axpby(p, p, -LearningRate * WeightDecay, 1.0);
            ParameterUpdates.Axpby(g, p, -LearningRate, 1.0);
            return;
        }
        var v = _velocity[index];
        ParameterUpdates.Axpby(g, v, 1.0, Momentum);
        if (WeightDecay != 0.0) ParameterUpdates.Axpby(p, v, WeightDecay, 1.0);
        ParameterUpdates.Axpby(v, p, -LearningRate, 1.0);
    }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, Tensor> State()
        => _velocity is null ? new Dictionary<string, Tensor>() : _velocity.Select((t, i) => (t, i)).ToDictionary(x => $"momentum.{x.i}", x => x.t);
}
