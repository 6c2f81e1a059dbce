using DiffusionCore.Engine;
using DiffusionCore.Models.Score;
using DiffusionCore.Sampling.Flows;
using DiffusionCore.Sampling.Ode;
using DiffusionCore.Sampling.Samplers;

namespace DiffusionCore.Cli.Runs;

/// <summary>The samplers the CLI offers, and which apply to which trained process.</summary>
internal static class SamplerChoice
{
    public static readonly string[] Names = ["ddpm", "ddim", "als", "em", "pc", "ode", "ode-heun", "ode-rk4", "ode-rk45", "dpm2m", "flow"];

    /// <summary>The sampler used when none is named: each process's own.</summary>
    public static string Default(RunModel run) => run.Config.Objective switch
    {
        "ddpm" or "ddpm-vlb" => "ddpm",
        "ncsn" or "ssm" => "als",
        "cnf" => "flow",
        "ve" => "pc",
        _ => "em",
    };

    /// <summary>Default step counts: each sampler's usual setting.</summary>
    public static int DefaultSteps(string sampler, RunModel run) => sampler switch
    {
        "ddpm" => run.Schedule?.Steps ?? 1000,
        "ddim" => 50,
        "als" => 100,
        "em" or "pc" => 1000,
        "dpm2m" => 20,
        _ => 100,
    };

    /// <summary>What the sampler reports as progress: its steps (per level for annealed Langevin, all levels counted).</summary>
    public static int Expected(string sampler, int steps, RunModel run) => sampler switch
    {
        "ddpm" => run.Schedule?.Steps ?? steps,
        "als" => (run.Sigmas?.Count ?? 1) * steps,
        "ode-rk45" or "flow" => 1,
        _ => steps,
    };

    /// <summary>
    /// Draws samples of <paramref name="shape"/> (batch axis first) with the named sampler.
    /// <paramref name="model"/> is the (possibly guided) score model; <paramref name="steps"/> means steps
    /// (per level for annealed Langevin). Returns the samples and a one-line description with the NFE.
    /// </summary>
    public static (Tensor Samples, string Description) Sample(RunModel run, ScoreModel model, string sampler, int[] shape, int steps,
        double eta, Generator g, int[]? labels, IProgress<int>? progress, CancellationToken cancel)
    {
        if (!Names.Contains(sampler)) throw new UsageException($"--sampler '{sampler}' is unknown; expected one of {string.Join(", ", Names)}");
        if (sampler == "flow")
        {
            if (run.Network is not Models.Networks.Cnf.CnfDynamics dynamics) throw new UsageException("--sampler flow needs a cnf-2d checkpoint");
            var flow = new ContinuousFlow(dynamics);
            var x = flow.Sample(shape[0], g);
            return (x, $"CNF decode with RK45 ({flow.LastStatistics?.FunctionEvaluations} NFE)");
        }
        switch (sampler)
        {
            case "ddpm":
                return (DdpmAncestral.Sample(model, NeedSchedule(run, sampler), shape, g, labels: labels, progress: progress, cancellationToken: cancel),
                    $"DDPM ancestral, {run.Schedule!.Steps} steps");
            case "ddim":
                return (Ddim.Sample(model, NeedSchedule(run, sampler), shape, g, steps, eta, labels, progress, cancel, clipDenoised: run.Config.IsImage ? 1.0 : null),
                    $"DDIM (eta {eta}{(run.Config.IsImage ? ", x0 clipped to [-1, 1]" : "")}), {steps} steps");
            case "als":
                if (run.Sigmas is null) throw new UsageException($"--sampler als needs an NCSN-trained model (--objective ncsn or ssm); this one was trained with {run.Config.Objective}");
                return (AnnealedLangevin.Sample(model, run.Sigmas, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel),
                    $"annealed Langevin, {run.Sigmas.Count} levels x {steps} steps");
        }
        var sde = run.ContinuousSde ?? throw new UsageException($"--sampler {sampler} needs a continuous SDE; a {run.Config.Objective} model ({run.Config.Schedule} schedule, {run.Config.Timesteps} steps) has none; use {Default(run)}");
        switch (sampler)
        {
            case "em":
                return (EulerMaruyama.Sample(model, sde, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel), $"reverse-SDE Euler-Maruyama ({sde.Name}), {steps} steps");
            case "pc":
                return (PredictorCorrector.Sample(model, sde, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel),
                    $"predictor-corrector ({sde.Name}, reverse diffusion + 1 Langevin corrector, snr 0.16), {steps} steps, {2 * steps} NFE");
            case "dpm2m":
                return (DpmSolverPlusPlus2M.Sample(model, sde, shape, g, steps, labels: labels, progress: progress, cancellationToken: cancel), $"DPM-Solver++(2M) ({sde.Name}), {steps} steps");
        }
        var solver = sampler switch
        {
            "ode" => OdeSolverOptions.Fixed(OdeMethod.Euler, steps),
            "ode-heun" => OdeSolverOptions.Fixed(OdeMethod.Heun, steps),
            "ode-rk4" => OdeSolverOptions.Fixed(OdeMethod.Rk4, steps),
            _ => OdeSolverOptions.Adaptive(1e-5, 1e-5),
        };
        var result = ProbabilityFlow.Sample(model, sde, shape, g, solver, labels: labels, progress: progress, cancellationToken: cancel);
        return (result.Samples, $"probability-flow ODE ({sde.Name}, {solver.Method}), {result.Statistics.FunctionEvaluations} NFE");
    }

    private static Models.Processes.DdpmSchedule NeedSchedule(RunModel run, string sampler) => run.Schedule
        ?? throw new UsageException($"--sampler {sampler} needs a discrete DDPM model (--objective ddpm or ddpm-vlb); this one was trained with {run.Config.Objective}");
}
