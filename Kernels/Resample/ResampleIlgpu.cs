using System.Numerics;
using DiffusionCore.Kernels.Ilgpu;
using ILGPU;
using ILGPU.Runtime;

namespace DiffusionCore.Kernels.Resample;

/// <summary>
/// The U-Net's resampling kernels on NCHW buffers as ILGPU kernels, generic over float and double (so the float64
/// gradient checks can run on the accelerator too), with the meaning of <see cref="ResampleCpu"/>: nearest x2
/// upsampling and k x k average pooling with stride k, each with its backward. One thread per output element; each
/// backward is a gather (every input element sums the outputs that read it), so no atomics and no zeroing pass.
/// </summary>
internal static class ResampleIlgpu
{
    /// <summary>y[p, i, j] = x[p, i / 2, j / 2] over planes p, y of [planes, 2H, 2W].</summary>
    [IlgpuKernel]
    internal static void UpsampleKernel<T>(Index1D index, ResampleDims d, ArrayView<T> x, ArrayView<T> y)
        where T : unmanaged, INumber<T>
    {
        int w2 = 2 * d.Width, outPlane = 2 * d.Height * w2;
        int p = index / outPlane, rem = index - p * outPlane, i = rem / w2, j = rem - i * w2;
        y[index] = x[(p * d.Height + i / 2) * d.Width + j / 2];
    }

    /// <summary>dx[p, i, j] = Σ_{a, b ∈ {0, 1}} dy[p, 2i + a, 2j + b], summed as the two rows first (as ResampleCpu).</summary>
    [IlgpuKernel]
    internal static void UpsampleBackwardKernel<T>(Index1D index, ResampleDims d, ArrayView<T> dy, ArrayView<T> dx)
        where T : unmanaged, INumber<T>
    {
        int plane = d.Height * d.Width, w2 = 2 * d.Width;
        int p = index / plane, rem = index - p * plane, i = rem / d.Width, j = rem - i * d.Width;
        int top = (p * 2 * d.Height + 2 * i) * w2 + 2 * j, bottom = top + w2;
        dx[index] = (dy[top] + dy[bottom]) + (dy[top + 1] + dy[bottom + 1]);
    }

    /// <summary>y[p, i, j] = invArea Σ_{a, b &lt; k} x[p, k i + a, k j + b], y of [planes, H / k, W / k].</summary>
    [IlgpuKernel]
    internal static void AvgPoolKernel<T>(Index1D index, ResampleDims d, int k, T invArea, ArrayView<T> x, ArrayView<T> y)
        where T : unmanaged, INumber<T>
    {
        int oh = d.Height / k, ow = d.Width / k, outPlane = oh * ow;
        int p = index / outPlane, rem = index - p * outPlane, i = rem / ow, j = rem - i * ow;
        int corner = (p * d.Height + k * i) * d.Width + k * j;
        T sum = T.Zero;
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                sum += x[corner + a * d.Width + b];
        y[index] = sum * invArea;
    }

    /// <summary>dx[p, h, w] = dy[p, h / k, w / k] invArea.</summary>
    [IlgpuKernel]
    internal static void AvgPoolBackwardKernel<T>(Index1D index, ResampleDims d, int k, T invArea, ArrayView<T> dy, ArrayView<T> dx)
        where T : unmanaged, INumber<T>
    {
        int plane = d.Height * d.Width, oh = d.Height / k, ow = d.Width / k;
        int p = index / plane, rem = index - p * plane, h = rem / d.Width, w = rem - h * d.Width;
        dx[index] = dy[(p * oh + h / k) * ow + w / k] * invArea;
    }

    /// <summary>
    /// Kernels of one accelerator, loaded once per element type (float at construction, double on first use), with
    /// launchers that check their arguments as <see cref="ResampleCpu"/> does.
    /// </summary>
    internal sealed class Kernels
    {
        private readonly Set<float> _float;
        private readonly Lazy<Set<double>> _double;

        /// <summary>Compiles the float32 kernels for <paramref name="accelerator"/> (float64 ones on first use).</summary>
        public Kernels(Accelerator accelerator) : this(new IlgpuKernelCache(accelerator))
        {
        }

        /// <summary>
        /// Compiles the float32 kernels through <paramref name="cache"/> (an <see cref="IlgpuBackend"/>'s, which records
        /// the compile times), float64 ones on first use.
        /// </summary>
        public Kernels(IlgpuKernelCache cache)
        {
            _float = new Set<float>(cache);
            _double = new Lazy<Set<double>>(() => new Set<double>(cache));
        }

        /// <summary>y = nearest x2 upsampling of x[N, C, H, W] into y[N, C, 2H, 2W].</summary>
        public void UpsampleNearest2x<T>(AcceleratorStream stream, int batch, int channels, int height, int width, ArrayView<T> x, ArrayView<T> y)
            where T : unmanaged, INumber<T>
        {
            const string op = "UpsampleNearest2x";
            var d = Check(op, batch, channels, height, width, 1);
            long inputs = (long)d.Planes * height * width;
            Require(op, "x", x, inputs, d);
            Require(op, "y", y, 4 * inputs, d);
            if (inputs > 0) Get<T>().Upsample(stream, (int)(4 * inputs), d, x, y);
        }

        /// <summary>dx[N, C, H, W] (overwritten) = adjoint of <see cref="UpsampleNearest2x{T}"/> applied to dy[N, C, 2H, 2W].</summary>
        public void UpsampleNearest2xBackward<T>(AcceleratorStream stream, int batch, int channels, int height, int width, ArrayView<T> dy, ArrayView<T> dx)
            where T : unmanaged, INumber<T>
        {
            const string op = "UpsampleNearest2xBackward";
            var d = Check(op, batch, channels, height, width, 1);
            long inputs = (long)d.Planes * height * width;
            Require(op, "dy", dy, 4 * inputs, d);
            Require(op, "dx", dx, inputs, d);
            if (inputs > 0) Get<T>().UpsampleBackward(stream, (int)inputs, d, dy, dx);
        }

