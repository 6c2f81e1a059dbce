using DiffusionCore.Kernels.Ilgpu;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using static DiffusionCore.Kernels.Ilgpu.ImageTilesIlgpu;

namespace DiffusionCore.Kernels.Norm;

/// <summary>
/// Group normalisation (Wu and He 2018), optionally fused with a SiLU, as ILGPU kernels, float32, with the meaning
/// of <see cref="GroupNormCpu"/>: for sample n and group g the Cg = C / groups channels with their HW positions are
/// one contiguous block of M = Cg HW values; mean and (biased) variance over the block, xhat = (x - mean) rstd,
/// rstd = 1 / sqrt(var + eps), z = gamma[c] xhat + beta[c] (Wu and He 2018, eqs. 1-2), y = z or z sigmoid(z).
/// <para>
/// One group of threads per (n, g) block. The statistics take one pass over the block with the data shifted by its
/// first element x0: d = x - x0, mean = x0 + E[d], var = E[d²] - E[d]² (the shifted-data algorithm; Chan, Golub and
/// LeVeque 1983). The shift removes the catastrophic cancellation of E[x²] - E[x]² when |mean| &gt;&gt; std: what is left
/// cancels only by (mean - x0)² / var, a few units for a typical x0. Deviations are taken as (x - x0) - E[d], which
/// keeps their precision when the mean rounded to float is off by a sizeable part of std.
/// </para>
/// <para>
/// The backward pass recomputes E[d] with the same code (so xhat is bitwise the forward one, as GroupNormCpu
/// re-derives the exact mean), then gives each warp whole channels: a warp sums its channel's A_c = Σ g and
/// B_c = Σ g xhat with shuffles and writes them as the per-(n, c) partials of dbeta and dgamma, which a second kernel
/// adds over n in order. Deterministic, no atomics.
/// </para>
/// </summary>
internal static class GroupNormIlgpu
{
    private const string Op = "GroupNorm";

    /// <summary>y = GroupNorm(x) (then SiLU when <paramref name="silu"/> != 0), mean and rstd per (n, g) = Grid.IdxX.</summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void ForwardKernel(GroupNormDims d, float eps, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd, int silu)
    {
        var shared = SharedMemory.Allocate<float>(2 * GroupSize);
        int block = Grid.IdxX, t = Group.IdxX;
        int cg = d.Channels / d.Groups, m = cg * d.Spatial, start = block * m, channel0 = block % d.Groups * cg;
        var moments = ShiftedMoments(x, start, m, shared);
        float r = XMath.Rsqrt(moments.Variance + eps);
        if (t == 0)
        {
            mean[block] = moments.Mean;
            rstd[block] = r;
        }
        for (int i = t; i < m; i += GroupSize)
        {
            int c = channel0 + i / d.Spatial;
            float z = moments.Deviation(x[start + i]) * r * gamma[c] + beta[c];
            y[start + i] = silu != 0 ? z / (1f + XMath.Exp(-z)) : z;
        }
    }

    /// <summary>
    /// dx for block (n, g) = Grid.IdxX from the saved rstd, and its per-(n, c) partial sums partial[n, c] = Σ_hw g
    /// (dbeta) and partial[N C + n C + c] = Σ_hw g xhat (dgamma), with g = dL/dz (dy, times silu'(z) when fused).
    /// </summary>
    [IlgpuKernel(KernelGrouping.Explicit)]
    internal static void BackwardKernel(GroupNormDims d, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> rstd, ArrayView<float> dy, ArrayView<float> dx, ArrayView<float> partial, int silu)
    {
        var shared = SharedMemory.Allocate<float>(2 * GroupSize);
        int block = Grid.IdxX, t = Group.IdxX;
        int cg = d.Channels / d.Groups, m = cg * d.Spatial, start = block * m;
        int n = block / d.Groups, channel0 = block % d.Groups * cg, partialLength = d.Batch * d.Channels;
        var moments = ShiftedMoments(x, start, m, shared);
        float r = rstd[block];
        // With dxhat = gamma g, dx = rstd (dxhat - mean_M(dxhat) - xhat mean_M(dxhat xhat)), and
        // M mean_M(dxhat) = Σ_c gamma_c A_c, M mean_M(dxhat xhat) = Σ_c gamma_c B_c with A_c = Σ_hw g, B_c = Σ_hw g xhat.
        for (int cl = Warp.WarpIdx; cl < cg; cl += Group.DimX / Warp.WarpSize)
        {
            int c = channel0 + cl, rowStart = start + cl * d.Spatial;
            float gc = gamma[c], bc = beta[c], a = 0f, b = 0f;
            for (int i = Warp.LaneIdx; i < d.Spatial; i += Warp.WarpSize)
            {
                float xhat = moments.Deviation(x[rowStart + i]) * r;
                float g = LocalGradient(dy[rowStart + i], xhat, gc, bc, silu);
                a += g;
                b += g * xhat;
            }
            var sums = WarpSums(new Pair(a, b));
            if (Warp.LaneIdx == 0)
            {
                partial[n * d.Channels + c] = sums.First;
                partial[partialLength + n * d.Channels + c] = sums.Second;
            }
        }
        // The barrier also makes the partials written above by lane 0 of each warp visible to the whole group.
        Group.Barrier();
        float sumGammaA = 0f, sumGammaB = 0f;
        for (int cl = 0; cl < cg; cl++)
        {
            int c = channel0 + cl;
            sumGammaA += gamma[c] * partial[n * d.Channels + c];
            sumGammaB += gamma[c] * partial[partialLength + n * d.Channels + c];
        }
        float meanA = sumGammaA / m, meanB = sumGammaB / m;
        for (int i = t; i < m; i += GroupSize)
        {
            int c = channel0 + i / d.Spatial;
            float xhat = moments.Deviation(x[start + i]) * r;
            float g = LocalGradient(dy[start + i], xhat, gamma[c], beta[c], silu);
            dx[start + i] = r * (gamma[c] * g - meanA - xhat * meanB);
        }
    }

