using System.Reflection;

namespace DiffusionCore.Kernels.Ilgpu;

/// <summary>One launchable kernel: a closed (non-generic) static method and its grouping.</summary>
/// <param name="Name">Readable name, e.g. <c>ElementwiseIlgpu.Map&lt;Single, ExpOp&lt;Single&gt;&gt;</c>.</param>
/// <param name="Method">The closed kernel method.</param>
/// <param name="Grouping">Implicitly or explicitly grouped.</param>
public sealed record IlgpuKernelSpec(string Name, MethodInfo Method, KernelGrouping Grouping);

/// <summary>
/// Every ILGPU kernel of this assembly, found by reflection: each static method marked
/// <see cref="IlgpuKernelAttribute"/>, and for a generic one each instantiation its constraints allow, with
/// the element type (first type parameter) float or double and every further type parameter any struct of
/// this assembly (generic structs closed over the element type) that satisfies the constraints. So a new op
/// struct (say a new <c>IUnaryOp&lt;T&gt;</c>) or a new marked kernel joins the registry, and with it the PTX
/// test, without anyone listing it.
/// </summary>
public static class IlgpuKernelRegistry
{
    private static readonly Lazy<IReadOnlyList<IlgpuKernelSpec>> s_all = new(Build);
    private static readonly Lazy<Dictionary<MethodInfo, IlgpuKernelSpec>> s_byMethod =
        new(() => s_all.Value.ToDictionary(s => s.Method));

    /// <summary>The element types every kernel is instantiated for.</summary>
    public static IReadOnlyList<Type> ElementTypes { get; } = [typeof(float), typeof(double)];

    /// <summary>Every registered kernel instantiation, in a stable order.</summary>
    public static IReadOnlyList<IlgpuKernelSpec> All => s_all.Value;

    /// <summary>The registered spec of a closed kernel method, or null when the method is not registered.</summary>
    public static IlgpuKernelSpec? Find(MethodInfo method) => s_byMethod.Value.GetValueOrDefault(method);

    /// <summary>The kernel entry points (open generic definitions included) marked in this assembly.</summary>
    public static IEnumerable<MethodInfo> MarkedMethods() =>
        typeof(IlgpuKernelRegistry).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => m.GetCustomAttribute<IlgpuKernelAttribute>() is not null)
            .OrderBy(m => m.DeclaringType!.FullName, StringComparer.Ordinal)
            .ThenBy(m => m.Name, StringComparer.Ordinal);

    private static List<IlgpuKernelSpec> Build()
    {
        var structs = typeof(IlgpuKernelRegistry).Assembly.GetTypes()
            .Where(t => t.IsValueType && !t.IsEnum && (!t.IsGenericTypeDefinition || t.GetGenericArguments().Length == 1))
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .ToList();
        var specs = new List<IlgpuKernelSpec>();
        foreach (var method in MarkedMethods())
        {
            var grouping = method.GetCustomAttribute<IlgpuKernelAttribute>()!.Grouping;
            if (!method.IsGenericMethodDefinition)
            {
                specs.Add(new IlgpuKernelSpec(Describe(method), method, grouping));
                continue;
            }
            int arity = method.GetGenericArguments().Length;
            foreach (var element in ElementTypes)
            {
                var candidates = structs.Select(t => t.IsGenericTypeDefinition ? TryClose(t, element) : t).OfType<Type>().ToList();
                foreach (var args in Combinations(element, candidates, arity - 1))
                {
                    var closed = TryInstantiate(method, args);
                    if (closed is not null) specs.Add(new IlgpuKernelSpec(Describe(closed), closed, grouping));
                }
            }
        }
        return specs;
    }

    private static IEnumerable<Type[]> Combinations(Type element, List<Type> candidates, int rest)
    {
        if (rest == 0)
        {
            yield return [element];
            yield break;
        }
        foreach (var head in Combinations(element, candidates, rest - 1))
            foreach (var c in candidates)
                yield return [.. head, c];
    }

    private static Type? TryClose(Type definition, Type element)
    {
        try { return definition.MakeGenericType(element); }
        catch (ArgumentException) { return null; }
    }

    private static MethodInfo? TryInstantiate(MethodInfo definition, Type[] args)
    {
        // MakeGenericMethod checks the constraints (struct, interfaces such as IUnaryOp<float>) and throws
        // ArgumentException when a candidate does not satisfy them: that is how the allowed instantiations are found.
        try { return definition.MakeGenericMethod(args); }
        catch (ArgumentException) { return null; }
    }

    /// <summary>Readable name of a (closed) kernel method: <c>Type.Method&lt;args&gt;</c>.</summary>
    public static string Describe(MethodInfo method)
    {
        string args = method.IsGenericMethod ? "<" + string.Join(", ", method.GetGenericArguments().Select(TypeName)) + ">" : "";
        return $"{method.DeclaringType!.Name}.{method.Name}{args}";
    }

    private static string TypeName(Type t) => t.IsGenericType
        ? $"{t.Name[..t.Name.IndexOf('`')]}<{string.Join(", ", t.GetGenericArguments().Select(TypeName))}>"
        : t.Name;
}
