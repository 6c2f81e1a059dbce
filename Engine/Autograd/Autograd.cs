namespace DiffusionCore.Engine;

/// <summary>
/// Reverse-mode automatic differentiation over the define-by-run graph. <see cref="Grad"/> returns
/// vector-Jacobian products; with <c>createGraph</c> the backward pass is recorded too, so the result
/// can be differentiated again (Hutchinson divergences inside a loss need exactly that).
/// </summary>
public static class Autograd
{
    [ThreadStatic] private static int _noGradDepth;

    /// <summary>True while recording is on (no enclosing <see cref="NoGrad"/> scope).</summary>
    public static bool IsRecording => _noGradDepth == 0;

    /// <summary>Turns recording off until the returned handle is disposed.</summary>
    public static IDisposable NoGrad() => new RecordingSwitch(off: true);

    /// <summary>Turns recording back on inside a no-grad region (used for createGraph backward passes).</summary>
    public static IDisposable EnableGrad() => new RecordingSwitch(off: false);

    private sealed class RecordingSwitch : IDisposable
    {
        private readonly int _saved;
        private bool _done;

        public RecordingSwitch(bool off)
        {
            _saved = _noGradDepth;
            _noGradDepth = off ? _noGradDepth + 1 : 0;
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _noGradDepth = _saved;
        }
    }

    /// <summary>
    /// Attaches <paramref name="result"/> to the graph as the output of <paramref name="op"/> when recording
    /// is on and any input tracks gradients. <paramref name="backward"/> maps the output gradient to one
    /// gradient per input (null where an input gets none).
    /// </summary>
    internal static Tensor Record(Tensor result, string op, Tensor[] inputs, Func<Tensor, Tensor?[]> backward)
    {
        if (!IsRecording) return result;
        foreach (var x in inputs)
        {
            if (x.TracksGrad)
            {
                result.GradFn = new Node(op, inputs, backward);
                return result;
            }
        }
        return result;
    }

    /// <summary>
    /// A user-defined differentiable function (PyTorch's autograd.Function): <paramref name="result"/>, computed
    /// by the caller from <paramref name="inputs"/> in any way (e.g. by solving an adjoint ODE), is attached to
    /// the graph so that backpropagation calls <paramref name="backward"/>, which maps the gradient of the
    /// result to one gradient per input (null where an input gets none, else the input's shape). The backward
    /// rule is differentiated again only if it is built from differentiable ops. Returns <paramref name="result"/>.
    /// </summary>
    public static Tensor Function(Tensor result, string name, IReadOnlyList<Tensor> inputs, Func<Tensor, Tensor?[]> backward)
    {
        ArgumentNullException.ThrowIfNull(backward);
        var array = inputs.ToArray();
        return Record(result, name, array, g =>
        {
            var grads = backward(g);
            if (grads.Length != array.Length)
                throw new TensorException(name, $"custom backward returned {grads.Length} gradients for {array.Length} inputs");
            return grads;
        });
    }

    /// <summary>
    /// Gradients of <paramref name="outputs"/> with respect to <paramref name="inputs"/>: the sum over outputs of
    /// gradOutput_i^T d output_i / d input. A null gradOutput means ones (allowed for one-element outputs only).
    /// With <paramref name="createGraph"/> the returned gradients are themselves differentiable.
    /// An input the outputs do not depend on gets null when <paramref name="allowUnused"/>, else an error.
    /// </summary>
    public static Tensor?[] Grad(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor> inputs, IReadOnlyList<Tensor?>? gradOutputs = null,
        bool createGraph = false, bool allowUnused = false)
    {
        var grads = Propagate(outputs, inputs, gradOutputs, createGraph);
        var result = new Tensor?[inputs.Count];
        for (int i = 0; i < inputs.Count; i++)
        {
            if (grads.TryGetValue(inputs[i], out var g))
            {
                result[i] = g;
                grads.Remove(inputs[i]);
            }
            else if (!allowUnused)
                throw new TensorException("Grad", $"input {i} (shape {ShapeUtil.Format(inputs[i].Shape)}) is not reachable from the outputs; pass allowUnused: true to get null");
        }
        if (!createGraph) foreach (var g in grads.Values) g.Dispose();
        return result;
    }

    /// <summary>
    /// Accumulates d output / d leaf into <see cref="Tensor.Grad"/> of every leaf that requires grad.
    /// </summary>
    internal static void Backward(Tensor output, Tensor? gradOutput, bool createGraph)
    {
        var leaves = new List<Tensor>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Tensor>();
        stack.Push(output);
        while (stack.Count > 0)
        {
            var t = stack.Pop();
            if (!seen.Add(t)) continue;
            if (t.GradFn is null) { if (t.RequiresGrad) leaves.Add(t); continue; }
            foreach (var x in t.GradFn.Inputs) if (x.TracksGrad) stack.Push(x);
        }
        if (leaves.Count == 0) throw new TensorException("Backward", "the output does not depend on any tensor that requires grad");
        var grads = Grad([output], leaves, [gradOutput], createGraph);
        for (int i = 0; i < leaves.Count; i++)
        {
            var leaf = leaves[i];
            var g = grads[i]!;
            if (leaf.Grad is null)
            {
                leaf.Grad = TensorScope.Escape(createGraph ? g : Detached(g));
            }
            else
            {
                var sum = createGraph ? Ops.Add(leaf.Grad, g) : AddNoGrad(leaf.Grad, g);
                leaf.Grad.Dispose();
                g.Dispose();
                leaf.Grad = TensorScope.Escape(sum);
            }
        }
    }

