using DiffusionCore.Engine;
using DiffusionCore.Engine.Serialization;
using DiffusionCore.Training.Checkpointing;

namespace DiffusionCore.Cli.Runs;

/// <summary>Rebuilds a trained run from its checkpoint alone (config from the metadata, EMA weights when saved).</summary>
internal static class LoadedRun
{
    public static RunModel Open(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"no checkpoint at {path}");
        SafeTensorsFile file;
        try { file = SafeTensors.Load(path); }
        catch (IOException e) { throw new UsageException($"cannot read checkpoint: {e.Message}"); }
        var config = RunConfig.FromMetadata(file.Metadata, path);
        var run = RunModel.Build(config, new Generator(config.Seed).Split(1));
        bool ema = file.Names.Any(n => n.StartsWith("ema.", StringComparison.Ordinal));
        try { Checkpoint.LoadWeights(path, run.Network, ema); }
        catch (CheckpointException e) { throw new UsageException(e.Message); }
        run.Network.SetTraining(false);
        Console.WriteLine($"loaded {path}: {config.Model} ({run.Network.ParameterCount:N0} parameters, {(ema ? "EMA" : "raw")} weights) trained on {config.Data} with --objective {config.Objective}");
        return run;
    }
}
