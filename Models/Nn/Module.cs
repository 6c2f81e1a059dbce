using DiffusionCore.Engine;

namespace DiffusionCore.Models.Nn;

/// <summary>
/// A building block with named parameters and children. Parameter names follow PyTorch module paths
/// ("net.0.weight"), so checkpoints read naturally and map onto PyTorch state dicts.
/// </summary>
public abstract class Module
{
    private readonly List<(string Name, Tensor Tensor)> _parameters = [];
    private readonly List<(string Name, Module Module)> _children = [];

    /// <summary>True while training (dropout active); false for evaluation.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Registers a trainable tensor under <paramref name="name"/>; it is marked RequiresGrad and kept out of scopes.</summary>
    protected Tensor AddParameter(string name, Tensor tensor)
    {
        TensorScope.Escape(tensor);
        tensor.RequiresGrad = true;
        tensor.Name = name;
        _parameters.Add((name, tensor));
        return tensor;
    }

    /// <summary>Registers a child module under <paramref name="name"/>.</summary>
    protected T AddModule<T>(string name, T module) where T : Module
    {
        _children.Add((name, module));
        return module;
    }

    /// <summary>Every parameter with its full dotted path, in registration order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters(string prefix = "")
    {
        foreach (var (n, t) in _parameters) yield return (prefix + n, t);
        foreach (var (n, m) in _children)
            foreach (var p in m.NamedParameters(prefix + n + ".")) yield return p;
    }

    /// <summary>Every parameter, in the order of <see cref="NamedParameters"/>.</summary>
    public IReadOnlyList<Tensor> Parameters() => NamedParameters().Select(p => p.Tensor).ToList();

    /// <summary>Total number of scalar parameters.</summary>
    public long ParameterCount => NamedParameters().Sum(p => p.Tensor.Count);

    /// <summary>Switches this module and its children to training or evaluation mode.</summary>
    public void SetTraining(bool training)
    {
        Training = training;
        foreach (var (_, m) in _children) m.SetTraining(training);
    }
}
