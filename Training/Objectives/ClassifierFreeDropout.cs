using DiffusionCore.Engine;

namespace DiffusionCore.Training.Objectives;

/// <summary>
/// Label dropout for classifier-free guidance (Ho and Salimans 2022, Algorithm 1): one network learns the
/// conditional and the unconditional score by seeing, with probability p_uncond, the null label in place of
/// the true one. The null label is the extra class index <c>numClasses</c>, so a label embedding has
/// numClasses + 1 rows.
/// </summary>
public static class ClassifierFreeDropout
{
    /// <summary>
    /// A copy of <paramref name="labels"/> where each entry is independently replaced by the null class
    /// <paramref name="numClasses"/> with probability <paramref name="pUncond"/> (one host uniform per label
    /// from <paramref name="generator"/>: dropped where u &lt; p_uncond).
    /// </summary>
    public static int[] DropLabels(int[] labels, int numClasses, double pUncond, Generator generator)
    {
        if (numClasses < 1) throw new ArgumentOutOfRangeException(nameof(numClasses), numClasses, "ClassifierFreeDropout.DropLabels: needs at least one class");
        if (!(pUncond >= 0 && pUncond <= 1)) throw new ArgumentOutOfRangeException(nameof(pUncond), pUncond, "ClassifierFreeDropout.DropLabels: p_uncond must lie in [0, 1]");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= numClasses)
                throw new ArgumentOutOfRangeException(nameof(labels), labels[i], $"ClassifierFreeDropout.DropLabels: label {i} outside [0, {numClasses})");
        var u = generator.UniformHost(labels.Length);
        var dropped = new int[labels.Length];
        for (int i = 0; i < labels.Length; i++) dropped[i] = u[i] < pUncond ? numClasses : labels[i];
        return dropped;
    }
}