    /// <summary>dbeta[c] = Σ_n partial[n, c], dgamma[c] = Σ_n partial[N C + n C + c], n in order.</summary>
    [IlgpuKernel]
    internal static void SumOverBatchKernel(Index1D c, GroupNormDims d, ArrayView<float> partial, ArrayView<float> dgamma, ArrayView<float> dbeta)
    {
        int partialLength = d.Batch * d.Channels;
        float a = 0f, b = 0f;
        for (int n = 0; n < d.Batch; n++)
        {
            a += partial[n * d.Channels + c];
            b += partial[partialLength + n * d.Channels + c];
        }
        dbeta[c] = a;
        dgamma[c] = b;
    }

    /// <summary>
    /// Mean and variance of the block x[start .. start + m) from one pass over d = x - x0, x0 = x[start]:
    /// E[d] and E[d²] by one group-wide sum of both (<paramref name="shared"/>: 2 GroupSize floats).
    /// </summary>
    private static BlockMoments ShiftedMoments(ArrayView<float> x, int start, int m, ArrayView<float> shared)
    {
        float x0 = x[start], sum = 0f, squares = 0f;
        for (int i = Group.IdxX; i < m; i += GroupSize)
        {
            float dev = x[start + i] - x0;
            sum += dev;
            squares += dev * dev;
        }
        var sums = GroupSums(new Pair(sum, squares), shared);
        float offset = sums.First / m;
        return new BlockMoments(x0, offset, XMath.Max(0f, sums.Second / m - offset * offset));
    }

    /// <summary>
    /// g = dL/dz from dy: dy itself, or with the SiLU y = z sigmoid(z) fused, dy silu'(z) with
    /// silu'(z) = s (1 + z (1 - s)), s = sigmoid(z), z = gamma xhat + beta recomputed.
    /// </summary>
    private static float LocalGradient(float dy, float xhat, float gamma, float beta, int silu)
    {
        if (silu == 0) return dy;
        float z = gamma * xhat + beta;
        float s = 1f / (1f + XMath.Exp(-z));
        return dy * s * (1f + z * (1f - s));
    }

    /// <summary>Kernels of one accelerator, loaded once; holds the scratch for the dgamma/dbeta partials (one stream at a time).</summary>
    internal sealed class Kernels : IDisposable
    {
        private readonly ImageScratch _scratch;
        private readonly Action<AcceleratorStream, KernelConfig, GroupNormDims, float, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _forward;
        private readonly Action<AcceleratorStream, KernelConfig, GroupNormDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _backward;
        private readonly Action<AcceleratorStream, Index1D, GroupNormDims, ArrayView<float>, ArrayView<float>, ArrayView<float>> _sumOverBatch;

        /// <summary>Compiles the kernels for <paramref name="accelerator"/>.</summary>
        public Kernels(Accelerator accelerator) : this(new IlgpuKernelCache(accelerator))
        {
        }

        /// <summary>Compiles the kernels through <paramref name="cache"/> (an <see cref="IlgpuBackend"/>'s, which records the compile times).</summary>
        public Kernels(IlgpuKernelCache cache)
        {
            var accelerator = cache.Accelerator;
            RequireTileSupport(accelerator, Op, 2 * GroupSize * sizeof(float));
            _scratch = new ImageScratch(accelerator);
            _forward = cache.Get<Action<AcceleratorStream, KernelConfig, GroupNormDims, float, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int>>(ForwardKernel);
            _backward = cache.Get<Action<AcceleratorStream, KernelConfig, GroupNormDims, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>>(BackwardKernel);
            _sumOverBatch = cache.Get<Action<AcceleratorStream, Index1D, GroupNormDims, ArrayView<float>, ArrayView<float>, ArrayView<float>>>(SumOverBatchKernel);
        }

