using System.Runtime.Intrinsics;
using DiffusionCore.Kernels.Cpu;

namespace DiffusionCore.Kernels.Conv;

/// <summary>
/// The input of a direct convolution laid out so that every tap of every output position is one fixed offset:
/// the planes of one image, zero-padded, and split by stride phase,
/// G[c, ph, pw, a, b] = Xpad[c, S a + ph, S b + pw] with Xpad[c, r, col] = X[c, r - PadTop, col - PadLeft] (zero
/// outside X; a negative pad crops). An output position (oh, ow) of a stride-S convolution is the flat index
/// q = oh Wq + ow of a phase plane, and its tap (kh, kw) reads G at
/// q + ((c S + kh mod S) S + kw mod S) Hq Wq + (kh div S) Wq + kw div S (the polyphase decomposition: a
/// stride-S convolution is a sum of S² stride-1 ones over the phase planes). The positions ow in [OW, Wq) of each
/// row are computed and dropped; a zero guard after the last plane keeps the reads of the last vectors in bounds.
/// </summary>
internal readonly unsafe struct ConvGrid
{
    /// <summary>Channels (planes) of the image.</summary>
    public readonly int Channels;

    /// <summary>Stride S: the grid holds S x S phases per channel.</summary>
    public readonly int Stride;

    /// <summary>Size of one input plane.</summary>
    public readonly int H, W;

    /// <summary>Zero rows above and columns left of the input (negative: rows or columns cropped).</summary>
    public readonly int PadTop, PadLeft;

    /// <summary>Rows and columns of one phase plane.</summary>
    public readonly int Hq, Wq;

    /// <summary>Floats of one phase plane (Hq Wq) and of one channel (S² phase planes).</summary>
    public readonly int PhaseFloats, ChannelFloats;

    /// <summary>Floats of the whole grid of one image, the zero guard included (a multiple of 16).</summary>
    public readonly int Floats;

    /// <summary>A grid of <paramref name="hq"/> x <paramref name="wq"/> phase planes with <paramref name="guard"/> zeros after them.</summary>
    public ConvGrid(int channels, int h, int w, int stride, int padTop, int padLeft, int hq, int wq, int guard)
    {
        Channels = channels;
        Stride = stride;
        H = h;
        W = w;
        PadTop = padTop;
        PadLeft = padLeft;
        Hq = hq;
        Wq = wq;
        long phase = (long)hq * wq, channel = phase * stride * stride, floats = (channel * channels + Math.Max(0, guard) + 15) / 16 * 16;
        if (floats > int.MaxValue) throw new KernelException("Conv2d", $"the input grid of one image ({floats} floats) exceeds {int.MaxValue}");
        PhaseFloats = (int)phase;
        ChannelFloats = (int)channel;
        Floats = (int)floats;
    }

    /// <summary>Offset in the grid of tap (kh, kw) of channel c for output position 0.</summary>
    public int TapOffset(int c, int kh, int kw)
    {
        int s = Stride;
        return c * ChannelFloats + (kh % s * s + kw % s) * PhaseFloats + kh / s * Wq + kw / s;
    }

    /// <summary>
    /// Fills channels [c0, c1) of the grid <paramref name="grid"/> from the planes [c][H][W] at
    /// <paramref name="image"/>; the call that fills the last channel also zeroes the guard.
    /// </summary>
    public void Fill<S, TV>(float* image, float* grid, int c0, int c1, in PointerRange<float> gridRange)
        where S : IConvSimd<TV> where TV : struct
    {
        // The padded row of the strided split lives on the stack (heap for rows wider than 16K floats).
        const int StackFloats = 1 << 14;
        int s = Stride;
        var heapRow = PaddedRowFloats > StackFloats ? new float[PaddedRowFloats] : null;
        float* stackRow = stackalloc float[heapRow == null && s > 1 ? PaddedRowFloats : 1];
        fixed (float* heapPointer = heapRow)
        {
            FillChannels<S, TV>(image, grid, c0, c1, gridRange, heapRow == null ? stackRow : heapPointer);
        }
    }

    private void FillChannels<S, TV>(float* image, float* grid, int c0, int c1, in PointerRange<float> gridRange, float* padded)
        where S : IConvSimd<TV> where TV : struct
    {
        int s = Stride;
        for (int c = c0; c < c1; c++)
        {
            float* src = image + (long)c * H * W;
            float* dst = grid + (long)c * ChannelFloats;
            gridRange.Check("Conv2d grid fill", dst, ChannelFloats);
            for (int ph = 0; ph < s; ph++)
            {
                for (int a = 0; a < Hq; a++)
                {
                    int r = s * a + ph - PadTop;
                    float* row = dst + ph * s * PhaseFloats + a * Wq;
                    if ((uint)r >= (uint)H)
                    {
                        for (int pw = 0; pw < s; pw++) Zero<S, TV>(row + pw * PhaseFloats, Wq);
                        continue;
                    }
                    float* srcRow = src + (long)r * W;
                    if (s == 1) FillRow1<S, TV>(srcRow, row);
                    else FillRowPhases<S, TV>(srcRow, row, padded);
                }
            }
        }
        if (c1 == Channels)
        {
            long used = (long)Channels * ChannelFloats;
            gridRange.Check("Conv2d grid guard", grid + used, Floats - used);
            Zero<S, TV>(grid + used, (int)(Floats - used));
        }
    }

    /// <summary>Columns b of a stride-1 row whose source column b - PadLeft lies in [0, W).</summary>
    private (int Lo, int Hi) ValidColumns()
    {
        int lo = Math.Clamp(PadLeft, 0, Wq);
        int hi = Math.Clamp(W + PadLeft, lo, Wq);
        return (lo, hi);
    }

    private void FillRow1<S, TV>(float* src, float* dst) where S : IConvSimd<TV> where TV : struct
    {
        var (lo, hi) = ValidColumns();
        Zero<S, TV>(dst, lo);
        float* from = src - PadLeft;
        int i = lo;
        for (; i <= hi - S.Count; i += S.Count) S.Store(S.Load(from + i), dst + i);
        for (; i < hi; i++) dst[i] = from[i];
        Zero<S, TV>(dst + hi, Wq - hi);
    }

    /// <summary>Floats of the padded row <see cref="FillRowPhases{S, TV}"/> builds (S Wq, plus a vector pair of slack).</summary>
    public int PaddedRowFloats => Stride * Wq + 4 * 16;

    /// <summary>
    /// The S phase rows of one source row, dst + pw PhaseFloats for phase pw: the row is first copied, zero-padded,
    /// into <paramref name="padded"/> (padded[j] = src[j - PadLeft]), so that the split runs without bounds checks:
    /// two phases at once by vector deinterleave for S = 2, a plain gather otherwise.
    /// </summary>
    private void FillRowPhases<S, TV>(float* src, float* dst, float* padded) where S : IConvSimd<TV> where TV : struct
    {
        int s = Stride, length = s * Wq;
        int lo = Math.Clamp(PadLeft, 0, length), hi = Math.Clamp(W + PadLeft, lo, length);
        Zero<S, TV>(padded, lo);
        float* from = src - PadLeft;
        int i = lo;
        for (; i <= hi - S.Count; i += S.Count) S.Store(S.Load(from + i), padded + i);
        for (; i < hi; i++) padded[i] = from[i];
        Zero<S, TV>(padded + hi, length - hi);
        if (s == 2)
        {
            float* odd = dst + PhaseFloats;
            int b = 0;
            for (; b <= Wq - S.Count; b += S.Count)
            {
                S.LoadDeinterleave(padded + 2 * b, out var e, out var o);
                S.Store(e, dst + b);
                S.Store(o, odd + b);
            }
            for (; b < Wq; b++)
            {
                dst[b] = padded[2 * b];
                odd[b] = padded[2 * b + 1];
            }
            return;
        }
        for (int pw = 0; pw < s; pw++)
        {
            float* row = dst + pw * PhaseFloats;
            for (int b = 0; b < Wq; b++) row[b] = padded[s * b + pw];
        }
    }

    /// <summary>Zeroes n floats inline: the runs here are mostly a few floats long, too short for Span.Clear's call.</summary>
    private static void Zero<S, TV>(float* p, int n) where S : IConvSimd<TV> where TV : struct
    {
        int i = 0;
        for (; i <= n - S.Count; i += S.Count) S.Store(S.Zero, p + i);
        for (; i < n; i++) p[i] = 0f;
    }

    public static int FloorDiv(int a, int b) => a >= 0 ? a / b : -((-a + b - 1) / b);

    public static int CeilDiv(int a, int b) => -FloorDiv(-a, b);
}
