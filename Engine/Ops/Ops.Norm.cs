using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

public static partial class Ops
{
    /// <summary>
    /// Group normalisation (Wu and He 2018, eqs. 1-2) of x[N, C, ...] (any number of spatial axes, including none):
    /// each sample's channels are split into <paramref name="groups"/> groups of C/groups channels, each group is
    /// normalised by its own mean and biased variance, xhat = (x - μ) / sqrt(σ² + eps), then y = gamma[c] xhat + beta[c];
    /// with <paramref name="fuseSilu"/> y is followed by SiLU, y·sigmoid(y), in the same kernel.
    /// N may be 0 (an empty result, zero gradients for gamma and beta).
    /// <para>
    /// On a backend with <see cref="IGroupNormKernels"/>, forward and first-order backward are the fused kernels (the
    /// backward reads the mean and 1/σ saved by the forward). When the backward pass is itself recorded (createGraph),
    /// the gradient is instead taken through <see cref="GroupNormComposite"/>, the same function built from
    /// differentiable ops, so it can be differentiated again; a backend without the kernels runs the composite throughout.
    /// </para>
    /// </summary>
    public static Tensor GroupNorm(Tensor x, int groups, Tensor gamma, Tensor beta, double eps = 1e-5, bool fuseSilu = false)
    {
        string op = fuseSilu ? "GroupNormSilu" : "GroupNorm";
        var (n, c, spatial) = GroupNormShape(op, x, groups, gamma, beta, eps);
        if (x.Backend.GetCapability<IGroupNormKernels>() is not { } kernels) return GroupNormComposite(x, groups, gamma, beta, eps, fuseSilu);
        var y = NewLike(x);
        var mean = NewLike(x, [n, groups]);
        var rstd = NewLike(x, [n, groups]);
        kernels.GroupNormForward(n, c, spatial, groups, eps, x.Buffer, gamma.Buffer, beta.Buffer, y.Buffer, mean.Buffer, rstd.Buffer, fuseSilu);
        Tensor[] inputs = [x, gamma, beta];
        if (!Autograd.IsRecording || !inputs.Any(t => t.TracksGrad))
        {
            mean.Dispose();
            rstd.Dispose();
            return y;
        }
        return Autograd.Record(y, op, inputs, g =>
        {
            if (Autograd.IsRecording)
                return GradientByRecompute(inputs, g, t => GroupNormComposite(t[0], groups, t[1], t[2], eps, fuseSilu));
            var dx = NewLike(x);
            var dgamma = NewLike(gamma);
            var dbeta = NewLike(beta);
            kernels.GroupNormBackward(n, c, spatial, groups, x.Buffer, gamma.Buffer, beta.Buffer, mean.Buffer, rstd.Buffer,
                g.Buffer, dx.Buffer, dgamma.Buffer, dbeta.Buffer, fuseSilu);
            return KeepTracked(inputs, [dx, dgamma, dbeta]);
        });
    }

    /// <summary><see cref="GroupNorm"/> followed by SiLU, fused into one kernel.</summary>
    public static Tensor GroupNormSilu(Tensor x, int groups, Tensor gamma, Tensor beta, double eps = 1e-5)
        => GroupNorm(x, groups, gamma, beta, eps, fuseSilu: true);

    /// <summary>
    /// <see cref="GroupNorm"/> written with differentiable elementwise and reduction ops: x viewed as
    /// [N, groups, C/groups · spatial], μ = mean, σ² = mean((x - μ)²), xhat = (x - μ) rsqrt(σ² + eps), then the
    /// per-channel affine map and the optional SiLU. Slower than the fused kernel; it is the path of gradients that
    /// must be differentiated again, and the reference the kernel is tested against.
    /// </summary>
    public static Tensor GroupNormComposite(Tensor x, int groups, Tensor gamma, Tensor beta, double eps = 1e-5, bool fuseSilu = false)
    {
        var (n, c, spatial) = GroupNormShape("GroupNormComposite", x, groups, gamma, beta, eps);
        var grouped = Reshape(x, n, groups, c / groups * spatial);
        var centred = Sub(grouped, Mean(grouped, [2], keepDim: true));
        var variance = Mean(Square(centred), [2], keepDim: true);
        var xhat = Reshape(Mul(centred, Rsqrt(AddScalar(variance, eps))), n, c, spatial);
        var z = Add(Mul(xhat, Reshape(gamma, c, 1)), Reshape(beta, c, 1));
        var y = fuseSilu ? Silu(z) : z;
        return Reshape(y, x.Shape);
    }

    private static (int N, int C, int Spatial) GroupNormShape(string op, Tensor x, int groups, Tensor gamma, Tensor beta, double eps)
    {
        SameDevice(op, x, gamma);
        SameDevice(op, x, beta);
        string desc = $"input {ShapeUtil.Format(x.Shape)}, groups {groups}, gamma {ShapeUtil.Format(gamma.Shape)}, beta {ShapeUtil.Format(beta.Shape)}";
        if (x.Rank < 2) throw new TensorException(op, $"needs an input [N, C, ...] of rank >= 2: {desc}");
        int c = x.Shape[1];
        long spatial = ShapeUtil.Count(x.Shape.AsSpan(2));
        if (c < 1 || spatial < 1) throw new TensorException(op, $"needs at least one channel and one position: {desc}");
        if (groups < 1 || c % groups != 0) throw new TensorException(op, $"channels {c} are not divisible into {groups} groups: {desc}");
        if (gamma.Rank != 1 || gamma.Shape[0] != c || beta.Rank != 1 || beta.Shape[0] != c)
            throw new TensorException(op, $"gamma and beta must be [{c}]: {desc}");
        if (!(eps >= 0)) throw new TensorException(op, $"eps must be >= 0, got {eps}: {desc}");
        if (spatial * c > int.MaxValue) throw new TensorException(op, $"a sample has more than {int.MaxValue} elements: {desc}");
        return (x.Shape[0], c, (int)spatial);
    }

    /// <summary>
    /// The backward of a fused op when a graph is requested: recomputes the op with differentiable ops
    /// (<paramref name="composite"/>) and returns its vector-Jacobian product with <paramref name="g"/>, recorded.
    /// The composite runs on fresh graph handles of the inputs (reshapes that share storage), so the gradient
    /// stops at them: it does not leak through the inputs' own history (which may reach another input, e.g. a
    /// shared parameter), yet the result still depends on the original inputs for the next derivative.
    /// </summary>
    private static Tensor?[] GradientByRecompute(Tensor[] inputs, Tensor g, Func<Tensor[], Tensor> composite)
    {
        var handles = inputs.Select(t => Reshape(t, t.Shape)).ToArray();
        var tracked = Enumerable.Range(0, inputs.Length).Where(i => inputs[i].TracksGrad).ToArray();
        var y = composite(handles);
        var grads = Autograd.Grad([y], tracked.Select(i => handles[i]).ToArray(), [g], createGraph: true, allowUnused: true);
        var result = new Tensor?[inputs.Length];
        for (int j = 0; j < tracked.Length; j++) result[tracked[j]] = grads[j];
        return result;
    }

    /// <summary>Returns each gradient whose input tracks gradients; frees the others.</summary>
    private static Tensor?[] KeepTracked(Tensor[] inputs, Tensor[] grads)
    {
        var result = new Tensor?[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
        {
            if (inputs[i].TracksGrad) result[i] = grads[i];
            else grads[i].Dispose();
        }
        return result;
    }
}
