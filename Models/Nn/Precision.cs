using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Nn;

/// <summary>Conversion of freshly initialised parameters to a layer's element type.</summary>
internal static class Precision
{
    /// <summary>
    /// <paramref name="tensor"/> in <paramref name="dtype"/> (itself when it already is; else a copy, and the original is
    /// freed). Initialisers draw in float32, so a float64 layer (for gradient checks) holds exactly the float32 layer's values.
    /// </summary>
    public static Tensor To(Tensor tensor, DType dtype)
    {
        if (tensor.DType == dtype) return tensor;
        using (Autograd.NoGrad())
        {
            var converted = Ops.Cast(tensor, dtype);
            tensor.Dispose();
            return converted;
        }
    }
}
