namespace DiffusionCore.Engine;

/// <summary>
/// One recorded op: its inputs and the rule mapping the gradient of its output to gradients of its
/// inputs. The rule is written with differentiable tensor ops, so when a graph is requested the
/// backward pass is itself recorded and can be differentiated again.
/// </summary>
internal sealed class Node(string op, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
{
    public string Op { get; } = op;
    public Tensor[] Inputs { get; } = inputs;
    public Func<Tensor, Tensor?[]> Backward { get; } = backward;
}
