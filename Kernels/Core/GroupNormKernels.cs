namespace DiffusionCore.Kernels;

/// <summary>
/// Optional capability: fused group normalisation (Wu and He 2018), optionally followed by SiLU. Without it the Engine
/// normalises with reductions and elementwise ops (<c>Ops.GroupNormComposite</c>).
/// </summary>
public interface IGroupNormKernels
{
    /// <summary>
    /// Group normalisation of x[N, C, spatial], optionally followed by SiLU: per (n, group) block of C/groups channels,
    /// xhat = (x - mean) * rstd with rstd = 1/sqrt(biased variance + eps), then y = gamma[c] xhat + beta[c] (and
    /// y = y sigmoid(y) when <paramref name="fuseSilu"/>). Writes mean and rstd [N, groups] for
    /// <see cref="GroupNormBackward"/>. C must be a multiple of groups, spatial at least 1, N may be 0.
    /// </summary>
    void GroupNormForward(int batch, int channels, int spatial, int groups, double eps,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer y, DeviceBuffer mean, DeviceBuffer rstd, bool fuseSilu);

    /// <summary>
    /// Backward of <see cref="GroupNormForward"/> from the saved mean and rstd: dx[N, C, spatial], and dgamma[C],
    /// dbeta[C] summed over the batch (all overwritten; 0 when N = 0). With <paramref name="fuseSilu"/> the SiLU is
    /// differentiated too (its input recomputed from x, mean, rstd, gamma and beta). Outputs must not overlap the inputs.
    /// </summary>
    void GroupNormBackward(int batch, int channels, int spatial, int groups,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer mean, DeviceBuffer rstd,
        DeviceBuffer dy, DeviceBuffer dx, DeviceBuffer dgamma, DeviceBuffer dbeta, bool fuseSilu);
}

/// <summary>
/// The checked base of <see cref="IGroupNormKernels"/>: validates sizes (N &gt;= 0, C &gt;= 1 a multiple of groups
/// &gt;= 1, spatial &gt;= 1, eps &gt;= 0) and buffers, handles N = 0, and calls the backend's cores.
/// </summary>
public abstract class GroupNormKernels<TBuffer>(CheckedBackend<TBuffer> backend) : IGroupNormKernels where TBuffer : DeviceBuffer
{
    /// <inheritdoc />
    public void GroupNormForward(int batch, int channels, int spatial, int groups, double eps,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer y, DeviceBuffer mean, DeviceBuffer rstd, bool fuseSilu)
    {
        const string kernel = "GroupNormForward";
        string shape = Check(kernel, batch, channels, spatial, groups);
        if (!(eps >= 0) || double.IsInfinity(eps)) throw new KernelException(kernel, $"eps must be finite and >= 0, got {eps}");
        var bx = backend.Own(x, kernel); var bg = backend.Own(gamma, kernel); var bb = backend.Own(beta, kernel);
        var by = backend.Own(y, kernel); var bm = backend.Own(mean, kernel); var br = backend.Own(rstd, kernel);
        KernelChecks.SameType(kernel, bx, bg, bb, by, bm, br);
        long values = (long)batch * channels * spatial, stats = (long)batch * groups;
        KernelChecks.Length(kernel, "x", bx, values, shape);
        KernelChecks.Length(kernel, "gamma", bg, channels, shape);
        KernelChecks.Length(kernel, "beta", bb, channels, shape);
        KernelChecks.Length(kernel, "y", by, values, shape);
        KernelChecks.Length(kernel, "mean", bm, stats, shape);
        KernelChecks.Length(kernel, "rstd", br, stats, shape);
        KernelChecks.Distinct(kernel, [("y", by), ("mean", bm), ("rstd", br)], [("x", bx), ("gamma", bg), ("beta", bb)]);
        if (batch > 0) Forward(batch, channels, spatial, groups, eps, bx, bg, bb, by, bm, br, fuseSilu);
    }

    /// <inheritdoc />
    public void GroupNormBackward(int batch, int channels, int spatial, int groups,
        DeviceBuffer x, DeviceBuffer gamma, DeviceBuffer beta, DeviceBuffer mean, DeviceBuffer rstd,
        DeviceBuffer dy, DeviceBuffer dx, DeviceBuffer dgamma, DeviceBuffer dbeta, bool fuseSilu)
    {
        const string kernel = "GroupNormBackward";
        string shape = Check(kernel, batch, channels, spatial, groups);
        var bx = backend.Own(x, kernel); var bg = backend.Own(gamma, kernel); var bb = backend.Own(beta, kernel);
        var bm = backend.Own(mean, kernel); var br = backend.Own(rstd, kernel); var bdy = backend.Own(dy, kernel);
        var bdx = backend.Own(dx, kernel); var bdg = backend.Own(dgamma, kernel); var bdb = backend.Own(dbeta, kernel);
        KernelChecks.SameType(kernel, bx, bg, bb, bm, br, bdy, bdx, bdg, bdb);
        long values = (long)batch * channels * spatial, stats = (long)batch * groups;
        KernelChecks.Length(kernel, "x", bx, values, shape);
        KernelChecks.Length(kernel, "gamma", bg, channels, shape);
        KernelChecks.Length(kernel, "beta", bb, channels, shape);
        KernelChecks.Length(kernel, "mean", bm, stats, shape);
        KernelChecks.Length(kernel, "rstd", br, stats, shape);
        KernelChecks.Length(kernel, "dy", bdy, values, shape);
        KernelChecks.Length(kernel, "dx", bdx, values, shape);
        KernelChecks.Length(kernel, "dgamma", bdg, channels, shape);
        KernelChecks.Length(kernel, "dbeta", bdb, channels, shape);
        KernelChecks.Distinct(kernel, [("dx", bdx), ("dgamma", bdg), ("dbeta", bdb)],
            [("x", bx), ("gamma", bg), ("beta", bb), ("mean", bm), ("rstd", br), ("dy", bdy)]);
        if (batch > 0)
        {
            Backward(batch, channels, spatial, groups, bx, bg, bb, bm, br, bdy, bdx, bdg, bdb, fuseSilu);
            return;
        }
        // No sample: the parameter gradients are empty sums.
        backend.Fill(bdg, 0);
        backend.Fill(bdb, 0);
    }

    /// <summary>The forward pass; N is at least 1 and the buffers are checked.</summary>
    protected abstract void Forward(int batch, int channels, int spatial, int groups, double eps,
        TBuffer x, TBuffer gamma, TBuffer beta, TBuffer y, TBuffer mean, TBuffer rstd, bool fuseSilu);

    /// <summary>The backward pass; N is at least 1 and the buffers are checked.</summary>
    protected abstract void Backward(int batch, int channels, int spatial, int groups,
        TBuffer x, TBuffer gamma, TBuffer beta, TBuffer mean, TBuffer rstd, TBuffer dy, TBuffer dx, TBuffer dgamma, TBuffer dbeta, bool fuseSilu);

    private static string Check(string kernel, int batch, int channels, int spatial, int groups)
    {
        string shape = $"N={batch}, C={channels}, spatial={spatial}, groups={groups}";
        if (batch < 0 || channels < 1 || spatial < 1 || groups < 1)
            throw new KernelException(kernel, $"needs N >= 0, C >= 1, spatial >= 1, groups >= 1: {shape}");
        if (channels % groups != 0) throw new KernelException(kernel, $"C={channels} is not divisible into {groups} groups: {shape}");
        return shape;
    }
}
