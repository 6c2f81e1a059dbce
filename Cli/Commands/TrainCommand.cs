using System.CommandLine;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Pipelines;
using DiffusionCore.Training;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion train`: any model on any data with any objective, checkpointed and resumable bit for bit.</summary>
internal sealed class TrainCommand : ICliCommand
{
    private readonly Option<string?> _model = CliOptions.Choice("--model", "the network (default mlp-2d; unet-s for --data mnist)", ModelConfig.Networks);
    private readonly Option<string?> _data = CliOptions.Choice("--data", "the training data (default two-moons; mnist for an image model)", ModelConfig.DataSets);
    private readonly Option<string?> _objective = CliOptions.Choice("--objective", "the objective (default ddpm; cnf for cnf-2d, classifier for classifier-s)", ObjectiveConfig.Names);
    private readonly Option<bool> _importance = CliOptions.Flag("--importance", "vp/subvp/ve: draw t from pi(t) ~ 1/sigma_t^2 with importance weights");
    private readonly Option<string?> _schedule = CliOptions.Choice("--schedule", "DDPM beta schedule (default linear)", ["linear", "cosine"]);
    private readonly Option<int?> _timesteps = CliOptions.Int("--timesteps", "DDPM diffusion steps (default 1000)", 2, 100_000);
    private readonly Option<double?> _sigmaMax = CliOptions.Double("--sigma-max", "NCSN largest noise level (default 1)", 1e-6, 1e6);
    private readonly Option<double?> _sigmaMin = CliOptions.Double("--sigma-min", "NCSN smallest noise level (default 0.01)", 1e-6, 1e6);
    private readonly Option<int?> _levels = CliOptions.Int("--levels", "NCSN noise levels (default 10)", 1, 10_000);
    private readonly Option<int?> _classes = CliOptions.Int("--classes", "class-conditional U-Net with this many classes (10 for mnist; default 0, unconditional)", 0, 1000);
    private readonly Option<double?> _pUncond = CliOptions.Double("--p-uncond", "label dropout of a class-conditional model, for classifier-free guidance (default 0.1)", 0, 1);
    private readonly Option<int?> _steps = CliOptions.Int("--steps", "total optimizer steps (default 5000; 2000 for images); with --resume the new total", 1, 100_000_000);
    private readonly Option<int?> _batch = CliOptions.Int("--batch", "batch size (default 512; 32 for images)", 1, 1 << 20);
    private readonly Option<double?> _lr = CliOptions.Double("--lr", "peak Adam learning rate (default 2e-3; 1e-3 for cnf-2d; 2e-4 for images)", 1e-8, 10);
    private readonly Option<int?> _warmup = CliOptions.Int("--warmup", "learning-rate warm-up steps, whatever the total (default 100; 500 for images)", 0, 100_000_000);
    private readonly Option<ulong> _seed = CliOptions.Seed();
    private readonly Option<string?> _out = CliOptions.Text("--out", "output directory: checkpoint.safetensors, train_log.csv, train_loss.png, samples", "DIR", "runs/train");
    private readonly Option<int?> _checkpointEvery = CliOptions.Int("--checkpoint-every", "checkpoint every N steps (0: only at the end and on Ctrl+C)", 0, 100_000_000, 500);
    private readonly Option<bool> _resume = CliOptions.Flag("--resume", "continue the run in --out from its checkpoint, with its own settings, to --steps");
    private readonly Option<int?> _samples = CliOptions.Int("--samples", "samples drawn at the end to score and plot the model (default 2000 points, 36 images; 0: none)", 0, 1 << 20);
    private readonly Option<string> _device = DeviceOption.Create();

    public int Order => 1;

    public Command Build(CliContext context)
    {
        var command = new Command("train", "train a model; writes DIR/checkpoint.safetensors, train_log.csv, train_loss.png, then samples and scores it")
        {
            _model, _data, _objective, _importance, _schedule, _timesteps, _sigmaMax, _sigmaMin, _levels, _classes, _pUncond,
            _steps, _batch, _lr, _warmup, _seed, _out, _checkpointEvery, _resume, _samples, _device,
        };
        command.SetAction(result => Run(result, context.Cancel));
        return command;
    }

    private int Run(ParseResult result, CancellationToken cancel)
    {
        string outDir = result.GetValue(_out)!;
        bool resume = result.GetValue(_resume);
        int checkpointEvery = result.GetValue(_checkpointEvery)!.Value;
        if (resume)
        {
            var fixedByRun = new Option[] { _model, _data, _objective, _importance, _schedule, _timesteps, _sigmaMax, _sigmaMin, _levels, _classes, _pUncond, _batch, _lr, _warmup, _seed }
                .Where(result.Given).Select(o => o.Name).ToArray();
            if (fixedByRun.Length > 0)
                throw new UsageException($"--resume continues the saved run with the settings it started with; {string.Join(", ", fixedByRun)} cannot be changed (only --steps, --checkpoint-every, --samples and --device)");
        }
        // Everything is checked before anything is written: the settings, the device, then the output directory.
        var settings = resume ? default : (Model: ReadModel(result), Training: ReadTraining(result));
        settings.Training?.Validate();
        string checkpoint = Path.Combine(outDir, Trainer.CheckpointFileName);
        if (File.Exists(outDir)) throw new UsageException($"--out {outDir} is an existing file, not a directory");
        if (!resume && File.Exists(checkpoint))
            throw new UsageException($"--out {outDir} already holds a checkpoint; continue it with --resume, or train into another --out");
        if (resume && !File.Exists(checkpoint)) throw new UsageException($"--resume: no checkpoint at {checkpoint}");
        var device = DeviceOption.Resolve(result.GetValue(_device)!);
        OutputPaths.CheckDirectory(outDir, "--out");
        using var onDevice = DeviceOption.Use(device);

        using var session = resume
            ? TrainingSession.Resume(outDir, result.GetValue(_steps), checkpointEvery, device)
            : TrainingSession.Start(settings.Model!, settings.Training!, outDir, checkpointEvery, device);
        var model = session.Model.Config;
        if (resume) Console.WriteLine($"resumed {checkpoint} at step {session.StartStep} of {session.Training.Steps}");
        Console.WriteLine($"training {model.Network} ({session.Model.ParameterCount:N0} parameters) on {model.Data} with objective {model.Objective.Name}, " +
            $"{session.Training.Steps} steps of batch {session.Training.Batch} (warm-up {session.Training.WarmupSteps}), on {device.Name} ({Environment.ProcessorCount} CPU cores)");
        TrainLoop(session, cancel);
        Console.WriteLine($"wrote {session.Trainer.CheckpointPath}, {session.Trainer.LogPath}, {session.LossPlotPath}");
        return Evaluate.AfterTraining(session, outDir, cancel, result.GetValue(_samples));
    }

    /// <summary>Runs the session with a progress bar (smoothed loss, steps/s); Ctrl+C checkpoints and stops.</summary>
    public static void TrainLoop(TrainingSession session, CancellationToken cancel, ConsoleProgress? bar = null, Func<TrainingProgress, double>? position = null)
    {
        var trainer = session.Trainer;
        using var own = bar is null ? ConsoleProgress.Start("train", trainer.Options.Steps, trainer.Step) : null;
        var shown = bar ?? own!;
        double smoothed = double.NaN;
        trainer.Run(new SyncProgress<TrainingProgress>(p =>
        {
            smoothed = double.IsNaN(smoothed) ? p.Loss : 0.98 * smoothed + 0.02 * p.Loss;
            shown.Update(position?.Invoke(p) ?? p.Step, $"loss {smoothed:F4}{(position is null ? "" : $", step {p.Step}, {p.StepsPerSecond:F2} steps/s")}");
        }), cancel);
    }

    private ModelConfig ReadModel(ParseResult r)
    {
        string network = r.GetValue(_model) ?? (r.GetValue(_data) == "mnist" ? "unet-s" : "mlp-2d");
        string data = r.GetValue(_data) ?? (network is "unet-s" or "unet-b" or "ddpm-cifar10" or "classifier-s" ? "mnist" : "two-moons");
        string objective = r.GetValue(_objective) ?? network switch { "cnf-2d" => "cnf", "classifier-s" => "classifier", _ => "ddpm" };
        var process = new ProcessConfig();
        process = process with
        {
            Schedule = r.GetValue(_schedule) ?? process.Schedule,
            Timesteps = r.GetValue(_timesteps) ?? process.Timesteps,
            SigmaMax = r.GetValue(_sigmaMax) ?? process.SigmaMax,
            SigmaMin = r.GetValue(_sigmaMin) ?? process.SigmaMin,
            Levels = r.GetValue(_levels) ?? process.Levels,
        };
        var config = ModelConfig.Create(network, data, objective, r.GetValue(_classes) ?? 0, process, r.GetValue(_importance), r.GetValue(_pUncond) ?? 0.1);
        config.Validate();
        // Options that shape nothing for this objective are refused, not silently ignored.
        string kind = config.Process.Kind;
        var ignored = new List<string>();
        if (kind != "ddpm") ignored.AddRange(new Option[] { _schedule, _timesteps }.Where(r.Given).Select(o => o.Name));
        if (kind != "ncsn") ignored.AddRange(new Option[] { _sigmaMax, _sigmaMin, _levels }.Where(r.Given).Select(o => o.Name));
        if (config.Classes == 0 && r.Given(_pUncond)) ignored.Add(_pUncond.Name);
        if (ignored.Count > 0) throw new UsageException($"{string.Join(", ", ignored)} {(ignored.Count == 1 ? "does" : "do")} not apply to --objective {objective}{(ignored.Contains(_pUncond.Name) ? " without --classes" : "")}");
        return config;
    }

    private TrainingConfig ReadTraining(ParseResult r)
    {
        var model = ReadModel(r);
        var defaults = TrainingConfig.DefaultsFor(model);
        return defaults with
        {
            Steps = r.GetValue(_steps) ?? defaults.Steps,
            Batch = r.GetValue(_batch) ?? defaults.Batch,
            LearningRate = r.GetValue(_lr) ?? defaults.LearningRate,
            WarmupSteps = r.GetValue(_warmup) ?? defaults.WarmupSteps,
            Seed = r.GetValue(_seed),
        };
    }
}
