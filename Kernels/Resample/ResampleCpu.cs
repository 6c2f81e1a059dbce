using System.Numerics;
using System.Numerics.Tensors;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Resample;

/// <summary>
/// Resampling kernels of the U-Net on NCHW tensors, generic over float and double: nearest-neighbour x2
/// upsampling and k x k average pooling with stride k, each with its backward. Work is split over the
/// N*C planes.
/// </summary>
public static class ResampleCpu
{
    /// <summary>Minimum elements per parallel task, so that tiny problems are not split.</summary>
    private const int MinElementsPerTask = 1 << 14;

    /// <summary>Upper bound on a row held in a stack scratch buffer; wider rows use a heap array.</summary>
    private const int StackRowLimit = 1024;

    /// <summary>Nearest-neighbour x2 upsampling: y[n, c, i, j] = x[n, c, i/2, j/2], x[N,C,H,W] to y[N,C,2H,2W].</summary>
    /// <param name="batch">N.</param>
    /// <param name="channels">C.</param>
    /// <param name="height">H of the input.</param>
    /// <param name="width">W of the input.</param>
    /// <param name="x">Input x[N, C, H, W].</param>
    /// <param name="y">Output y[N, C, 2H, 2W].</param>
    public static unsafe void UpsampleNearest2x<T>(int batch, int channels, int height, int width, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string name = "UpsampleNearest2x";
        long planes = CheckPlanes(name, batch, channels, height, width);
        long inPlane = (long)height * width, outPlane = 4 * inPlane;
        CheckLength(name, "x", x.Length, planes * inPlane, batch, channels, height, width);
        CheckLength(name, "y", y.Length, planes * outPlane, batch, channels, height, width);
        fixed (T* px0 = x, py0 = y)
        {
            T* px = px0, py = py0;
            CpuParallel.For(planes, Math.Max(1, MinElementsPerTask / Math.Max(1, outPlane)), (s, e) =>
            {
                int w2 = 2 * width;
                for (long p = s; p < e; p++)
                {
                    for (int i = 0; i < height; i++)
                    {
                        T* src = px + p * inPlane + (long)i * width;
                        T* dst = py + p * outPlane + 2L * i * w2;
                        for (int j = 0; j < width; j++)
                        {
                            T v = src[j];
                            dst[2 * j] = v;
                            dst[2 * j + 1] = v;
                        }
                        new ReadOnlySpan<T>(dst, w2).CopyTo(new Span<T>(dst + w2, w2));
                    }
                }
            });
        }
    }

    /// <summary>
    /// Backward of <see cref="UpsampleNearest2x{T}"/>: dx[n, c, i, j] is the sum of the four dy values
    /// dy[n, c, 2i + a, 2j + b], a, b in {0, 1}, that copied x[n, c, i, j].
    /// </summary>
    /// <param name="batch">N.</param>
    /// <param name="channels">C.</param>
    /// <param name="height">H of the forward input.</param>
    /// <param name="width">W of the forward input.</param>
    /// <param name="dy">Gradient w.r.t. the output, [N, C, 2H, 2W].</param>
    /// <param name="dx">Output gradient w.r.t. the input, [N, C, H, W] (overwritten).</param>
    public static unsafe void UpsampleNearest2xBackward<T>(int batch, int channels, int height, int width, ReadOnlySpan<T> dy, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string name = "UpsampleNearest2xBackward";
        long planes = CheckPlanes(name, batch, channels, height, width);
        long inPlane = (long)height * width, outPlane = 4 * inPlane;
        CheckLength(name, "dy", dy.Length, planes * outPlane, batch, channels, height, width);
        CheckLength(name, "dx", dx.Length, planes * inPlane, batch, channels, height, width);
        fixed (T* pdy0 = dy, pdx0 = dx)
        {
            T* pdy = pdy0, pdx = pdx0;
            CpuParallel.For(planes, Math.Max(1, MinElementsPerTask / Math.Max(1, outPlane)), (s, e) =>
            {
                int w2 = 2 * width;
                T[]? heapRow = w2 > StackRowLimit ? new T[w2] : null;
                Span<T> rowSum = heapRow is null ? stackalloc T[w2] : heapRow;
                for (long p = s; p < e; p++)
                {
                    for (int i = 0; i < height; i++)
                    {
                        T* top = pdy + p * outPlane + 2L * i * w2;
                        // Sum the two output rows first (one SIMD pass), then the horizontal pairs.
                        TensorPrimitives.Add(new ReadOnlySpan<T>(top, w2), new ReadOnlySpan<T>(top + w2, w2), rowSum);
                        T* dst = pdx + p * inPlane + (long)i * width;
                        for (int j = 0; j < width; j++) dst[j] = rowSum[2 * j] + rowSum[2 * j + 1];
                    }
                }
            });
        }
    }