        /// <summary>y[N, C, H/k, W/k] = k x k average pooling (stride k) of x[N, C, H, W].</summary>
        public void AvgPool2d<T>(AcceleratorStream stream, int batch, int channels, int height, int width, int k, ArrayView<T> x, ArrayView<T> y)
            where T : unmanaged, INumber<T>
        {
            const string op = "AvgPool";
            var d = Check(op, batch, channels, height, width, k);
            long inputs = (long)d.Planes * height * width, outputs = inputs / ((long)k * k);
            Require(op, "x", x, inputs, d);
            Require(op, "y", y, outputs, d);
            if (outputs > 0) Get<T>().AvgPool(stream, (int)outputs, d, k, T.One / T.CreateTruncating(k * k), x, y);
        }

        /// <summary>dx[N, C, H, W] (overwritten) = adjoint of <see cref="AvgPool2d{T}"/> applied to dy[N, C, H/k, W/k].</summary>
        public void AvgPool2dBackward<T>(AcceleratorStream stream, int batch, int channels, int height, int width, int k, ArrayView<T> dy, ArrayView<T> dx)
            where T : unmanaged, INumber<T>
        {
            const string op = "AvgPoolBackward";
            var d = Check(op, batch, channels, height, width, k);
            long inputs = (long)d.Planes * height * width, outputs = inputs / ((long)k * k);
            Require(op, "dy", dy, outputs, d);
            Require(op, "dx", dx, inputs, d);
            if (inputs > 0) Get<T>().AvgPoolBackward(stream, (int)inputs, d, k, T.One / T.CreateTruncating(k * k), dy, dx);
        }

        private Set<T> Get<T>() where T : unmanaged, INumber<T>
        {
            if (typeof(T) == typeof(float)) return (Set<T>)(object)_float;
            if (typeof(T) == typeof(double)) return (Set<T>)(object)_double.Value;
            throw new KernelException("Resample", $"element type {typeof(T).Name} is not supported (float or double)");
        }

        private static ResampleDims Check(string op, int batch, int channels, int height, int width, int k)
        {
            if (batch < 0 || channels < 0 || height < 0 || width < 0)
                throw new KernelException(op, $"negative shape N={batch}, C={channels}, H={height}, W={width}");
            if (k < 1) throw new KernelException(op, $"window k must be >= 1, got {k}");
            if (height % k != 0 || width % k != 0)
                throw new KernelException(op, $"H={height} and W={width} must be multiples of k={k}");
            if (4L * batch * channels * height * width > int.MaxValue)
                throw new KernelException(op, $"N={batch}, C={channels}, H={height}, W={width}: the upsampled size exceeds {int.MaxValue} (32-bit indexing)");
            return new ResampleDims(batch, channels, height, width);
        }

        private static void Require<T>(string op, string name, ArrayView<T> view, long needed, ResampleDims d) where T : unmanaged =>
            ImageTilesIlgpu.RequireLength(op, name, view, needed, d.ToString());
    }

    /// <summary>The four kernels for one element type.</summary>
    private sealed class Set<T>(IlgpuKernelCache cache) where T : unmanaged, INumber<T>
    {
        /// <summary>Launcher of <see cref="UpsampleKernel{T}"/>.</summary>
        public readonly Action<AcceleratorStream, Index1D, ResampleDims, ArrayView<T>, ArrayView<T>> Upsample =
            cache.Get<Action<AcceleratorStream, Index1D, ResampleDims, ArrayView<T>, ArrayView<T>>>(UpsampleKernel<T>);

        /// <summary>Launcher of <see cref="UpsampleBackwardKernel{T}"/>.</summary>
        public readonly Action<AcceleratorStream, Index1D, ResampleDims, ArrayView<T>, ArrayView<T>> UpsampleBackward =
            cache.Get<Action<AcceleratorStream, Index1D, ResampleDims, ArrayView<T>, ArrayView<T>>>(UpsampleBackwardKernel<T>);

        /// <summary>Launcher of <see cref="AvgPoolKernel{T}"/>.</summary>
        public readonly Action<AcceleratorStream, Index1D, ResampleDims, int, T, ArrayView<T>, ArrayView<T>> AvgPool =
            cache.Get<Action<AcceleratorStream, Index1D, ResampleDims, int, T, ArrayView<T>, ArrayView<T>>>(AvgPoolKernel<T>);

        /// <summary>Launcher of <see cref="AvgPoolBackwardKernel{T}"/>.</summary>
        public readonly Action<AcceleratorStream, Index1D, ResampleDims, int, T, ArrayView<T>, ArrayView<T>> AvgPoolBackward =
            cache.Get<Action<AcceleratorStream, Index1D, ResampleDims, int, T, ArrayView<T>, ArrayView<T>>>(AvgPoolBackwardKernel<T>);
    }
}

/// <summary>Sizes of a resampling launch: N x C planes of H x W (the forward input).</summary>
/// <param name="Batch">N.</param>
/// <param name="Channels">C.</param>
/// <param name="Height">H of the forward input.</param>
/// <param name="Width">W of the forward input.</param>
internal readonly record struct ResampleDims(int Batch, int Channels, int Height, int Width)
{
    /// <summary>N C, the number of planes.</summary>
    public int Planes => Batch * Channels;

    /// <inheritdoc/>
    public override string ToString() => $"N={Batch}, C={Channels}, H={Height}, W={Width}";
}
