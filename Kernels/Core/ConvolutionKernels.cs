using DiffusionCore.Kernels.Conv;

namespace DiffusionCore.Kernels;

/// <summary>
/// Optional capability: fused 2-D convolution over contiguous NCHW buffers laid out as a <see cref="Conv2dShape"/>
/// describes. Without it the Engine convolves by im2col (<c>Ops.Unfold2d</c>, strided copies) and GEMM.
/// </summary>
public interface IConvolutionKernels
{
    /// <summary>
    /// y[N, Cout, OutH, OutW] = conv2d(x[N, Cin, H, W], w[Cout, Cin, KH, KW]) + bias[Cout], zero padding, one stride on
    /// both axes. <paramref name="bias"/> may be null (no bias). y must not overlap the inputs. N may be 0.
    /// </summary>
    void Conv2dForward(Conv2dShape shape, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y);

    /// <summary>
    /// Input gradient of <see cref="Conv2dForward"/>: dx[N, Cin, H, W] = ∂L/∂x given dy[N, Cout, OutH, OutW]
    /// (the adjoint of the convolution in x; overwritten). dx must not overlap the inputs.
    /// </summary>
    void Conv2dBackwardInput(Conv2dShape shape, DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx);

    /// <summary>
    /// Weight gradient of <see cref="Conv2dForward"/>: dw[Cout, Cin, KH, KW] = ∂L/∂w given x and dy (overwritten), and
    /// db[Cout] = Σ_{n, oh, ow} dy when <paramref name="db"/> is not null. Outputs must not overlap the inputs. With
    /// N = 0 both are 0.
    /// </summary>
    void Conv2dBackwardWeight(Conv2dShape shape, DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? db);
}

/// <summary>
/// The checked base of <see cref="IConvolutionKernels"/>: validates the shape (N may be 0, every other size positive,
/// the kernel inside the padded input) and the buffers (owned, live, one dtype, long enough, outputs apart from
/// inputs), handles N = 0, and calls the backend's cores.
/// </summary>
public abstract class ConvolutionKernels<TBuffer>(CheckedBackend<TBuffer> backend) : IConvolutionKernels where TBuffer : DeviceBuffer
{
    /// <inheritdoc />
    public void Conv2dForward(Conv2dShape shape, DeviceBuffer x, DeviceBuffer w, DeviceBuffer? bias, DeviceBuffer y)
    {
        const string kernel = "Conv2dForward";
        Check(kernel, shape);
        var bx = backend.Own(x, kernel); var bw = backend.Own(w, kernel); var bb = backend.OwnOptional(bias, kernel); var by = backend.Own(y, kernel);
        KernelChecks.SameType(kernel, bx, bw, bb, by);
        Lengths(kernel, shape, ("x", bx, shape.InputLength), ("w", bw, shape.WeightLength), ("bias", bb, shape.Cout), ("y", by, shape.OutputLength));
        KernelChecks.Distinct(kernel, [("y", by)], [("x", bx), ("w", bw), ("bias", bb)]);
        if (shape.N > 0) Forward(shape, bx, bw, bb, by);
    }

    /// <inheritdoc />
    public void Conv2dBackwardInput(Conv2dShape shape, DeviceBuffer dy, DeviceBuffer w, DeviceBuffer dx)
    {
        const string kernel = "Conv2dBackwardInput";
        Check(kernel, shape);
        var bdy = backend.Own(dy, kernel); var bw = backend.Own(w, kernel); var bdx = backend.Own(dx, kernel);
        KernelChecks.SameType(kernel, bdy, bw, bdx);
        Lengths(kernel, shape, ("dy", bdy, shape.OutputLength), ("w", bw, shape.WeightLength), ("dx", bdx, shape.InputLength));
        KernelChecks.Distinct(kernel, [("dx", bdx)], [("dy", bdy), ("w", bw)]);
        if (shape.N > 0) BackwardInput(shape, bdy, bw, bdx);
    }

    /// <inheritdoc />
    public void Conv2dBackwardWeight(Conv2dShape shape, DeviceBuffer x, DeviceBuffer dy, DeviceBuffer dw, DeviceBuffer? db)
    {
        const string kernel = "Conv2dBackwardWeight";
        Check(kernel, shape);
        var bx = backend.Own(x, kernel); var bdy = backend.Own(dy, kernel); var bdw = backend.Own(dw, kernel); var bdb = backend.OwnOptional(db, kernel);
        KernelChecks.SameType(kernel, bx, bdy, bdw, bdb);
        Lengths(kernel, shape, ("x", bx, shape.InputLength), ("dy", bdy, shape.OutputLength), ("dw", bdw, shape.WeightLength), ("db", bdb, shape.Cout));
        KernelChecks.Distinct(kernel, [("dw", bdw), ("db", bdb)], [("x", bx), ("dy", bdy)]);
        if (shape.N > 0)
        {
            BackwardWeight(shape, bx, bdy, bdw, bdb);
            return;
        }
        // No sample: the gradients are empty sums.
        backend.Fill(bdw, 0);
        if (bdb is not null) backend.Fill(bdb, 0);
    }

    /// <summary>The forward pass; N is at least 1 and the buffers are checked.</summary>
    protected abstract void Forward(Conv2dShape shape, TBuffer x, TBuffer w, TBuffer? bias, TBuffer y);

    /// <summary>The input gradient; N is at least 1 and the buffers are checked.</summary>
    protected abstract void BackwardInput(Conv2dShape shape, TBuffer dy, TBuffer w, TBuffer dx);

    /// <summary>The weight (and bias) gradient; N is at least 1 and the buffers are checked.</summary>
    protected abstract void BackwardWeight(Conv2dShape shape, TBuffer x, TBuffer dy, TBuffer dw, TBuffer? db);

    private static void Check(string kernel, Conv2dShape s)
    {
        if (s.N < 0 || s.Cin <= 0 || s.H <= 0 || s.W <= 0 || s.Cout <= 0 || s.KH <= 0 || s.KW <= 0 || s.Stride <= 0 || s.Pad < 0)
            throw new KernelException(kernel, $"needs N >= 0, positive channels, image, kernel and stride, padding >= 0: {s}");
        if (s.KH > s.H + 2 * s.Pad || s.KW > s.W + 2 * s.Pad)
            throw new KernelException(kernel, $"kernel {s.KH}x{s.KW} is larger than the padded input {s.H + 2 * s.Pad}x{s.W + 2 * s.Pad}: {s}");
    }

    private static void Lengths(string kernel, Conv2dShape s, params (string Name, DeviceBuffer? Buffer, long Needed)[] buffers)
    {
        foreach (var (name, buffer, needed) in buffers)
            if (buffer is not null) KernelChecks.Length(kernel, name, buffer, needed, s.ToString());
    }
}
