using DiffusionCore.Engine;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Sampling.Samplers;

namespace DiffusionCore.Pipelines;

/// <summary>What a named sampler is and which settings it reads.</summary>
/// <param name="Name">The name the pipeline and the CLI take (e.g. "ddim").</param>
/// <param name="Summary">One line for help texts.</param>
/// <param name="TakesSteps">False where the step count is fixed by the model (DDPM's schedule) or chosen adaptively (RK45, CNF).</param>
/// <param name="TakesEta">True for DDIM's eta (the stochasticity between DDIM and DDPM).</param>
public sealed record SamplerInfo(string Name, string Summary, bool TakesSteps, bool TakesEta);

/// <summary>
/// The samplers a <see cref="DiffusionPipeline"/> runs, which model each applies to, and their default settings: the one
/// place where a sampler name becomes a call, so help texts, defaults and checks all read the same table.
/// </summary>
public static class SamplerCatalog
{
    /// <summary>Every sampler, in the order help texts list them.</summary>
    public static IReadOnlyList<SamplerInfo> All { get; } =
    [
        new("ddpm", "DDPM ancestral sampling, one step per schedule step (Ho et al. 2020)", false, false),
        new("ddim", "DDIM on a subsequence of the schedule; eta 0 is deterministic (Song et al. 2021)", true, true),
        new("als", "annealed Langevin dynamics over NCSN's noise levels, steps per level (Song and Ermon 2019)", true, false),
        new("em", "reverse-SDE Euler-Maruyama (Song et al. 2021)", true, false),
        new("pc", "predictor-corrector: reverse diffusion + one Langevin corrector step (Song et al. 2021)", true, false),
        new("ode", "probability-flow ODE, Euler steps", true, false),
        new("ode-heun", "probability-flow ODE, Heun steps", true, false),
        new("ode-rk4", "probability-flow ODE, classical Runge-Kutta steps", true, false),
        new("ode-rk45", "probability-flow ODE, adaptive Dormand-Prince RK45 (rtol = atol = 1e-5)", false, false),
        new("dpm2m", "DPM-Solver++(2M) (Lu et al. 2022)", true, false),
        new("flow", "a CNF's flow from the prior, adaptive RK45", false, false),
    ];

    /// <summary>The names of <see cref="All"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = All.Select(s => s.Name).ToArray();

    /// <summary>The sampler called <paramref name="name"/>.</summary>
    /// <exception cref="ConfigException">There is none; the message lists the names.</exception>
    public static SamplerInfo Get(string name) =>
        All.FirstOrDefault(s => s.Name == name) ?? throw new ConfigException($"sampler '{name}' is unknown; expected one of {string.Join(", ", Names)}");

    /// <summary>The sampler used when none is named: each process's own.</summary>
    public static string DefaultFor(DiffusionModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Config.Objective.Name switch
        {
            "ddpm" or "ddpm-vlb" => "ddpm",
            "ncsn" or "ssm" => "als",
            "cnf" => "flow",
            "ve" => "pc",
            _ => "em",
        };
    }

    /// <summary>Each sampler's usual step count (per level for annealed Langevin).</summary>
    public static int DefaultSteps(string sampler, DiffusionModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return sampler switch
        {
            "ddpm" => model.Schedule?.Steps ?? 1000,
            "ddim" => 50,
            "als" => 100,
            "em" or "pc" => 1000,
            "dpm2m" => 20,
            _ => 100,
        };
    }

    /// <summary>Why <paramref name="sampler"/> cannot sample <paramref name="model"/>, or null when it can.</summary>
    public static string? Unsuitable(string sampler, DiffusionModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var info = Get(sampler);
        string trained = $"this one was trained with objective {model.Config.Objective.Name}";
        bool cnf = model.Network is CnfDynamics;
        if (info.Name == "flow") return cnf ? null : $"sampler flow needs a cnf-2d model; {trained}";
        if (cnf) return $"a cnf-2d model is sampled with its flow (sampler flow), not {info.Name}";
        if (model.ScoreNetwork is null) return $"a {model.Config.Network} model holds no score network to sample; {trained}";
        return info.Name switch
        {
            "ddpm" or "ddim" when model.Schedule is null => $"sampler {info.Name} needs a discrete DDPM model (objective ddpm or ddpm-vlb); {trained}",
            "als" when model.Sigmas is null => $"sampler als needs an NCSN-trained model (objective ncsn or ssm); {trained}",
            "ddpm" or "ddim" or "als" => null,
            _ when model.ContinuousSde is null =>
                $"sampler {info.Name} needs a continuous SDE; a {model.Config.Objective.Name} model ({model.Config.Process.Schedule} schedule, {model.Config.Process.Timesteps} steps) has none; use {DefaultFor(model)}",
            _ => null,
        };
    }

