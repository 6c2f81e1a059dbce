using DiffusionCore.Engine;

namespace DiffusionCore.Models.Processes;

/// <summary>Per-sample coefficients shaped to broadcast against a batch.</summary>
public static class PerSample
{
    /// <summary>
    /// A [B, 1, ..., 1] tensor (rank of <paramref name="like"/>) holding one value per batch entry, so that
    /// coefficient * x scales each sample of x by its own value.
    /// </summary>
    public static Tensor Column(double[] values, Tensor like)
    {
        if (like.Rank == 0 || like.Shape[0] != values.Length)
            throw new TensorException("PerSample", $"{values.Length} coefficients for a batch of shape {ShapeUtil.Format(like.Shape)}");
        var shape = new int[like.Rank];
        Array.Fill(shape, 1);
        shape[0] = values.Length;
        return Tensor.FromSpan<double>(values, shape, like.DType, like.Device);
    }

    /// <summary>Timestep indices as a float [B] tensor (what the networks' time embeddings take).</summary>
    public static Tensor Times(int[] steps, Tensor like) => Tensor.FromSpan<double>(steps.Select(s => (double)s).ToArray(), [steps.Length], like.DType, like.Device);
}
