using System.CommandLine;

namespace DiffusionCore.Cli.CommandLine;

/// <summary>
/// One `diffusion` subcommand. Every non-abstract implementation in this assembly is found by <see cref="CliApp"/>
/// and added to the root command, so a new command is one new file.
/// </summary>
internal interface ICliCommand
{
    /// <summary>Position in `diffusion help` (smaller first).</summary>
    int Order { get; }

    /// <summary>The command with its options and its action (which returns the exit code).</summary>
    Command Build(CliContext context);
}

/// <summary>What every command's action may use besides its parse result.</summary>
/// <param name="Cancel">Set by Ctrl+C (training checkpoints and stops).</param>
internal sealed record CliContext(CancellationToken Cancel);

/// <summary>Raised for a bad command line or a request that does not fit; the message says what was wrong and what is accepted.</summary>
internal sealed class UsageException(string message) : Exception(message);