        /// <summary>
        /// y = GroupNorm(x) (then SiLU when <paramref name="fuseSilu"/>), and mean, rstd [N, groups] for
        /// <see cref="Backward"/>; arguments as <see cref="GroupNormCpu.Forward{T}"/>.
        /// </summary>
        public void Forward(AcceleratorStream stream, int batch, int channels, int spatial, int groups, double eps,
            ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
            bool fuseSilu)
        {
            var d = Check(batch, channels, spatial, groups);
            string shape = d.ToString();
            long size = (long)batch * channels * spatial;
            RequireLength(Op, "x", x, size, shape);
            RequireLength(Op, "y", y, size, shape);
            RequireLength(Op, "gamma", gamma, channels, shape);
            RequireLength(Op, "beta", beta, channels, shape);
            RequireLength(Op, "mean", mean, (long)batch * groups, shape);
            RequireLength(Op, "rstd", rstd, (long)batch * groups, shape);
            if (!(eps >= 0)) throw new KernelException(Op, $"eps must be >= 0, got {eps}");
            if (batch == 0) return;
            _forward(stream, Config(batch * groups), d, (float)eps, x, gamma, beta, y, mean, rstd, fuseSilu ? 1 : 0);
        }

        /// <summary>
        /// dx, and dgamma, dbeta summed over the batch (all overwritten) from the saved statistics; arguments as
        /// <see cref="GroupNormCpu.Backward{T}"/>. Like GroupNormCpu, the kernel re-derives the exact block mean from
        /// x (the float-rounded saved mean could shift xhat by ulp(mean) rstd, a large error when |mean| &gt;&gt; std),
        /// so <paramref name="mean"/> is only checked; rstd is the saved one.
        /// </summary>
        public void Backward(AcceleratorStream stream, int batch, int channels, int spatial, int groups,
            ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> mean, ArrayView<float> rstd,
            ArrayView<float> dy, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta, bool fuseSilu)
        {
            var d = Check(batch, channels, spatial, groups);
            string shape = d.ToString();
            long size = (long)batch * channels * spatial;
            RequireLength(Op, "x", x, size, shape);
            RequireLength(Op, "dy", dy, size, shape);
            RequireLength(Op, "dx", dx, size, shape);
            RequireLength(Op, "gamma", gamma, channels, shape);
            RequireLength(Op, "beta", beta, channels, shape);
            RequireLength(Op, "dgamma", dgamma, channels, shape);
            RequireLength(Op, "dbeta", dbeta, channels, shape);
            RequireLength(Op, "mean", mean, (long)batch * groups, shape);
            RequireLength(Op, "rstd", rstd, (long)batch * groups, shape);
            var partial = _scratch.Get(stream, 2L * batch * channels);
            if (batch > 0)
                _backward(stream, Config(batch * groups), d, x, gamma, beta, rstd, dy, dx, partial, fuseSilu ? 1 : 0);
            // With N = 0 the sums over the batch are empty: the second kernel writes the zeros.
            _sumOverBatch(stream, channels, d, partial, dgamma, dbeta);
        }

        /// <summary>Frees the scratch buffer.</summary>
        public void Dispose() => _scratch.Dispose();

        private static KernelConfig Config(int blocks) => new(new Index3D(blocks, 1, 1), new Index3D(GroupSize, 1, 1));

        private static GroupNormDims Check(int batch, int channels, int spatial, int groups)
        {
            if (batch < 0 || channels < 1 || spatial < 1 || groups < 1)
                throw new KernelException(Op, $"need N >= 0, C >= 1, HW >= 1, groups >= 1; got N={batch}, C={channels}, HW={spatial}, groups={groups}");
            if (channels % groups != 0)
                throw new KernelException(Op, $"C={channels} is not divisible by groups={groups}");
            if ((long)batch * channels * spatial > int.MaxValue)
                throw new KernelException(Op, $"N*C*HW = {(long)batch * channels * spatial} exceeds {int.MaxValue} (32-bit indexing)");
            return new GroupNormDims(batch, channels, spatial, groups);
        }
    }
}

/// <summary>
/// Statistics of a group-norm block: the mean as an anchor value (an element of the block) plus a small, precise
/// offset, and the biased variance (see GroupNormIlgpu.ShiftedMoments).
/// </summary>
internal readonly struct BlockMoments(float anchor, float offset, float variance)
{
    /// <summary>A value of the block (its first).</summary>
    public float Anchor { get; } = anchor;

    /// <summary>mean - Anchor.</summary>
    public float Offset { get; } = offset;

    /// <summary>The biased variance E[(x - mean)²].</summary>
    public float Variance { get; } = variance;

    /// <summary>The mean rounded to float (what the forward pass saves).</summary>
    public float Mean => Anchor + Offset;

    /// <summary>x - mean, as (x - Anchor) - Offset.</summary>
    public float Deviation(float x) => (x - Anchor) - Offset;
}

/// <summary>Sizes of a group-norm launch, passed to the kernels as one argument.</summary>
/// <param name="Batch">N.</param>
/// <param name="Channels">C, a multiple of <paramref name="Groups"/>.</param>
/// <param name="Spatial">H W.</param>
/// <param name="Groups">Number of groups.</param>
internal readonly record struct GroupNormDims(int Batch, int Channels, int Spatial, int Groups)
{
    /// <inheritdoc/>
    public override string ToString() => $"N={Batch}, C={Channels}, HW={Spatial}, groups={Groups}";
}
