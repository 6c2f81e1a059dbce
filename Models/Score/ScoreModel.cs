using DiffusionCore.Engine;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Models.Score;

/// <summary>What a network's output means.</summary>
public enum Parameterisation
{
    /// <summary>The noise eps in x = alpha x0 + sigma eps (DDPM's eps_theta).</summary>
    Epsilon,

    /// <summary>The score grad_x log p(x) of the noised marginal (NCSN's s_theta).</summary>
    Score,

    /// <summary>The clean sample x0.</summary>
    X0,
}

/// <summary>
/// A model of the noised data's score, seen by samplers and likelihoods only through this class, so a
/// trained network and a closed-form score plug in the same way. It evaluates at one
/// <see cref="NoiseLevel"/> for the whole batch and converts between parameterisations with the
/// marginal x = alpha x0 + sigma eps: score = -eps / sigma, x0 = (x - sigma eps) / alpha,
/// eps = -sigma score = (x - alpha x0) / sigma.
/// </summary>
public abstract class ScoreModel
{
    /// <summary>The parameterisation <see cref="Evaluate"/> returns.</summary>
    public abstract Parameterisation Output { get; }

    /// <summary>The raw output at level <paramref name="level"/> for the batch x ([B, ...]).</summary>
    protected abstract Tensor Evaluate(Tensor x, NoiseLevel level, int[]? labels);

    /// <summary>The noise prediction eps(x, level).</summary>
    public Tensor Epsilon(Tensor x, NoiseLevel level, int[]? labels = null)
    {
        var y = Evaluate(x, level, labels);
        return Output switch
        {
            Parameterisation.Epsilon => y,
            Parameterisation.Score => Ops.Scale(y, -level.Sigma),
            _ => Ops.Scale(Ops.Sub(x, Ops.Scale(y, level.Alpha)), 1.0 / level.Sigma),
        };
    }

    /// <summary>The score grad_x log p_level(x).</summary>
    public Tensor Score(Tensor x, NoiseLevel level, int[]? labels = null)
    {
        if (Output == Parameterisation.Score) return Evaluate(x, level, labels);
        return Ops.Scale(Epsilon(x, level, labels), -1.0 / level.Sigma);
    }

    /// <summary>The denoised estimate x0(x, level).</summary>
    public Tensor X0(Tensor x, NoiseLevel level, int[]? labels = null)
    {
        if (Output == Parameterisation.X0) return Evaluate(x, level, labels);
        return Ops.Scale(Ops.Sub(x, Ops.Scale(Epsilon(x, level, labels), level.Sigma)), 1.0 / level.Alpha);
    }

    /// <summary>Wraps a network: it is called with a [B] tensor filled with level.Condition.</summary>
    public static ScoreModel FromNetwork(ScoreNetwork network, Parameterisation output) => new NetworkScoreModel(network, output);

    /// <summary>Wraps a function of (x, level, labels) returning the given parameterisation (e.g. a closed-form score).</summary>
    public static ScoreModel FromFunction(Func<Tensor, NoiseLevel, int[]?, Tensor> function, Parameterisation output) => new FunctionScoreModel(function, output);

    private sealed class NetworkScoreModel(ScoreNetwork network, Parameterisation output) : ScoreModel
    {
        public override Parameterisation Output => output;

        protected override Tensor Evaluate(Tensor x, NoiseLevel level, int[]? labels) =>
            network.Forward(x, Tensor.Full([x.Shape[0]], level.Condition, x.DType, x.Device), labels);
    }

    private sealed class FunctionScoreModel(Func<Tensor, NoiseLevel, int[]?, Tensor> function, Parameterisation output) : ScoreModel
    {
        public override Parameterisation Output => output;

        protected override Tensor Evaluate(Tensor x, NoiseLevel level, int[]? labels) => function(x, level, labels);
    }
}
