using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Nn;

/// <summary>
/// A learned embedding of class labels with one extra row for "no label" (<see cref="NullLabel"/> = numClasses), the
/// null token of classifier-free guidance (Ho and Salimans 2022): one network learns p(x | y) and p(x) by training
/// with labels randomly replaced by the null label. The table "weight" is [numClasses + 1, dim], initialised
/// N(0, 1) like PyTorch's nn.Embedding.
/// </summary>
public sealed class ClassEmbedding : Module
{
    /// <summary>Creates the table for <paramref name="numClasses"/> classes plus the null label.</summary>
    public ClassEmbedding(int numClasses, int dim, Generator generator, Device? device = null, DType dtype = DType.Float32)
    {
        if (numClasses <= 0 || dim <= 0) throw new ArgumentOutOfRangeException(nameof(numClasses), $"ClassEmbedding({numClasses} classes, width {dim}) needs positive sizes");
        NumClasses = numClasses;
        Dim = dim;
        Weight = AddParameter("weight", Precision.To(generator.Normal([numClasses + 1, dim], DType.Float32, device), dtype));
    }

    /// <summary>Number of real classes (labels 0 .. NumClasses - 1).</summary>
    public int NumClasses { get; }

    /// <summary>Width of an embedding.</summary>
    public int Dim { get; }

    /// <summary>The label meaning "no label" (the last row of the table).</summary>
    public int NullLabel => NumClasses;

    /// <summary>[numClasses + 1, dim] table.</summary>
    public Tensor Weight { get; }

    /// <summary>
    /// The rows of <paramref name="labels"/> (each in [0, NumClasses], NumClasses meaning no label) as [B, dim],
    /// computed as onehot(labels) · Weight so that the lookup is an ordinary differentiable op (the gradient of
    /// the table is onehotᵀ · upstream, which adds each sample's gradient to its row).
    /// </summary>
    public Tensor Forward(int[] labels)
    {
        int rows = NumClasses + 1;
        var oneHot = new double[labels.Length * rows];
        for (int i = 0; i < labels.Length; i++)
        {
            int y = labels[i];
            if (y < 0 || y > NumClasses)
                throw new ArgumentOutOfRangeException(nameof(labels), y, $"ClassEmbedding: label {i} is {y}, outside [0, {NumClasses}] ({NumClasses} = no label)");
            oneHot[i * rows + y] = 1.0;
        }
        var h = Tensor.FromSpan<double>(oneHot, [labels.Length, rows], Weight.DType, Weight.Device);
        return Ops.MatMul(h, Weight);
    }
}
