using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Reflection;
using DiffusionCore.Kernels;
using DiffusionCore.Pipelines;
using DiffusionCore.Training;

namespace DiffusionCore.Cli.CommandLine;

/// <summary>
/// The `diffusion` command line: the root command with every <see cref="ICliCommand"/> of this assembly, parsing, and
/// the one rule for errors: one line on standard error starting "error: ", exit code 2, never a stack trace.
/// Ctrl+C exits 130 after the command has checkpointed.
/// </summary>
internal static class CliApp
{
    /// <summary>Exit code of a bad command line, bad input or an unusable environment.</summary>
    public const int UsageExit = 2;

    /// <summary>Exit code after Ctrl+C.</summary>
    public const int CancelledExit = 130;

    /// <summary>Exit code of an internal error (a bug): still one line, the type and message, unless DIFFUSION_TRACE=1.</summary>
    public const int InternalErrorExit = 70;

    /// <summary>The commands, in help order.</summary>
    public static IReadOnlyList<ICliCommand> Commands { get; } = typeof(CliApp).Assembly.GetTypes()
        .Where(t => typeof(ICliCommand).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
        .Select(t => (ICliCommand)Activator.CreateInstance(t)!)
        .OrderBy(c => c.Order)
        .ToArray();

    /// <summary>The root command with every subcommand.</summary>
    public static RootCommand BuildRoot(CliContext context)
    {
        var root = new RootCommand("diffusion: score-based generative modelling in .NET (train, sample and evaluate diffusion models)");
        foreach (var command in Commands) root.Subcommands.Add(command.Build(context));
        return root;
    }

    /// <summary>Parses <paramref name="args"/>, runs the command and returns its exit code; errors go to standard error as one line.</summary>
    public static int Run(string[] args, CancellationToken cancel)
    {
        var root = BuildRoot(new CliContext(cancel));
        if (args.Length == 0)
        {
            WriteHelp(root);
            return 0;
        }
        var result = root.Parse(args);
        if (FirstError(result) is { } error) return Fail(error);
        try
        {
            return result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (OperationCanceledException)
        {
            Console.Out.Flush();
            Console.Error.WriteLine("cancelled (the last completed step was checkpointed)");
            return CancelledExit;
        }
        catch (Exception e) when (Describe(e) is { } message)
        {
            return Fail(message);
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("DIFFUSION_TRACE") != "1")
        {
            Console.Error.WriteLine($"error: internal error ({e.GetType().Name}): {OneLine(e.Message)} (set DIFFUSION_TRACE=1 for the stack trace, and please report it)");
            return InternalErrorExit;
        }
    }

    /// <summary>Prints the root help (the command list).</summary>
    public static void WriteHelp(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().First();
        root.Parse([help.Name]).Invoke();
    }

    /// <summary>
    /// The one-line message for an exception caused by the input or the environment (a bad file, a missing device, a
    /// request that does not fit the model), or null for anything else (a bug).
    /// </summary>
    public static string? Describe(Exception e) => e switch
    {
        UsageException or ConfigException => e.Message,
        TrainingDivergedException d => $"{d.Message}; lower --lr and run again, or --resume from the last checkpoint",
        FileNotFoundException f => f.Message,
        DirectoryNotFoundException d => d.Message,
        UnauthorizedAccessException u => $"permission denied: {u.Message}",
        IOException io => io.Message,
        KernelException k => $"device error: {k.Message}",
        OutOfMemoryException => "out of memory: try a smaller --batch or --count",
        _ => null,
    } is { } message ? OneLine(message) : null;

    private static int Fail(string message)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"error: {message}");
        return UsageExit;
    }

    private static string OneLine(string message) => string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>
    /// The first problem of a parse as one line: a repeated option, an option without its value, an unknown option or
    /// command (with the nearest known one), or an option's own range error. Null when the parse is clean.
    /// </summary>
    public static string? FirstError(ParseResult result)
    {
        var command = result.CommandResult.Command;
        string where = command is RootCommand ? "diffusion" : $"diffusion {command.Name}";
        foreach (var child in result.CommandResult.Children.OfType<OptionResult>())
        {
            if (child.IdentifierTokenCount > 1) return $"{child.Option.Name} is given {child.IdentifierTokenCount} times; give it once";
        }
        if (result.Errors.Count == 0) return null;
        foreach (string token in result.UnmatchedTokens)
        {
            if (command is RootCommand)
            {
                return token.StartsWith('-')
                    ? $"unknown option '{token}'; run 'diffusion help'"
                    : $"unknown command '{token}'{CliOptions.Suggest(token, command.Subcommands.Select(c => c.Name))} (run 'diffusion help')";
            }
            if (token.StartsWith('-'))
            {
                var names = command.Options.SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal));
                return $"'{where}' does not take {token}{CliOptions.Suggest(token, names)} (run '{where} --help')";
            }
            int at = Array.IndexOf(result.Tokens.Select(t => t.Value).ToArray(), token);
            string? previous = at > 0 ? result.Tokens[at - 1].Value : null;
            var flag = command.Options.FirstOrDefault(o => o.Name == previous && o.Arity.MaximumNumberOfValues == 0);
            return flag is not null
                ? $"{flag.Name} is a flag and takes no value, got '{token}'"
                : $"unexpected argument '{token}' (options look like --name value; run '{where} --help')";
        }
        var first = result.Errors[0];
        if (first.SymbolResult is OptionResult { IdentifierTokenCount: 0 } required)
            return $"{required.Option.Name} {required.Option.HelpName} is required (run '{where} --help')";
        if (first.SymbolResult is OptionResult option && option.Tokens.Count == 0 && option.Option.Arity.MinimumNumberOfValues > 0)
            return $"{option.Option.Name} needs a value";
        if (first.SymbolResult is ArgumentResult { Parent: OptionResult valued } && valued.Tokens.Count == 0)
            return $"{valued.Option.Name} needs a value";
        if (command is RootCommand && first.Message.Contains("Required command", StringComparison.Ordinal))
            return "no command given; run 'diffusion help'";
        return first.Message;
    }
}
