using System.Globalization;
using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Models.Networks;

namespace DiffusionCore.Training.Evaluation;

/// <summary>
/// The weights of a <see cref="MnistClassifier"/> as a float32 safetensors file: one tensor per parameter under its
/// module path ("conv1.weight" ...), with "diffusioncore.format" = "mnist-classifier/1" and "classes" in the metadata,
/// besides whatever describes the run. The classifier trained by the project on the bundled MNIST split ships in this
/// assembly (<see cref="LoadBundled"/>), beside the data it was trained on.
/// </summary>
public static class MnistClassifierWeights
{
    /// <summary>The metadata key naming the file format (shared with the trainer's checkpoints).</summary>
    public const string FormatKey = "diffusioncore.format";

    /// <summary>The format this class reads and writes.</summary>
    public const string FormatVersion = "mnist-classifier/1";

    /// <summary>The metadata key holding the number of classes.</summary>
    public const string ClassesKey = "classes";

    /// <summary>Name of the bundled weights file in the repository (Training/Data/Mnist/) and of its resource.</summary>
    public const string BundledFileName = "classifier.safetensors";

    private const string ResourceName = "DiffusionCore.Training.Data.Mnist." + BundledFileName;

    /// <summary>Writes <paramref name="net"/>'s parameters and <paramref name="metadata"/> (plus the format and class count) atomically.</summary>
    public static void Save(string path, MnistClassifier net, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(net);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null)
            foreach (var (k, v) in metadata) meta[k] = v;
        meta[FormatKey] = FormatVersion;
        meta[ClassesKey] = net.Classes.ToString(CultureInfo.InvariantCulture);
        SafeTensors.Save(path, net.NamedParameters().Select(p => new KeyValuePair<string, SafeTensor>(p.Name, SafeTensor.FromTensor(p.Tensor))).ToList(), meta);
    }

    /// <summary>Loads a classifier written by <see cref="Save"/> from <paramref name="path"/>, in evaluation mode.</summary>
    /// <exception cref="SafeTensorsException">The file is not valid safetensors.</exception>
    /// <exception cref="InvalidDataException">The file is not a classifier of this architecture (format, class count, a missing, extra or misshapen tensor).</exception>
    public static MnistClassifier Load(string path, Device? device = null) => FromFile(SafeTensors.Load(path), device);

    /// <summary>
    /// The classifier trained by the project on the bundled 9,000-image MNIST training split (see
    /// Training/Data/Mnist/CLASSIFIER.md for the command, the log and its test accuracy), in evaluation mode.
    /// </summary>
    public static MnistClassifier LoadBundled(Device? device = null) => FromFile(ReadBundled(), device);

    /// <summary>The metadata of the bundled weights: the command that trained them, the data, the test accuracy.</summary>
    public static IReadOnlyDictionary<string, string> BundledMetadata() => ReadBundled().Metadata;

    private static SafeTensorsFile ReadBundled()
    {
        using var stream = typeof(MnistClassifierWeights).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"embedded resource '{ResourceName}' is missing from {typeof(MnistClassifierWeights).Assembly.GetName().Name} (see the EmbeddedResource items in Training.csproj)");
        return SafeTensors.Read(stream, ResourceName);
    }

    private static MnistClassifier FromFile(SafeTensorsFile file, Device? device)
    {
        if (!file.Metadata.TryGetValue(FormatKey, out var format) || format != FormatVersion)
            throw new InvalidDataException($"{file.Source}: not MNIST-classifier weights ('{FormatKey}' is '{format ?? "missing"}', expected '{FormatVersion}')");
        if (!file.Metadata.TryGetValue(ClassesKey, out var classesText) || !int.TryParse(classesText, NumberStyles.Integer, CultureInfo.InvariantCulture, out int classes) || classes < 2)
            throw new InvalidDataException($"{file.Source}: metadata '{ClassesKey}' is '{classesText ?? "missing"}', expected a class count >= 2");
        var net = new MnistClassifier(new Generator(0), classes, device: device);
        var named = net.NamedParameters().ToList();
        var problems = new List<string>();
        foreach (var (name, p) in named)
        {
            if (!file.Tensors.TryGetValue(name, out var saved)) problems.Add($"tensor '{name}' is missing");
            else if (saved.DType != SafeTensorsDType.F32) problems.Add($"tensor '{name}' is {saved.DType}, expected F32");
            else if (!ShapeUtil.Same(saved.Shape, p.Shape)) problems.Add($"tensor '{name}' has shape {ShapeUtil.Format(saved.Shape)}, the network's {ShapeUtil.Format(p.Shape)}");
        }
        var known = named.Select(n => n.Name).ToHashSet(StringComparer.Ordinal);
        problems.AddRange(file.Names.Where(n => !known.Contains(n)).Select(n => $"tensor '{n}' is not a parameter of MnistClassifier"));
        if (problems.Count > 0) throw new InvalidDataException($"{file.Source}: {string.Join("; ", problems)}");
        foreach (var (name, p) in named)
        {
            using var value = file.Tensors[name].ToTensor(p.Device);
            value.CopyTo(p);
        }
        net.SetTraining(false);
        return net;
    }
}
