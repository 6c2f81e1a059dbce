using DiffusionCore.Engine;
using DiffusionCore.Kernels;

namespace DiffusionCore.Models.Nn;

/// <summary>
/// Group normalisation (Wu and He 2018) with a per-channel affine map, parameters "weight" (gamma, initialised to 1)
/// and "bias" (beta, initialised to 0) as in PyTorch's nn.GroupNorm.
/// </summary>
public sealed class GroupNorm : Module
{
    /// <summary>Creates the layer for <paramref name="channels"/> channels split into <paramref name="groups"/> groups.</summary>
    public GroupNorm(int groups, int channels, double eps = 1e-5, Device? device = null, DType dtype = DType.Float32)
    {
        if (groups <= 0 || channels <= 0 || channels % groups != 0)
            throw new ArgumentOutOfRangeException(nameof(groups), $"GroupNorm({groups} groups, {channels} channels): channels must be a positive multiple of groups");
        if (!(eps >= 0)) throw new ArgumentOutOfRangeException(nameof(eps), eps, "GroupNorm eps must be >= 0");
        Groups = groups;
        Channels = channels;
        Eps = eps;
        Weight = AddParameter("weight", Tensor.Ones([channels], dtype, device));
        Bias = AddParameter("bias", Tensor.Zeros([channels], dtype, device));
    }

    /// <summary>Number of groups.</summary>
    public int Groups { get; }

    /// <summary>Number of channels.</summary>
    public int Channels { get; }

    /// <summary>Added to the variance before the square root.</summary>
    public double Eps { get; }

    /// <summary>[C] scale gamma.</summary>
    public Tensor Weight { get; }

    /// <summary>[C] shift beta.</summary>
    public Tensor Bias { get; }

    /// <summary>
    /// Normalises x[N, C, ...]; with <paramref name="silu"/> the result goes through SiLU in the same kernel
    /// (<see cref="Ops.GroupNormSilu"/>), which saves a pass over the activations wherever GroupNorm is followed by SiLU.
    /// </summary>
    public Tensor Forward(Tensor x, bool silu = false) => Ops.GroupNorm(x, Groups, Weight, Bias, Eps, fuseSilu: silu);
}
