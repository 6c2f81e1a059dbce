using System.Collections.Concurrent;

namespace DiffusionCore.Bench.Workloads;

/// <summary>
/// Checks, once per workload and pass and before any timing, that our sides compute what libtorch computes
/// on the same inputs, and keeps the outcome for the summary table. BenchmarkDotNet runs the global set-up
/// once per benchmark case; the first case of a workload and pass validates, the others reuse the outcome
/// (a failure is rethrown, so no case of a failed workload is timed). End-to-end workloads, whose sides run
/// differently initialised models, are checked for finite outputs of equal lengths and equal parameter counts
/// instead (<see cref="WorkloadSides.ValuesComparable"/>).
/// </summary>
public static class PeerValidation
{
    /// <summary>
    /// Largest accepted relative error ‖ours − libtorch‖₂ / ‖libtorch‖₂ of any output or gradient (for an
    /// output that is zero in exact arithmetic, <see cref="WorkloadSides.ZeroOutputs"/>, relative to a sibling's norm).
    /// Both sides compute in float32 (unit roundoff u = 2^-24 ≈ 6e-8) with different blockings and
    /// summation orders; the longest reduction here is K3's dw/db over N·H·W = 32768 terms, whose rounding
    /// error with random signs grows like √n·u ≈ 1.1e-5 relative, and exp, rsqrt and the online softmax add
    /// a few u more. 1e-4 leaves that a factor of about 10, while an indexing, scaling or missing-term error
    /// gives a relative error of order 1e-2 or more (one wrong row of K1's 1024 already gives 3e-2).
    /// Observed on 2026-11-23: at most 2.7e-6 (K3 forward+backward), 1e-7 to 6e-7 elsewhere.
    /// </summary>
    public const double RelativeTolerance = 1e-4;

    private static readonly ConcurrentDictionary<(Type Type, Pass Pass), Outcome> Outcomes = new();

    /// <summary>The outcome of one workload and pass: the largest relative error per side, or why it failed.</summary>
    /// <param name="WorstError">Per non-reference side name, the largest relative error over its outputs (empty
    /// when the values were not compared).</param>
    /// <param name="Failure">The failure message, or null when every side agreed.</param>
    /// <param name="Note">What was checked instead of the values, when they were not compared
    /// (<see cref="WorkloadSides.ValuesComparable"/> false); null otherwise.</param>
    public sealed record Outcome(IReadOnlyDictionary<string, double> WorstError, string? Failure, string? Note = null);

    /// <summary>The outcome for <paramref name="type"/> and <paramref name="pass"/>, or null when not validated.</summary>
    public static Outcome? Of(Type type, Pass pass) => Outcomes.GetValueOrDefault((type, pass));

    /// <summary>
    /// Compares every side of <paramref name="sides"/> with libtorch's, unless done before for this workload
    /// and pass; throws on disagreement (now or recorded earlier).
    /// </summary>
    /// <exception cref="InvalidOperationException">A side's outputs differ from libtorch's by more than
    /// <see cref="RelativeTolerance"/>, have another count or length, or are not finite; or, for sides whose
    /// values are not comparable, their parameter counts differ.</exception>
    public static void ValidateOnce(Type type, Pass pass, WorkloadSides sides)
    {
        var outcome = Outcomes.GetOrAdd((type, pass), _ => Validate(type, pass, sides));
        if (outcome.Failure is not null) throw new InvalidOperationException(outcome.Failure);
    }

    private static Outcome Validate(Type type, Pass pass, WorkloadSides sides)
    {
        string workload = $"{WorkloadAttribute.Of(type)?.Id ?? type.Name} {pass}";
        var worst = new Dictionary<string, double>();
        try
        {
            float[][] reference = sides.LibTorch.Results();
            if (!sides.ValuesComparable) return ValidateShapes(workload, sides, reference);
            foreach (var side in sides.All.Where(s => !ReferenceEquals(s, sides.LibTorch)))
            {
                float[][] actual = side.Results();
                if (actual.Length != reference.Length)
                    return Fail(worst, $"{workload}: {side.Name} returned {actual.Length} outputs, libtorch {reference.Length}");
                double sideWorst = 0;
                for (int i = 0; i < actual.Length; i++)
                {
                    if (actual[i].Length != reference[i].Length)
                        return Fail(worst, $"{workload}: {side.Name} output {i} has {actual[i].Length} values, libtorch's {reference[i].Length}");
                    // An output that is zero in exact arithmetic is measured against the norm of a sibling output.
                    int scale = sides.ZeroOutputs is { } zero && zero.TryGetValue(i, out int sibling) ? sibling : i;
                    double error = Distance(actual[i], reference[i]) / Norm(reference[scale]);
                    // Written so that NaN (a non-finite value on either side, or a zero norm) fails too.
                    if (!(error <= RelativeTolerance))
                        return Fail(worst, $"{workload}: {side.Name} output {i} differs from libtorch's by {error:E2} relative to " +
                            $"‖libtorch output {scale}‖₂ = {Norm(reference[scale]):G4} (tolerance {RelativeTolerance:E0})");
                    sideWorst = Math.Max(sideWorst, error);
                }
                worst[side.Name] = sideWorst;
            }
            return new Outcome(worst, null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return Fail(worst, $"{workload}: validation threw {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>
    /// The check for sides that run differently initialised models (<see cref="WorkloadSides.ValuesComparable"/>
    /// false): equal parameter counts (BENCHMARKS.md "Models": the first check that two implementations build
    /// the same net), the same number and lengths of outputs, and every value finite on every side.
    /// </summary>
    private static Outcome ValidateShapes(string workload, WorkloadSides sides, float[][] reference)
    {
        var none = new Dictionary<string, double>();
        long? count = sides.LibTorch.ParameterCount;
        foreach (var side in sides.All)
        {
            float[][] actual = ReferenceEquals(side, sides.LibTorch) ? reference : side.Results();
            if (side.ParameterCount != count)
                return Fail(none, $"{workload}: {side.Name}'s model has {side.ParameterCount?.ToString("N0") ?? "no"} parameters, libtorch's {count?.ToString("N0") ?? "none"}");
            if (actual.Length != reference.Length)
                return Fail(none, $"{workload}: {side.Name} returned {actual.Length} outputs, libtorch {reference.Length}");
            for (int i = 0; i < actual.Length; i++)
            {
                if (actual[i].Length != reference[i].Length)
                    return Fail(none, $"{workload}: {side.Name} output {i} has {actual[i].Length} values, libtorch's {reference[i].Length}");
                int bad = Array.FindIndex(actual[i], v => !float.IsFinite(v));
                if (bad >= 0)
                    return Fail(none, $"{workload}: {side.Name} output {i} holds the non-finite value {actual[i][bad]} at index {bad}");
            }
        }
        string parameters = count is null ? "" : $", {count:N0} parameters";
        return new Outcome(none, null, $"not compared (different random weights): finite, equal lengths{parameters}");
    }

    private static Outcome Fail(Dictionary<string, double> worst, string message)
    {
        Console.Error.WriteLine($"VALIDATION FAILED: {message}");
        return new Outcome(worst, message);
    }

    /// <summary>‖a − b‖₂ in double precision.</summary>
    private static double Distance(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = (double)a[i] - b[i];
            sum += d * d;
        }
        return Math.Sqrt(sum);
    }

    /// <summary>‖a‖₂ in double precision.</summary>
    private static double Norm(float[] a) => Math.Sqrt(a.Sum(x => (double)x * x));
}
