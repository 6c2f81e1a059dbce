using DiffusionCore.Cli;
using DiffusionCore.Cli.Commands;

const string Usage = """
diffusion: score-based generative modelling in .NET

usage: diffusion <command> [options]

commands:
  demo     train a DDPM on a 2-D toy set, sample it, plot and score the samples (about a minute)
           --data NAME (two-moons)  --steps N (10000)  --batch N (512)  --samples N (2000)
           --seed N (0)  --out DIR (runs/demo)
  train    train a score model
           --model mlp-2d  --data NAME  --objective ddpm  --steps N  --batch N  --lr X
           --schedule linear|cosine  --timesteps N (1000)  --seed N  --out DIR
  help     this text
""";

if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
{
    Console.WriteLine(Usage);
    return 0;
}
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};
try
{
    var options = new Arguments(args.Skip(1));
    return args[0] switch
    {
        "demo" => ToyCommand.Demo(options, cancel.Token),
        "train" => ToyCommand.Train(options, cancel.Token),
        _ => throw new UsageException($"unknown command '{args[0]}'; run 'diffusion help'"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled");
    return 130;
}