    /// <summary>How many units of progress a run reports: its steps (all levels' steps for annealed Langevin), 1 for adaptive solvers.</summary>
    public static int ProgressTotal(string sampler, int steps, DiffusionModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return sampler switch
        {
            "ddpm" => model.Schedule?.Steps ?? steps,
            "als" => (model.Sigmas?.Count ?? 1) * steps,
            "ode-rk45" or "flow" => 1,
            _ => steps,
        };
    }

    /// <summary>
    /// Draws samples of <paramref name="shape"/> (batch axis first) from <paramref name="model"/> with the named
    /// sampler. <paramref name="score"/> is the (possibly guided) score model; <paramref name="steps"/> means steps
    /// (per level for annealed Langevin). Returns the samples and a one-line description.
    /// </summary>
    /// <exception cref="ConfigException">The sampler is unknown or does not apply to the model.</exception>
    public static (Tensor Samples, string Description) Sample(DiffusionModel model, ScoreModel? score, string sampler, int[] shape, int steps,
        double eta, Generator g, int[]? labels, bool clipDenoised, IProgress<int>? progress, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Unsuitable(sampler, model) is { } reason) throw new ConfigException(reason);
        if (sampler == "flow")
        {
            var flow = new ContinuousFlow((CnfDynamics)model.Network);
            var x = flow.Sample(shape[0], g);
            return (x, $"CNF decode with RK45 ({flow.LastStatistics?.FunctionEvaluations} NFE)");
        }
        var m = score ?? model.ScoreModel;
        switch (sampler)
        {
            case "ddpm":
                return (DdpmAncestral.Sample(m, model.Schedule!, shape, g, labels: labels, progress: progress, cancellationToken: cancel),
                    $"DDPM ancestral, {model.Schedule!.Steps} steps");
            case "ddim":
                return (Ddim.Sample(m, model.Schedule!, shape, g, steps, eta, labels, progress, cancel, clipDenoised: clipDenoised ? 1.0 : null),
                    $"DDIM (eta {eta}{(clipDenoised ? ", x0 clipped to [-1, 1]" : "")}), {steps} steps");
            case "als":
                return (AnnealedLangevin.Sample(m, model.Sigmas!, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel),
                    $"annealed Langevin, {model.Sigmas!.Count} levels x {steps} steps");
        }
        var sde = model.ContinuousSde!;
        switch (sampler)
        {
            case "em":
                return (EulerMaruyama.Sample(m, sde, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel), $"reverse-SDE Euler-Maruyama ({sde.Name}), {steps} steps");
            case "pc":
                return (PredictorCorrector.Sample(m, sde, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel),
                    $"predictor-corrector ({sde.Name}, reverse diffusion + 1 Langevin corrector, snr 0.16), {steps} steps, {2 * steps} NFE");
            case "dpm2m":
                return (DpmSolverPlusPlus2M.Sample(m, sde, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel), $"DPM-Solver++(2M) ({sde.Name}), {steps} steps");
        }
        var solver = sampler switch
        {
            "ode" => OdeSolverOptions.Fixed(OdeMethod.Euler, steps),
            "ode-heun" => OdeSolverOptions.Fixed(OdeMethod.Heun, steps),
            "ode-rk4" => OdeSolverOptions.Fixed(OdeMethod.Rk4, steps),
            _ => OdeSolverOptions.Adaptive(1e-5, 1e-5),
        };
        var result = ProbabilityFlow.Sample(m, sde, shape, g, solver, labels: labels, progress: progress, cancellationToken: cancel);
        return (result.Samples, $"probability-flow ODE ({sde.Name}, {solver.Method}), {result.Statistics.FunctionEvaluations} NFE");
    }
}
