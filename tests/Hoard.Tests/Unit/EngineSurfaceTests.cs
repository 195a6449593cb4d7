using System.Reflection;
using System.Reflection.Emit;
using Hoard.Core.Fetch;
using Hoard.Core.Storage;

namespace Hoard.Tests.Unit;

/// <summary>
/// The engine has no side doors (src/Hoard.Core/Fetch/README.md). Outside the engine (Hoard.Core.Fetch) and what it
/// owns (Hoard.Core.Storage), no code names the index or the blob store; protocol front-ends name no storage type at
/// all. Read from the compiled assembly: base types, fields, properties, method signatures and locals, and every type,
/// field and method a method body uses (its IL), lambdas and async state machines included.
/// </summary>
public sealed class EngineSurfaceTests
{
    private static readonly Type[] EngineOnly = [typeof(CacheIndex), typeof(ContentStore), typeof(EntryTemplate)];

    /// <summary>Shared serving and cluster code, which may hold a pinned blob the engine handed out.</summary>
    private static readonly string[] ServingNamespaces = ["Hoard.Core.Http", "Hoard.Core.Cluster"];

    [Fact]
    public void Nothing_outside_the_engine_names_the_index_or_the_store()
    {
        var violations = Scan(CoreTypes(ns => true), t => EngineOnly.Contains(t));
        Assert.True(violations.Count == 0, "Only the engine (src/Hoard.Core/Fetch) may use the index and the store:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void Protocol_front_ends_name_no_storage_type()
    {
        // A Git mirror is disk space the engine evicts with the blobs: the one storage contract a front-end implements.
        var violations = Scan(CoreTypes(ns => !ServingNamespaces.Contains(ns)), t => t.Namespace == "Hoard.Core.Storage" && t != typeof(IEvictableSpace));
        Assert.True(violations.Count == 0, "Front-ends get content through FetchEngine's API and ArtifactResponder:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void The_scan_finds_a_reference_made_only_inside_a_method_body()
    {
        var types = new[] { typeof(SideDoor) }.Concat(typeof(SideDoor).GetNestedTypes(BindingFlags.NonPublic)).ToArray();
        var violations = Scan(types, t => EngineOnly.Contains(t));
        Assert.Contains(violations, v => v.Contains("ViaLambda", StringComparison.Ordinal) && v.Contains("CacheIndex", StringComparison.Ordinal));
        Assert.Contains(violations, v => v.Contains("ViaAsync", StringComparison.Ordinal) && v.Contains("ContentStore", StringComparison.Ordinal));
        Assert.Contains(violations, v => v.Contains("ViaTypeof", StringComparison.Ordinal));
    }

    /// <summary>What the scan must catch: references that appear in no signature, only in IL.</summary>
    private static class SideDoor
    {
        public static bool ViaLambda(IServiceProvider services) =>
            ((Func<object?, bool>)(o => o is CacheIndex index && index.BlobCount > 0))(services.GetService(typeof(FetchEngine)));

        public static async Task<bool> ViaAsync(object store)
        {
            await Task.Yield();
            return ((ContentStore)store).BlobPath(new string('0', 64)).Length > 0;
        }

        public static object? ViaTypeof(IServiceProvider services) => services.GetService(typeof(EntryTemplate));
    }

    /// <summary>Hoard.Core's own types (nested ones, such as closures and state machines, included) outside the engine.</summary>
    private static Type[] CoreTypes(Func<string, bool> namespaceFilter) =>
        typeof(FetchEngine).Assembly.GetTypes()
            .Where(t => t.Namespace is { } ns && ns.StartsWith("Hoard.Core", StringComparison.Ordinal)
                && ns is not ("Hoard.Core.Fetch" or "Hoard.Core.Storage") && namespaceFilter(ns))
            .ToArray();

    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private static List<string> Scan(IEnumerable<Type> types, Func<Type, bool> forbidden)
    {
        var found = new List<string>();
        void Check(string where, Type? type)
        {
            if (Names(type, forbidden) is { } name)
            {
                found.Add($"{where}: {name}");
            }
        }
        foreach (var type in types)
        {
            Check($"{type.FullName} base", type.BaseType);
            foreach (var i in type.GetInterfaces())
            {
                Check($"{type.FullName} implements", i);
            }
            foreach (var field in type.GetFields(Declared))
            {
                Check($"{type.FullName}.{field.Name}", field.FieldType);
            }
            foreach (var property in type.GetProperties(Declared))
            {
                Check($"{type.FullName}.{property.Name}", property.PropertyType);
            }
            foreach (var method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
            {
                var where = $"{type.FullName}.{method.Name}";
                if (method is MethodInfo info)
                {
                    Check(where + " returns", info.ReturnType);
                }
                foreach (var p in method.GetParameters())
                {
                    Check($"{where}({p.Name})", p.ParameterType);
                }
                foreach (var local in method.GetMethodBody()?.LocalVariables ?? [])
                {
                    Check(where + " local", local.LocalType);
                }
                foreach (var member in MembersUsedBy(method))
                {
                    if (Names(member, forbidden) is { } name)
                    {
                        found.Add($"{where} uses {member.DeclaringType?.Name}.{member.Name}: {name}");
                    }
                }
            }
        }
        return found;
    }

    /// <summary>The forbidden type a member's declaring type or signature names, or null.</summary>
    private static string? Names(MemberInfo member, Func<Type, bool> forbidden) => member switch
    {
        Type t => Names(t, forbidden),
        FieldInfo f => Names(f.DeclaringType, forbidden) ?? Names(f.FieldType, forbidden),
        MethodBase m => Names(m.DeclaringType, forbidden)
            ?? (m is MethodInfo mi ? Names(mi.ReturnType, forbidden) : null)
            ?? m.GetParameters().Select(p => Names(p.ParameterType, forbidden)).FirstOrDefault(n => n is not null)
            ?? (m.IsGenericMethod ? m.GetGenericArguments().Select(a => Names(a, forbidden)).FirstOrDefault(n => n is not null) : null),
        _ => null,
    };

    /// <summary>The forbidden type <paramref name="type"/> is or contains (an array, a ref, a generic argument), or null.</summary>
    private static string? Names(Type? type, Func<Type, bool> forbidden)
    {
        if (type is null || type.IsGenericParameter)
        {
            return null;
        }
        if (type.HasElementType)
        {
            return Names(type.GetElementType(), forbidden);
        }
        if (forbidden(type.IsGenericType ? type.GetGenericTypeDefinition() : type))
        {
            return type.FullName ?? type.Name;
        }
        return type.IsGenericType ? type.GetGenericArguments().Select(a => Names(a, forbidden)).FirstOrDefault(n => n is not null) : null;
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    /// <summary>Every type, field and method the method's IL names (call, newobj, ldfld, isinst, ldtoken, ...).</summary>
    private static List<MemberInfo> MembersUsedBy(MethodBase method)
    {
        var used = new List<MemberInfo>();
        if (method.GetMethodBody()?.GetILAsByteArray() is not { } il)
        {
            return used;
        }
        var typeArgs = method.DeclaringType is { IsGenericType: true } declaring ? declaring.GetGenericArguments() : null;
        var methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (var i = 0; i < il.Length;)
        {
            var op = il[i] == 0xFE ? OpCodesByValue[unchecked((short)(0xFE00 | il[i + 1]))] : OpCodesByValue[il[i]];
            i += op.Size;
            switch (op.OperandType)
            {
                case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineTok or OperandType.InlineType:
                    used.Add(method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArgs, methodArgs)!);
                    i += 4;
                    break;
                case OperandType.InlineSwitch:
                    i += 4 + (4 * BitConverter.ToInt32(il, i));
                    break;
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    i += 1;
                    break;
                case OperandType.InlineVar:
                    i += 2;
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    i += 8;
                    break;
                default: // InlineBrTarget, InlineI, InlineSig, InlineString, ShortInlineR
                    i += 4;
                    break;
            }
        }
        return used;
    }
}