    private static Tensor Detached(Tensor g)
    {
        if (g.GradFn is null) return g;
        var d = g.Detach();
        g.Dispose();
        return d;
    }

    private static Tensor AddNoGrad(Tensor a, Tensor b)
    {
        using (NoGrad()) return Ops.Add(a, b);
    }

    private static Dictionary<Tensor, Tensor> Propagate(IReadOnlyList<Tensor> outputs, IReadOnlyList<Tensor> inputs, IReadOnlyList<Tensor?>? gradOutputs, bool createGraph)
    {
        if (gradOutputs is not null && gradOutputs.Count != outputs.Count)
            throw new TensorException("Grad", $"{outputs.Count} outputs but {gradOutputs.Count} output gradients");
        var wanted = new HashSet<Tensor>(inputs, ReferenceEqualityComparer.Instance);
        var order = TopologicalOrder(outputs, wanted);
        var grads = new Dictionary<Tensor, Tensor>(ReferenceEqualityComparer.Instance);
        using var mode = createGraph ? EnableGrad() : NoGrad();
        for (int i = 0; i < outputs.Count; i++)
        {
            var o = outputs[i];
            var seed = gradOutputs?[i];
            if (seed is null)
            {
                if (o.Count != 1) throw new TensorException("Grad", $"an output gradient is needed for output {i} of shape {ShapeUtil.Format(o.Shape)} (only one-element outputs get an implicit 1)");
                seed = Tensor.Full(o.Shape, 1.0, o.DType, o.Device);
            }
            else
            {
                if (!ShapeUtil.Same(seed.Shape, o.Shape)) throw new TensorException("Grad", $"output {i} has shape {ShapeUtil.Format(o.Shape)} but its gradient has {ShapeUtil.Format(seed.Shape)}");
                seed = seed.Alias();
            }
            Accumulate(grads, o, seed);
        }
        foreach (var t in order)
        {
            if (t.GradFn is null || !grads.TryGetValue(t, out var g)) continue;
            var node = t.GradFn;
            var inGrads = node.Backward(g);
            for (int i = 0; i < node.Inputs.Length; i++)
            {
                var x = node.Inputs[i];
                var gi = inGrads[i];
                if (gi is null || !x.TracksGrad) continue;
                if (!ShapeUtil.Same(gi.Shape, x.Shape))
                    throw new TensorException(node.Op, $"backward produced a gradient of shape {ShapeUtil.Format(gi.Shape)} for an input of shape {ShapeUtil.Format(x.Shape)}");
                Accumulate(grads, x, ReferenceEquals(gi, g) || grads.ContainsValue(gi) ? gi.Alias() : gi);
            }
            if (!wanted.Contains(t))
            {
                grads.Remove(t);
                if (!createGraph) g.Dispose();
            }
        }
        return grads;
    }

    private static void Accumulate(Dictionary<Tensor, Tensor> grads, Tensor x, Tensor g)
    {
        if (grads.TryGetValue(x, out var existing))
        {
            grads[x] = Ops.Add(existing, g);
            if (!IsRecording)
            {
                existing.Dispose();
                g.Dispose();
            }
        }
        else grads[x] = g;
    }

    /// <summary>
    /// Tensors reachable from the outputs that lie on a path to a wanted input, ordered so that every
    /// tensor comes before the inputs of its op (reverse topological order).
    /// </summary>
    private static List<Tensor> TopologicalOrder(IReadOnlyList<Tensor> outputs, HashSet<Tensor> wanted)
    {
        var post = new List<Tensor>();
        var state = new Dictionary<Tensor, bool>(ReferenceEqualityComparer.Instance); // false = visiting, true = done
        var useful = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor t, int next)>();
        foreach (var o in outputs)
        {
            if (state.ContainsKey(o)) continue;
            stack.Push((o, 0));
            state[o] = false;
            while (stack.Count > 0)
            {
                var (t, next) = stack.Pop();
                var inputs = t.GradFn?.Inputs ?? [];
                if (next < inputs.Length)
                {
                    stack.Push((t, next + 1));
                    var x = inputs[next];
                    if (x.TracksGrad && !state.ContainsKey(x))
                    {
                        state[x] = false;
                        stack.Push((x, 0));
                    }
                    continue;
                }
                state[t] = true;
                if (wanted.Contains(t) || inputs.Any(useful.Contains)) useful.Add(t);
                post.Add(t);
            }
        }
        post.Reverse();
        return post.Where(useful.Contains).ToList();
    }
}
