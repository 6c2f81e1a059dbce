using DiffusionCore.Cli;
using DiffusionCore.Cli.Commands;

string usage = $"""
diffusion: score-based generative modelling in .NET

usage: diffusion <command> [options]

commands:
{DemoCommand.Usage}{TrainCommand.Usage}{SampleCommand.Usage}{LikelihoodCommand.Usage}{EvaluateCommand.Usage}{TrainClassifierCommand.Usage}  help     this text
""";

if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
{
    Console.WriteLine(usage);
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
        "demo" => DemoCommand.Run(options, cancel.Token),
        "train" => TrainCommand.Run(options, cancel.Token),
        "sample" => SampleCommand.Run(options, cancel.Token),
        "likelihood" => LikelihoodCommand.Run(options, cancel.Token),
        "evaluate" => EvaluateCommand.Run(options, cancel.Token),
        "train-classifier" => TrainClassifierCommand.Run(options, cancel.Token),
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
    Console.Error.WriteLine("cancelled (the last completed step was checkpointed)");
    return 130;
}
