namespace DiffusionCore.Pipelines;

/// <summary>
/// A model, training or generation request that cannot be carried out as asked: an unknown network or objective, a
/// combination that does not fit (an image network on 2-D data, a sampler for another process), a class label the
/// model does not know. The message names the setting, the value and what is accepted.
/// </summary>
public sealed class ConfigException : Exception
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public ConfigException(string message) : base(message)
    {
    }
}