    /// <summary>
    /// Average pooling with a k x k window and stride k: y[n, c, i, j] = (1/k^2) sum_{a,b &lt; k} x[n, c, k*i + a, k*j + b],
    /// x[N,C,H,W] to y[N,C,H/k,W/k]; H and W must be multiples of k.
    /// </summary>
    /// <param name="batch">N.</param>
    /// <param name="channels">C.</param>
    /// <param name="height">H of the input.</param>
    /// <param name="width">W of the input.</param>
    /// <param name="k">Window size and stride.</param>
    /// <param name="x">Input x[N, C, H, W].</param>
    /// <param name="y">Output y[N, C, H/k, W/k].</param>
    public static unsafe void AvgPool<T>(int batch, int channels, int height, int width, int k, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string name = "AvgPool";
        long planes = CheckPlanes(name, batch, channels, height, width);
        CheckWindow(name, height, width, k);
        int oh = height / k, ow = width / k;
        long inPlane = (long)height * width, outPlane = (long)oh * ow;
        CheckLength(name, "x", x.Length, planes * inPlane, batch, channels, height, width);
        CheckLength(name, "y", y.Length, planes * outPlane, batch, channels, height, width);
        T invArea = T.One / T.CreateTruncating(k * k);
        fixed (T* px0 = x, py0 = y)
        {
            T* px = px0, py = py0;
            CpuParallel.For(planes, Math.Max(1, MinElementsPerTask / Math.Max(1, inPlane)), (s, e) =>
            {
                T[]? heapRow = width > StackRowLimit ? new T[width] : null;
                Span<T> rowSum = heapRow is null ? stackalloc T[width] : heapRow;
                for (long p = s; p < e; p++)
                {
                    for (int i = 0; i < oh; i++)
                    {
                        // Sum the k input rows of the window (SIMD), then the k-wide horizontal runs.
                        T* src = px + p * inPlane + (long)i * k * width;
                        new ReadOnlySpan<T>(src, width).CopyTo(rowSum);
                        for (int a = 1; a < k; a++)
                            TensorPrimitives.Add(rowSum, new ReadOnlySpan<T>(src + (long)a * width, width), rowSum);
                        T* dst = py + p * outPlane + (long)i * ow;
                        for (int j = 0; j < ow; j++)
                        {
                            T acc = T.Zero;
                            for (int b = 0; b < k; b++) acc += rowSum[j * k + b];
                            dst[j] = acc * invArea;
                        }
                    }
                }
            });
        }
    }

    /// <summary>
    /// Backward of <see cref="AvgPool{T}"/>: every input of a window receives dy/k^2 of its output,
    /// dx[n, c, h, w] = dy[n, c, h/k, w/k] / k^2.
    /// </summary>
    /// <param name="batch">N.</param>
    /// <param name="channels">C.</param>
    /// <param name="height">H of the forward input.</param>
    /// <param name="width">W of the forward input.</param>
    /// <param name="k">Window size and stride.</param>
    /// <param name="dy">Gradient w.r.t. the output, [N, C, H/k, W/k].</param>
    /// <param name="dx">Output gradient w.r.t. the input, [N, C, H, W] (overwritten).</param>
    public static unsafe void AvgPoolBackward<T>(int batch, int channels, int height, int width, int k, ReadOnlySpan<T> dy, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        const string name = "AvgPoolBackward";
        long planes = CheckPlanes(name, batch, channels, height, width);
        CheckWindow(name, height, width, k);
        int oh = height / k, ow = width / k;
        long inPlane = (long)height * width, outPlane = (long)oh * ow;
        CheckLength(name, "dy", dy.Length, planes * outPlane, batch, channels, height, width);
        CheckLength(name, "dx", dx.Length, planes * inPlane, batch, channels, height, width);
        T invArea = T.One / T.CreateTruncating(k * k);
        fixed (T* pdy0 = dy, pdx0 = dx)
        {
            T* pdy = pdy0, pdx = pdx0;
            CpuParallel.For(planes, Math.Max(1, MinElementsPerTask / Math.Max(1, inPlane)), (s, e) =>
            {
                for (long p = s; p < e; p++)
                {
                    for (int i = 0; i < oh; i++)
                    {
                        // Build the first of the k identical input rows, then copy it to the other k-1.
                        T* src = pdy + p * outPlane + (long)i * ow;
                        T* first = pdx + p * inPlane + (long)i * k * width;
                        for (int j = 0; j < ow; j++)
                        {
                            T v = src[j] * invArea;
                            for (int b = 0; b < k; b++) first[j * k + b] = v;
                        }
                        for (int a = 1; a < k; a++)
                            new ReadOnlySpan<T>(first, width).CopyTo(new Span<T>(first + (long)a * width, width));
                    }
                }
            });
        }
    }

    private static long CheckPlanes(string name, int batch, int channels, int height, int width)
    {
        if (batch < 0 || channels < 0 || height < 0 || width < 0)
            throw new KernelException(name, $"negative shape N={batch}, C={channels}, H={height}, W={width}");
        return (long)batch * channels;
    }

    private static void CheckWindow(string name, int height, int width, int k)
    {
        if (k < 1) throw new KernelException(name, $"window k must be >= 1, got {k}");
        if (height % k != 0 || width % k != 0)
            throw new KernelException(name, $"H={height} and W={width} must be multiples of k={k}");
    }

    private static void CheckLength(string name, string buffer, int actual, long expected, int batch, int channels, int height, int width)
    {
        if (actual < expected)
            throw new KernelException(name, $"{buffer} has {actual} elements, needs {expected} for N={batch}, C={channels}, H={height}, W={width}");
    }
}
