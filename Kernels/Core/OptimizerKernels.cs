namespace DiffusionCore.Kernels;

/// <summary>
/// Optional capability: fused parameter updates, one pass over each buffer. Without it the Engine's optimizers and EMA
/// compute the same formulas with elementwise primitives (a few passes and temporaries per parameter).
/// </summary>
public interface IOptimizerKernels
{
    /// <summary>y[i] = alpha * x[i] + beta * y[i] (SGD, momentum and EMA updates).</summary>
    void Axpby(DeviceBuffer x, DeviceBuffer y, long count, double alpha, double beta);

    /// <summary>
    /// One Adam/AdamW step on a parameter buffer (Kingma and Ba 2015, Algorithm 1; Loshchilov and Hutter 2019 for the
    /// decoupled weight decay), moments m and v updated in place: g' = g + l2 p, m = b1 m + (1 - b1) g',
    /// v = b2 v + (1 - b2) g'², p = decay p - lr (m / c1) / (sqrt(v / c2) + eps), where decay = 1 - lr wd and l2 = 0
    /// for AdamW, decay = 1 and l2 = wd otherwise, and c1, c2 are the step's bias corrections.
    /// </summary>
    void AdamUpdate(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long count, AdamStep step);
}

/// <summary>The checked base of <see cref="IOptimizerKernels"/>: validates counts and buffers, returns at once for count 0.</summary>
public abstract class OptimizerKernels<TBuffer>(CheckedBackend<TBuffer> backend) : IOptimizerKernels where TBuffer : DeviceBuffer
{
    /// <inheritdoc />
    public void Axpby(DeviceBuffer x, DeviceBuffer y, long count, double alpha, double beta)
    {
        const string kernel = "Axpby";
        var bx = backend.Own(x, kernel); var by = backend.Own(y, kernel);
        KernelChecks.SameType(kernel, bx, by);
        KernelChecks.Count(kernel, count, ("x", bx), ("y", by));
        if (count > 0) Axpby(bx, by, count, alpha, beta);
    }

    /// <inheritdoc />
    public void AdamUpdate(DeviceBuffer param, DeviceBuffer grad, DeviceBuffer m, DeviceBuffer v, long count, AdamStep step)
    {
        const string kernel = "AdamUpdate";
        var bp = backend.Own(param, kernel); var bg = backend.Own(grad, kernel); var bm = backend.Own(m, kernel); var bv = backend.Own(v, kernel);
        KernelChecks.SameType(kernel, bp, bg, bm, bv);
        KernelChecks.Count(kernel, count, ("param", bp), ("grad", bg), ("m", bm), ("v", bv));
        KernelChecks.Distinct(kernel, [("param", bp), ("m", bm), ("v", bv)], [("grad", bg)]);
        if (count > 0) AdamUpdate(bp, bg, bm, bv, count, step);
    }

    /// <summary>The axpby update; count is at least 1 and the buffers are checked.</summary>
    protected abstract void Axpby(TBuffer x, TBuffer y, long count, double alpha, double beta);

    /// <summary>The Adam step; count is at least 1 and the buffers are checked.</summary>
    protected abstract void AdamUpdate(TBuffer param, TBuffer grad, TBuffer m, TBuffer v, long count, AdamStep step);
}
