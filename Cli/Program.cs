using DiffusionCore.Cli.CommandLine;

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};
return CliApp.Run(args, cancel.Token);
