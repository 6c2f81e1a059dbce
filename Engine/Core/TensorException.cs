namespace DiffusionCore.Engine;

/// <summary>
/// Raised by a tensor op that cannot work on its arguments; the message names the op and the shapes
/// or values involved, e.g. <c>Add: shapes [2,3] and [4] do not broadcast</c>.
/// </summary>
public sealed class TensorException : Exception
{
    /// <summary>Creates the exception for <paramref name="op"/>.</summary>
    public TensorException(string op, string message) : base($"{op}: {message}") => Op = op;

    /// <summary>The op that refused its arguments.</summary>
    public string Op { get; }
}
