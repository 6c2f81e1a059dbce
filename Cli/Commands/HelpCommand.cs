using System.CommandLine;
using DiffusionCore.Cli.CommandLine;

namespace DiffusionCore.Cli.Commands;

/// <summary>`diffusion help [COMMAND]`: the command list, or one command's options (the same as `diffusion COMMAND --help`).</summary>
internal sealed class HelpCommand : ICliCommand
{
    private readonly Argument<string?> _command = new("command") { Description = "the command to describe", Arity = ArgumentArity.ZeroOrOne };

    public int Order => 100;

    public Command Build(CliContext context)
    {
        var command = new Command("help", "this list, or a command's options (diffusion help train)") { _command };
        command.SetAction(result =>
        {
            var root = (RootCommand)result.RootCommandResult.Command;
            string? name = result.GetValue(_command);
            if (name is null)
            {
                CliApp.WriteHelp(root);
                return 0;
            }
            if (root.Subcommands.All(c => c.Name != name))
                throw new UsageException($"unknown command '{name}'{CliOptions.Suggest(name, root.Subcommands.Select(c => c.Name))} (run 'diffusion help')");
            return root.Parse([name, "--help"]).Invoke();
        });
        return command;
    }
}
