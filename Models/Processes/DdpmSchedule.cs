namespace DiffusionCore.Models.Processes;

/// <summary>Named beta schedules of the discrete DDPM forward process.</summary>
public enum BetaSchedule
{
    /// <summary>Ho et al. 2020: betas linear from 1e-4 to 0.02 over T steps.</summary>
    Linear,
    /// <summary>Nichol and Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), s = 0.008, betas clipped at 0.999.</summary>
    Cosine,
}

/// <summary>
/// The discrete DDPM forward process q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) with its
/// closed-form marginal q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. 2020, eq. 4)
/// and posterior q(x_{t-1} | x_t, x_0) variance beta_tilde_t (eq. 7). Index t runs 0..T-1 (t = 0 is the
/// first noising step; the paper's t = 1).
/// </summary>
public sealed class DdpmSchedule
{
    /// <summary>Builds the schedule from explicit betas.</summary>
    public DdpmSchedule(double[] betas)
    {
        if (betas.Length == 0) throw new ArgumentException("a DDPM schedule needs at least one step", nameof(betas));
        foreach (var b in betas)
            if (!(b > 0 && b < 1)) throw new ArgumentOutOfRangeException(nameof(betas), b, "every beta must lie in (0, 1)");
        Betas = betas;
        int n = betas.Length;
        Alphas = betas.Select(b => 1 - b).ToArray();
        AlphaBars = new double[n];
        double acc = 1;
        for (int t = 0; t < n; t++) AlphaBars[t] = acc *= Alphas[t];
        PosteriorVariance = new double[n];
        for (int t = 0; t < n; t++)
        {
            double prev = t == 0 ? 1.0 : AlphaBars[t - 1];
            PosteriorVariance[t] = betas[t] * (1 - prev) / (1 - AlphaBars[t]);
        }
    }

    /// <summary>A schedule of <paramref name="steps"/> steps of the given kind.</summary>
    public static DdpmSchedule Create(BetaSchedule kind, int steps = 1000) => kind switch
    {
        BetaSchedule.Linear => Linear(steps),
        BetaSchedule.Cosine => Cosine(steps),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    /// <summary>Linear betas from <paramref name="betaStart"/> to <paramref name="betaEnd"/> (Ho et al. 2020).</summary>
    public static DdpmSchedule Linear(int steps = 1000, double betaStart = 1e-4, double betaEnd = 0.02)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "must be at least 1");
        var b = new double[steps];
        for (int t = 0; t < steps; t++) b[t] = steps == 1 ? betaStart : betaStart + (betaEnd - betaStart) * t / (steps - 1);
        return new DdpmSchedule(b);
    }

    /// <summary>The cosine schedule (Nichol and Dhariwal 2021, eq. 17), betas clipped at 0.999.</summary>
    public static DdpmSchedule Cosine(int steps = 1000, double s = 0.008)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "must be at least 1");
        double F(double t) => Math.Pow(Math.Cos((t / steps + s) / (1 + s) * Math.PI / 2), 2);
        var b = new double[steps];
        for (int t = 0; t < steps; t++) b[t] = Math.Min(1 - F(t + 1) / F(t), 0.999);
        return new DdpmSchedule(b);
    }

    /// <summary>Number of steps T.</summary>
    public int Steps => Betas.Length;

    /// <summary>beta_t.</summary>
    public double[] Betas { get; }

    /// <summary>alpha_t = 1 - beta_t.</summary>
    public double[] Alphas { get; }

    /// <summary>alpha_bar_t = prod_{s &lt;= t} alpha_s.</summary>
    public double[] AlphaBars { get; }

    /// <summary>beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) (Ho et al. 2020, eq. 7).</summary>
    public double[] PosteriorVariance { get; }

    /// <summary>Mean coefficient sqrt(alpha_bar_t) of q(x_t | x_0).</summary>
    public double MarginalMean(int t) => Math.Sqrt(AlphaBars[t]);

    /// <summary>Standard deviation sqrt(1 - alpha_bar_t) of q(x_t | x_0).</summary>
    public double MarginalStd(int t) => Math.Sqrt(1 - AlphaBars[t]);

    /// <summary>Step t as a <see cref="NoiseLevel"/> (the network is told the step index t).</summary>
    public NoiseLevel Level(int t) => new(MarginalMean(t), MarginalStd(t), t);
}
