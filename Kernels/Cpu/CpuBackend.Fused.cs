using System.Numerics;

namespace DiffusionCore.Kernels.Cpu;

// The fused sampler update and the Hutchinson per-sample dot product: plain loops split over the cores, the
// references of the ILGPU kernels (SamplerUpdateOp, ReduceIlgpu.RowDot).
public sealed partial class CpuBackend
{
    /// <inheritdoc />
    public void SamplerUpdate(DeviceBuffer x, DeviceBuffer eps, DeviceBuffer? z, long count, double a, double b, double c)
    {
        const string kernel = "SamplerUpdate";
        var (bx, be) = Pair(kernel, x, eps, count);
        var bz = z is null ? null : Own(z, kernel);
        if (bz is not null)
        {
            SameType(kernel, bx, bz);
            if (count > bz.Length) throw new KernelException(kernel, $"count {count} exceeds the noise buffer's {bz.Length} elements");
        }
        if (bx.DType == DType.Float32)
            SamplerUpdate(bx.Float32Array, be.Float32Array, bz?.Float32Array, count, (float)a, (float)b, (float)c);
        else
            SamplerUpdate(bx.Float64Array, be.Float64Array, bz?.Float64Array, count, a, b, c);
    }

    private static void SamplerUpdate<T>(T[] x, T[] eps, T[]? z, long count, T a, T b, T c) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(count, 1 << 15, (s, e) =>
        {
            if (z is null) for (long i = s; i < e; i++) x[i] = a * x[i] + b * eps[i];
            else for (long i = s; i < e; i++) x[i] = a * x[i] + b * eps[i] + c * z[i];
        });

    /// <inheritdoc />
    public void HutchinsonDot(DeviceBuffer probe, DeviceBuffer v, DeviceBuffer y, int batch, int length)
    {
        const string kernel = "HutchinsonDot";
        if (batch < 0 || length < 0) throw new KernelException(kernel, $"negative shape [{batch}, {length}]");
        var (bp, bv) = Pair(kernel, probe, v, (long)batch * length);
        var by = Own(y, kernel);
        SameType(kernel, bp, by);
        if (by.Length < batch) throw new KernelException(kernel, $"output holds {by.Length} elements, {batch} samples need {batch}");
        if (bp.DType == DType.Float32) RowDot(bp.Float32Array, bv.Float32Array, by.Float32Array, batch, length);
        else RowDot(bp.Float64Array, bv.Float64Array, by.Float64Array, batch, length);
    }

    private static void RowDot<T>(T[] a, T[] b, T[] y, int batch, int length) where T : unmanaged, IFloatingPointIeee754<T>
        => CpuParallel.For(batch, Math.Max(1, (1 << 15) / Math.Max(1, length)), (s, e) =>
        {
            for (long r = s; r < e; r++)
                y[r] = System.Numerics.Tensors.TensorPrimitives.Dot<T>(a.AsSpan((int)(r * length), length), b.AsSpan((int)(r * length), length));
        });
}
