using System.CommandLine;
using System.Globalization;
using DiffusionCore.Engine;

namespace DiffusionCore.Cli.CommandLine;

/// <summary>
/// `--device cpu|cuda[:N]|best`: where tensors live for the command. cpu is the managed CPU backend; cuda[:N] the ILGPU
/// backend on CUDA device N (0 by default), an error when there is no such device; best is cuda:0 when present,
/// else cpu.
/// </summary>
internal static class DeviceOption
{
    /// <summary>The option, "cpu" unless given.</summary>
    public static Option<string> Create()
    {
        var option = new Option<string>("--device")
        {
            Description = "where the tensors live: cpu, cuda[:N] (the ILGPU backend on CUDA device N) or best (cuda:0 when present, else cpu)",
            HelpName = "cpu|cuda[:N]|best",
            DefaultValueFactory = _ => "cpu",
        };
        option.CustomParser = r =>
        {
            string s = r.Tokens.Count == 1 ? r.Tokens[0].Value : "";
            if (Ordinal(s) is null) r.AddError($"--device must be cpu, cuda, cuda:N or best, got '{s}'{CliOptions.Suggest(s, ["cpu", "cuda", "best"])}");
            return s;
        };
        return option;
    }

    // -1 for cpu, -2 for best, N for cuda:N; null when malformed.
    private static int? Ordinal(string s) => s switch
    {
        "cpu" => -1,
        "best" => -2,
        "cuda" => 0,
        _ when s.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(s.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int n) => n,
        _ => null,
    };

    /// <summary>The device <paramref name="name"/> names.</summary>
    /// <exception cref="UsageException">The name is malformed, or names a CUDA device that is not there.</exception>
    public static Device Resolve(string name)
    {
        int ordinal = Ordinal(name) ?? throw new UsageException($"--device must be cpu, cuda, cuda:N or best, got '{name}'");
        if (ordinal == -1) return Device.Cpu;
        if (ordinal == -2) return Device.Best();
        int count = Device.CudaDeviceCount;
        if (ordinal >= count)
        {
            throw new UsageException(count == 0
                ? $"--device {name}: no CUDA device found (no NVIDIA driver or GPU); use --device cpu, or best to fall back to the CPU"
                : $"--device {name}: there are {count} CUDA device(s), numbered 0 to {count - 1}");
        }
        return Device.Cuda(ordinal);
    }

    /// <summary>Makes <paramref name="device"/> the default device until disposed (then the previous one is restored).</summary>
    public static IDisposable Use(Device device)
    {
        var previous = Device.Default;
        Device.Default = device;
        return new Restore(previous);
    }

    private sealed class Restore(Device previous) : IDisposable
    {
        public void Dispose() => Device.Default = previous;
    }
}
