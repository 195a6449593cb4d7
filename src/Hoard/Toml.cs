using System.Globalization;
using Tomlyn;
using Tomlyn.Model;

namespace Hoard;

/// <summary>
/// containerd's config.toml and hosts.toml, parsed by Tomlyn and seen as values by their full key path (segments
/// joined with '\0'): a string, a list of values, or any other scalar (number, boolean, date) as its text. Arrays of
/// tables are not looked into: nothing Hoard reads from containerd's files lives in one.
/// </summary>
public sealed class Toml
{
    private readonly Dictionary<string, object> _values = new(StringComparer.Ordinal);

    /// <summary>A scalar other than a string, as text (2, true, 1979-05-27T07:32:00).</summary>
    public sealed record Bare(string Text);

    private Toml()
    {
    }

    public IReadOnlyDictionary<string, object> Values => _values;

    /// <summary>The value at a key path (["plugins", "io.containerd.grpc.v1.cri", "registry", "config_path"]), or null.</summary>
    public object? Get(params string[] path) => _values.GetValueOrDefault(string.Join('\0', path));

    /// <summary>Whether any value lies at or under this key path (the table exists and has something in it).</summary>
    public bool HasUnder(params string[] path)
    {
        var prefix = string.Join('\0', path);
        return _values.Keys.Any(k => k == prefix || k.StartsWith(prefix + "\0", StringComparison.Ordinal));
    }

    /// <summary>Parses a document; throws <see cref="FormatException"/> with Tomlyn's message on malformed input.</summary>
    public static Toml Parse(string text)
    {
        TomlTable model;
        try
        {
            model = TomlSerializer.Deserialize<TomlTable>(text) ?? [];
        }
        catch (TomlException e)
        {
            // Tomlyn says "(2,9) : error : Expected `]`...": said here as "line 2, column 9: Expected `]`...".
            var located = System.Text.RegularExpressions.Regex.Replace(e.Message.Trim(), @"^\((\d+),(\d+)\)\s*:\s*error\s*:\s*", "line $1, column $2: ");
            throw new FormatException(located, e);
        }
        var toml = new Toml();
        toml.Flatten(model, "");
        return toml;
    }

    private void Flatten(TomlTable table, string prefix)
    {
        foreach (var (key, value) in table)
        {
            var path = prefix.Length == 0 ? key : prefix + "\0" + key;
            switch (value)
            {
                case TomlTable inner:
                    Flatten(inner, path);
                    break;
                case TomlTableArray:
                    break;
                default:
                    _values[path] = Value(value);
                    break;
            }
        }
    }

    private static object Value(object? value) => value switch
    {
        string s => s,
        TomlArray array => array.Select(Value).ToList(),
        bool b => new Bare(b ? "true" : "false"),
        IFormattable f => new Bare(f.ToString(null, CultureInfo.InvariantCulture)),
        _ => new Bare(value?.ToString() ?? ""),
    };
}
