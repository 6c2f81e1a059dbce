using DiffusionCore.Engine;
using DiffusionCore.Models.Processes;

namespace DiffusionCore.Training.Objectives;

/// <summary>
/// Draws diffusion times t on [eta, T] with density pi(t) proportional to 1 / sigma_t^2, the proposal of
/// <see cref="SdeObjective.ImportanceSampledLoss"/>. The normaliser int 1/sigma_t^2 dt has no closed form
/// for the VP and sub-VP SDEs, so the inverse CDF is built numerically: near t = 0, 1/sigma_t^2 grows like
/// 1/t (VP, VE) or 1/t^2 (sub-VP), so the grid is uniform in u = ln t, where the integrand t / sigma_t^2 is
/// smooth; the cell masses come from the trapezoid rule in u, and within a cell u is drawn uniformly.
/// The sampler's density is therefore exactly piecewise proportional to 1/t, and <see cref="Density"/>
/// returns that density (not 1/sigma_t^2 / Z), so an importance weight 1 / Density(t) is exact whatever
/// the grid: the grid only decides how closely pi follows 1/sigma_t^2. Within a cell of width h in ln t the
/// two differ by at most a factor exp(h |d ln(t / sigma_t^2) / d ln t|); at the default 4096 cells over
/// ln(T / eta) = 11.5, h = 0.0028, and the slope is at most about 1 for VP and sub-VP (0.3%) and up to
/// 2 ln(sigma_max / sigma_min) = 17 at t = T for VE (5%).
/// </summary>
public sealed class InverseVarianceTimeSampler
{
    private readonly double[] _cumulative;
    private readonly double _logEta, _cellWidth;

    /// <summary>Builds the table for <paramref name="sde"/> on [<paramref name="eta"/>, T] with <paramref name="cells"/> cells.</summary>
    public InverseVarianceTimeSampler(Sde sde, double eta = 1e-5, int cells = 4096)
    {
        ObjectiveMath.CheckEta("InverseVarianceTimeSampler", eta, sde.T);
        if (cells < 1) throw new ArgumentOutOfRangeException(nameof(cells), cells, "InverseVarianceTimeSampler: needs at least one cell");
        Sde = sde;
        Eta = eta;
        _logEta = Math.Log(eta);
        _cellWidth = (Math.Log(sde.T) - _logEta) / cells;
        // dt / sigma_t^2 = (t / sigma_t^2) du with u = ln t.
        double Integrand(int k)
        {
            double t = k == cells ? sde.T : Math.Exp(_logEta + k * _cellWidth);
            double s = sde.MarginalStd(t);
            return t / (s * s);
        }
        _cumulative = new double[cells + 1];
        double previous = Integrand(0);
        for (int k = 1; k <= cells; k++)
        {
            double next = Integrand(k);
            _cumulative[k] = _cumulative[k - 1] + 0.5 * (previous + next) * _cellWidth;
            previous = next;
        }
        if (!double.IsFinite(_cumulative[cells]) || !(_cumulative[cells] > 0))
            throw new ArgumentException($"InverseVarianceTimeSampler: int 1/sigma_t^2 dt on [{eta}, {sde.T}] of the {sde.Name} SDE is {_cumulative[cells]}; sigma_t must be positive on the interval", nameof(sde));
    }

    /// <summary>The SDE whose sigma_t the proposal follows.</summary>
    public Sde Sde { get; }

    /// <summary>The time cut-off eta (the lower end of the interval).</summary>
    public double Eta { get; }

    /// <summary>The end time T.</summary>
    public double T => Sde.T;

    /// <summary>The grid's estimate of int_eta^T 1/sigma_t^2 dt.</summary>
    public double Normaliser => _cumulative[^1];

    /// <summary>The density of <see cref="Sample"/> at t in [eta, T].</summary>
    public double Density(double t)
    {
        if (!(t >= Eta && t <= T)) throw new ArgumentOutOfRangeException(nameof(t), t, $"InverseVarianceTimeSampler.Density: t outside [{Eta}, {T}]");
        int k = Math.Min((int)((Math.Log(t) - _logEta) / _cellWidth), _cumulative.Length - 2);
        k = Math.Max(k, 0);
        double mass = (_cumulative[k + 1] - _cumulative[k]) / Normaliser;
        // Uniform in u = ln t within the cell: density mass / width in u, and du/dt = 1/t.
        return mass / (_cellWidth * t);
    }

    /// <summary>
    /// <paramref name="count"/> times drawn by the inverse CDF from <paramref name="generator"/>'s host uniforms,
    /// with the density of each.
    /// </summary>
    public (double[] Times, double[] Densities) Sample(Generator generator, int count)
    {
        var u = generator.UniformHost(count);
        var times = new double[count];
        var densities = new double[count];
        for (int i = 0; i < count; i++)
        {
            double target = u[i] * Normaliser;
            int k = Array.BinarySearch(_cumulative, target);
            // BinarySearch gives the index of an exact hit, else the complement of the first larger entry.
            k = k >= 0 ? Math.Min(k, _cumulative.Length - 2) : ~k - 1;
            double fraction = (target - _cumulative[k]) / (_cumulative[k + 1] - _cumulative[k]);
            double t = Math.Clamp(Math.Exp(_logEta + (k + fraction) * _cellWidth), Eta, T);
            times[i] = t;
            densities[i] = (_cumulative[k + 1] - _cumulative[k]) / Normaliser / (_cellWidth * t);
        }
        return (times, densities);
    }
}
