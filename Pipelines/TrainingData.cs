using DiffusionCore.Engine;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Pipelines;

/// <summary>Training data by name: a 2-D toy set drawn afresh from the step's generator, or the bundled MNIST subset.</summary>
public sealed class TrainingData : IDisposable
{
    private readonly Toy2dKind? _toy;
    private readonly MnistDataSet? _mnist;
    private readonly Device? _device;

    private TrainingData(Toy2dKind? toy, MnistDataSet? mnist, Device? device)
    {
        _toy = toy;
        _mnist = mnist;
        _device = device;
    }

    /// <summary>Opens the data set <paramref name="name"/> ("mnist" or a toy set of <see cref="Toy2d.ValidNames"/>) on <paramref name="device"/>.</summary>
    /// <exception cref="ConfigException">The name is unknown; the message lists the valid ones.</exception>
    public static TrainingData Open(string name, MnistSplit split = MnistSplit.Train, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name == "mnist") return new TrainingData(null, Mnist.LoadBundled(split, device: device), device);
        try { return new TrainingData(Toy2d.Parse(name), null, device); }
        catch (ArgumentException e) { throw new ConfigException($"{e.Message}; or 'mnist' for the bundled MNIST subset"); }
    }

    /// <summary>The toy set, or null for MNIST.</summary>
    public Toy2dKind? Toy => _toy;

    /// <summary>The MNIST images and labels, or null for a toy set.</summary>
    public MnistDataSet? Images => _mnist;

    /// <summary>A batch and its labels (null for the toy sets), every random number from <paramref name="generator"/>.</summary>
    public (Tensor X, int[]? Labels) Batch(Generator generator, int size)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (_mnist is not null)
        {
            var b = _mnist.SampleBatch(generator, size);
            return (b.Images, b.Labels);
        }
        return (Toy2d.Batch(_toy!.Value, size, generator, _device), null);
    }

    /// <inheritdoc />
    public void Dispose() => _mnist?.Dispose();
}
