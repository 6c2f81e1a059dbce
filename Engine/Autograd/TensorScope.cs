namespace DiffusionCore.Engine;

/// <summary>
/// Frees the tensors created inside it when it is disposed (TorchSharp's DisposeScope idea): wrap a
/// training step or a sampling step in <c>using var scope = TensorScope.Begin();</c> and nothing it
/// allocated outlives it, except what is passed to <see cref="Keep"/>. Scopes nest per thread.
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;
    private readonly TensorScope? _parent;
    private readonly List<Tensor> _owned = [];
    private bool _disposed;

    private TensorScope(TensorScope? parent) => _parent = parent;

    /// <summary>Opens a scope on the current thread.</summary>
    public static TensorScope Begin() => _current = new TensorScope(_current);

    /// <summary>Moves <paramref name="tensor"/> to the enclosing scope (or out of all scopes) so it survives this one.</summary>
    public Tensor Keep(Tensor tensor)
    {
        if (ReferenceEquals(tensor.Scope, this))
        {
            tensor.Scope = _parent;
            _parent?._owned.Add(tensor);
        }
        return tensor;
    }

    /// <summary>Takes <paramref name="tensor"/> out of every scope: only an explicit Dispose frees it.</summary>
    public static Tensor Escape(Tensor tensor)
    {
        tensor.Scope = null;
        return tensor;
    }

    internal static void Register(Tensor tensor)
    {
        var s = _current;
        if (s is null) return;
        tensor.Scope = s;
        s._owned.Add(tensor);
    }

    /// <summary>Disposes every tensor created in this scope and not kept.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _owned)
            if (ReferenceEquals(t.Scope, this)) t.Dispose();
        _owned.Clear();
        if (ReferenceEquals(_current, this)) _current = _parent;
    }
}
