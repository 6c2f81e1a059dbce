using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Models.Networks;

/// <summary>
/// The DDPM time-embedding MLP (Ho et al. 2020): a fixed embedding of the conditioning value, ch wide, then
/// Linear(ch, 4ch) -> SiLU -> Linear(4ch, 4ch) ("dense.0", "dense.1"). The fixed embedding is the sinusoidal one of
/// the time for <see cref="ConditionKind.Time"/>, and Gaussian Fourier features of log sigma (NCSN++) for
/// <see cref="ConditionKind.Sigma"/>; both are ch wide, so the parameter count does not depend on the kind.
/// </summary>
public sealed class ConditionEmbedding : Module
{
    private readonly Linear _dense0;
    private readonly Linear _dense1;
    private readonly GaussianFourierEmbedding? _fourier;

    /// <summary>Creates the embedding of a ch = <paramref name="channels"/> wide fixed embedding into 4 ch.</summary>
    public ConditionEmbedding(int channels, ConditionKind kind, double fourierScale, Generator generator, Device? device = null, DType dtype = DType.Float32)
    {
        Channels = channels;
        Kind = kind;
        _fourier = kind == ConditionKind.Sigma ? new GaussianFourierEmbedding(channels, fourierScale) : null;
        _dense0 = AddModule("dense.0", new Linear(channels, 4 * channels, generator, device: device, dtype: dtype));
        _dense1 = AddModule("dense.1", new Linear(4 * channels, 4 * channels, generator, device: device, dtype: dtype));
    }

    /// <summary>Width ch of the fixed embedding (the output is 4 ch wide).</summary>
    public int Channels { get; }

    /// <summary>What the conditioning value means.</summary>
    public ConditionKind Kind { get; }

    /// <summary>The [B, 4ch] embedding of the conditioning values <paramref name="t"/> ([B]: times, or sigmas &gt; 0).</summary>
    public Tensor Forward(Tensor t)
    {
        var fixedEmbedding = _fourier is null ? TimeEmbedding.Sinusoidal(t, Channels) : _fourier.Forward(t);
        return _dense1.Forward(Ops.Silu(_dense0.Forward(fixedEmbedding)));
    }
}
