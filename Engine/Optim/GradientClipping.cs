namespace DiffusionCore.Engine.Optim;

/// <summary>Gradient clipping by the global L2 norm over all parameters.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Scales every gradient by min(1, maxNorm / (norm + 1e-6)) where norm is the L2 norm of all gradients
    /// together; returns the norm before clipping (NaN or infinity pass through so the caller can stop).
    /// </summary>
    public static double ClipByGlobalNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        if (maxNorm <= 0) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "must be positive");
        var grads = parameters.Select(p => p.Grad).Where(g => g is not null).Select(g => g!).ToList();
        double sumSquares = 0;
        using (var scope = TensorScope.Begin())
        using (Autograd.NoGrad())
            foreach (var g in grads) sumSquares += Ops.Sum(Ops.Square(g)).Item();
        double norm = Math.Sqrt(sumSquares);
        if (!double.IsFinite(norm) || norm <= maxNorm) return norm;
        double scale = maxNorm / (norm + 1e-6);
        foreach (var g in grads) g.Device.Backend.Affine(g.Buffer, g.Buffer, g.Count, scale, 0.0);
        return norm;
    }
}
