using System.CommandLine;
using DiffusionCore.Cli.CommandLine;
using DiffusionCore.Cli.Runs;
using DiffusionCore.Engine;
using DiffusionCore.Pipelines;
using DiffusionCore.Training.Data;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion sample`: any sampler on a trained checkpoint, with classifier or classifier-free guidance.</summary>
internal sealed class SampleCommand : ICliCommand
{
    private readonly Option<string?> _checkpoint = CliOptions.Text("--checkpoint", "the checkpoint (written by `diffusion train`)", "FILE");
    private readonly SamplerChoice _sampler = new();
    private readonly Option<int?> _count = CliOptions.Int("--count", "samples to draw (default 64 images, 2000 points)", 1, 1 << 20);
    private readonly Option<ulong> _seed = CliOptions.Seed();
    private readonly Option<double?> _guidance = CliOptions.Double("--guidance", "guidance scale: classifier-free for a class-conditional model, else with --classifier", 0, 100);
    private readonly Option<int?> _class = CliOptions.Int("--class", "the class of every sample (default with guidance: one row per class)", 0, 1000);
    private readonly Option<string?> _classifier = CliOptions.Text("--classifier", "a classifier-s checkpoint, for classifier guidance of an unconditional model", "FILE");
    private readonly Option<string?> _out = CliOptions.Text("--out", "the PNG to write (default: samples-SAMPLER.png beside the checkpoint); 2-D models also write OUT-trajectories.png", "FILE.png");
    private readonly Option<string?> _images = CliOptions.Text("--images", "images only: also write one PNG per image into this directory", "DIR");
    private readonly Option<string> _device = DeviceOption.Create();

    public int Order => 2;

    public Command Build(CliContext context)
    {
        var command = new Command("sample", "draw samples from a checkpoint; images -> a captioned grid PNG, 2-D -> scatter and trajectory PNGs")
        {
            _checkpoint, _count, _seed, _guidance, _class, _classifier, _out, _images, _device,
        };
        _checkpoint.Required = true;
        _sampler.AddTo(command);
        command.SetAction(result => Run(result, context.Cancel));
        return command;
    }

    private int Run(ParseResult result, CancellationToken cancel)
    {
        string checkpoint = result.GetValue(_checkpoint)!;
        string? outPath = result.GetValue(_out);
        string? imagesDir = result.GetValue(_images);
        // Output paths are checked before any work: a long sampling run must not fail at its end.
        if (outPath is not null) OutputPaths.CheckFile(outPath, "--out", ".png");
        if (imagesDir is not null && File.Exists(imagesDir)) throw new UsageException($"--images {imagesDir} is an existing file, not a directory");
        var device = DeviceOption.Resolve(result.GetValue(_device)!);
        using var onDevice = DeviceOption.Use(device);

        var model = CheckpointFiles.LoadModel(checkpoint, "--checkpoint", device);
        var classifierPath = result.GetValue(_classifier);
        if (classifierPath is not null && model.Config.Classes > 0)
            throw new UsageException("--classifier is for unconditional models; this one is class-conditional and is guided classifier-free");
        var classifier = classifierPath is null ? null : CheckpointFiles.LoadModel(classifierPath, "--classifier", device);
        var pipeline = new DiffusionPipeline(model, classifier);
        var options = _sampler.Read(result, model, new GenerationOptions
        {
            Count = result.GetValue(_count) ?? (model.Config.IsImage ? 64 : 2000),
            Guidance = result.GetValue(_guidance),
            Class = result.GetValue(_class),
            Generator = new Generator(result.GetValue(_seed)).Split(11),
        });
        if (imagesDir is not null && !model.Config.IsImage) throw new UsageException("--images writes one PNG per image; this model samples 2-D points");
        pipeline.Validate(options);
        string dir = Path.GetDirectoryName(Path.GetFullPath(checkpoint))!;
        outPath = OutputPaths.CheckFile(outPath ?? Path.Combine(dir, $"samples-{options.Sampler}.png"), "--out", ".png");
        if (imagesDir is not null) OutputPaths.CheckDirectory(imagesDir, "--images");

        if (model.Config.IsImage) Evaluate.ImageSamples(pipeline, options, outPath, imagesDir, cancel);
        else
        {
            // Beside --out, so that sampling never overwrites the training run's own trajectories.png.
            string trajectories = Path.Combine(Path.GetDirectoryName(outPath)!, Path.GetFileNameWithoutExtension(outPath) + "-trajectories.png");
            Evaluate.ToyReport(pipeline, options, 0, outPath, model.Network is Models.Networks.Cnf.CnfDynamics ? null : trajectories, cancel);
        }
        return 0;
    }
}

/// <summary>Checkpoint files named on the command line.</summary>
internal static class CheckpointFiles
{
    /// <summary>Loads the model at <paramref name="path"/> and says what it is; a bad file is one line naming it.</summary>
    public static DiffusionModel LoadModel(string path, string option, Device device)
    {
        if (Directory.Exists(path)) throw new UsageException($"{option} {path} is a directory; give the checkpoint file (e.g. {Path.Combine(path, Training.Trainer.CheckpointFileName)})");
        if (!File.Exists(path)) throw new UsageException($"{option}: no checkpoint at {path}");
        var model = DiffusionModel.Load(path, device);
        var c = model.Config;
        Console.WriteLine($"loaded {path}: {c.Network} ({model.ParameterCount:N0} parameters, {(model.UsesEmaWeights ? "EMA" : "raw")} weights) trained on {c.Data} with objective {c.Objective.Name}{(c.Classes > 0 ? $", {c.Classes} classes" : "")}");
        return model;
    }

    /// <summary>The bundled MNIST split a --data name asks for.</summary>
    public static MnistSplit Split(string data) => data == "mnist-train" ? MnistSplit.Train : MnistSplit.Test;
}
