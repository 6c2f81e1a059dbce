using System.CommandLine;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Pipelines;

namespace DiffusionCore.Cli.Runs;

/// <summary>
/// The CLI's sampler options (--sampler, --steps, --eta): their names, help and defaults come from
/// <see cref="SamplerCatalog"/>, and an option the chosen sampler ignores is an error. The one place where the CLI
/// meets the samplers.
/// </summary>
internal sealed class SamplerChoice
{
    public Option<string?> Sampler { get; } = Choice();

    public Option<int?> Steps { get; } = CliOptions.Int("--steps", "sampler steps, per noise level for als (default: the sampler's own; ddpm, ode-rk45 and flow take none)", 1, 100_000);

    public Option<double?> Eta { get; } = CliOptions.Double("--eta", "DDIM's eta: 0 deterministic, 1 DDPM-like (ddim only)", 0, 1);

    // The option's help lists every sampler with its one-line summary.
    private static Option<string?> Choice()
    {
        var option = CliOptions.Choice("--sampler", "the sampler (default: the model's own)", SamplerCatalog.Names);
        option.Description = "the sampler (default: the model's own):" + string.Concat(SamplerCatalog.All.Select(s => $"{Environment.NewLine}  {s.Name,-9} {s.Summary}"));
        return option;
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Sampler);
        command.Options.Add(Steps);
        command.Options.Add(Eta);
    }

    /// <summary>The generation settings the options ask for, checked against the model.</summary>
    /// <exception cref="UsageException">The sampler does not apply to the model, or an option given is one it ignores.</exception>
    public GenerationOptions Read(ParseResult result, DiffusionModel model, GenerationOptions start)
    {
        string sampler = result.GetValue(Sampler) ?? SamplerCatalog.DefaultFor(model);
        var info = SamplerCatalog.Get(sampler);
        if (SamplerCatalog.Unsuitable(sampler, model) is { } reason) throw new UsageException($"--sampler {sampler}: {reason}");
        int? steps = result.GetValue(Steps);
        if (steps is not null && !info.TakesSteps)
        {
            throw new UsageException(sampler == "ddpm"
                ? $"--steps does not apply to --sampler ddpm, which runs all {model.Schedule?.Steps} steps of the model's schedule; use --sampler ddim --steps N for fewer"
                : $"--steps does not apply to --sampler {sampler}, whose adaptive solver picks its own steps");
        }
        double? eta = result.GetValue(Eta);
        if (eta is not null && !info.TakesEta) throw new UsageException($"--eta applies to --sampler ddim only, not {sampler}");
        return start with { Sampler = sampler, Steps = steps, Eta = eta ?? 0 };
    }
}
