using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using NUnit.Framework;

namespace DiffusionCore.Tests.Pipelines;

/// <summary>
/// The README's C# programs compile as shown: every ```csharp block that starts with a using directive is compiled as
/// a console program (top-level statements, the SDK's implicit usings, warnings as errors) against the DiffusionCore
/// assemblies; and the quick start is samples/Quickstart/Program.cs word for word, which CI builds and runs against
/// the packages.
/// </summary>
public sealed class ReadmeSnippetTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DiffusionCore.sln"))) return dir.FullName;
        throw new InvalidOperationException("the repository root (DiffusionCore.sln) is not above the test directory");
    }

    private static string[] Programs() => Regex.Matches(File.ReadAllText(Path.Combine(Root, "README.md")).ReplaceLineEndings("\n"), "```csharp\n(.*?)```", RegexOptions.Singleline)
        .Select(m => m.Groups[1].Value)
        .Where(code => code.TrimStart().StartsWith("using ", StringComparison.Ordinal) || code.TrimStart().StartsWith("//", StringComparison.Ordinal))
        .ToArray();

    [Test]
    public void TheQuickStartIsTheSampleProgram()
    {
        string sample = File.ReadAllText(Path.Combine(Root, "samples", "Quickstart", "Program.cs")).ReplaceLineEndings("\n");
        Assert.That(Programs(), Has.Some.EqualTo(sample), "README.md must show samples/Quickstart/Program.cs verbatim");
    }

    [Test]
    public void EveryReadmeProgramCompiles()
    {
        var programs = Programs();
        Assert.That(programs, Has.Length.GreaterThanOrEqualTo(2), "the quick start and the pipeline example");
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => p.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            .Select(p => MetadataReference.CreateFromFile(p));
        // What `dotnet new console` gets from <ImplicitUsings>enable</ImplicitUsings>.
        var implicitUsings = CSharpSyntaxTree.ParseText(string.Concat(
            new[] { "System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks" }
                .Select(n => $"global using global::{n};\n")));
        for (int i = 0; i < programs.Length; i++)
        {
            var tree = CSharpSyntaxTree.ParseText(programs[i], new CSharpParseOptions(LanguageVersion.Latest), path: $"README-program-{i}.cs");
            var compilation = CSharpCompilation.Create($"ReadmeProgram{i}", [implicitUsings, tree], references,
                new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
            using var stream = new MemoryStream();
            var result = compilation.Emit(stream);
            var problems = result.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning && !d.Id.StartsWith("CS8019", StringComparison.Ordinal)).ToArray();
            Assert.That(problems.Select(d => d.ToString()), Is.Empty, $"README program {i}:\n{programs[i]}");
            Assert.That(result.Success);
        }
    }
}
