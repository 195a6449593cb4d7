namespace Hoard;

/// <summary>
/// Whether containerd reads the hosts.toml files Hoard writes: its CRI plugin must set <c>config_path</c> to that
/// certs.d directory, a setting that is off by default. Hoard only reads containerd's config: it never edits it
/// and never restarts containerd (a mistake there stops every pull on the node), so when the setting is missing
/// the check refuses and says what to add.
/// </summary>
public static class ContainerdConfigCheck
{
    /// <summary>The CRI registry table each config version reads config_path from.</summary>
    public static readonly IReadOnlyList<(int Version, string Plugin, string Containerd)> Tables =
    [
        (3, "io.containerd.cri.v1.images", "containerd 2.x"),
        (2, "io.containerd.grpc.v1.cri", "containerd 1.x and 2.x"),
        (1, "cri", "containerd 1.x"),
    ];

    /// <summary>The outcome: an error when containerd would not read <c>certsDir</c>, else null; notes either way.</summary>
    public sealed record Result(string? Error, IReadOnlyList<string> Notes)
    {
        public bool Ok => Error is null;
    }

    /// <summary>Reads containerd's config file and checks it; a missing or unreadable file is an error.</summary>
    public static Result CheckFile(string configFile, string certsDir)
    {
        string text;
        try
        {
            text = File.ReadAllText(configFile);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return new($"{configFile} does not exist: containerd then runs with its defaults, which do not set config_path. "
                + $"Create it, for containerd 2.x with{Snippet(3, certsDir, withVersion: true)}or for containerd 1.x with{Snippet(2, certsDir, withVersion: true)}"
                + "and restart containerd. If containerd reads its config from another file, give that file to --containerd-config.", []);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new($"{configFile}: cannot read it: {e.Message}", []);
        }
        return Check(text, configFile, certsDir);
    }

    /// <summary>Checks the text of containerd's config (<paramref name="configFile"/> only names it in messages).</summary>
    public static Result Check(string text, string configFile, string certsDir)
    {
        Toml toml;
        try
        {
            toml = Toml.Parse(text);
        }
        catch (FormatException e)
        {
            return new($"{configFile}: not TOML that Hoard can read ({e.Message})", []);
        }
        var notes = new List<string>();
        int? version = null;
        if (toml.Get("version") is Toml.Bare { Text: var v })
        {
            if (!int.TryParse(v, out var n) || Tables.All(t => t.Version != n))
            {
                return new($"{configFile}: version = {v}: Hoard knows containerd config versions 1, 2 and 3", notes);
            }
            version = n;
        }
        var want = Normalize(certsDir);
        var found = Tables.Select(t => (Table: t, Value: toml.Get("plugins", t.Plugin, "registry", "config_path"))).Where(f => f.Value is not null).ToList();
        // Without a version line containerd 1.x reads version 1; a file that names another version's plugin was
        // meant for that version (a fragment, or an older habit), so the table it uses is taken at its word.
        var table = version is { } known ? Tables.Single(t => t.Version == known) : found.Count == 1 ? found[0].Table : Tables.Single(t => t.Version == 1);
        var value = toml.Get("plugins", table.Plugin, "registry", "config_path");
        var where = $"[plugins.\"{table.Plugin}\".registry]";
        if (value is null)
        {
            var other = found.FirstOrDefault(f => f.Table.Version != table.Version);
            var why = other.Value is not null
                ? $"{configFile} sets config_path under [plugins.\"{other.Table.Plugin}\".registry], which version {other.Table.Version} configs use, "
                  + $"but it is a version {table.Version} config ({table.Containerd}), which reads it from {where}"
                : $"{configFile} does not set config_path under {where}";
            if (toml.HasUnder("plugins", table.Plugin, "registry", "mirrors"))
            {
                why += $" (it configures mirrors with the deprecated {where[..^1]}.mirrors], which containerd does not allow together with config_path: move them to hosts.toml files)";
            }
            if (toml.Get("imports") is List<object> { Count: > 0 } imports)
            {
                why += $"; it imports {string.Join(", ", imports)}, which Hoard does not read: if one of them sets config_path, give it to --containerd-config";
            }
            if (version is null)
            {
                why += " (it has no version line: containerd 1.x reads it as version 1, containerd 2.x refuses that)";
            }
            return new($"{why}. Set it in that table (adding the table if the file has none):{Snippet(table.Version, certsDir)}and restart containerd; Hoard changes neither.", notes);
        }
        if (value is not string path)
        {
            return new($"{configFile}: config_path under {where} is not a string", notes);
        }
        var paths = path.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (paths.Length == 0)
        {
            return new($"{configFile}: config_path under {where} is empty, so containerd reads no hosts.toml. Set it:{Snippet(table.Version, certsDir)}and restart containerd.", notes);
        }
        if (!paths.Any(p => Normalize(p) == want))
        {
            return new($"{configFile}: config_path under {where} is \"{path}\", not {want} where Hoard writes its hosts.toml files. "
                + $"Write them there instead (--path {paths[0]}), or set{Snippet(table.Version, certsDir)}and restart containerd.", notes);
        }
        if (paths.Length > 1)
        {
            // containerd issue #12808 (open): with the list its own `config default` writes, containerd 2.x reads no
            // hosts.toml and pulls straight from the registries without a word (its pull path is reported to take the
            // whole list for one directory).
            var problem = $"config_path under {where} is a list (\"{path}\"), with which containerd 2.x has been found to read no hosts.toml at all (containerd issue 12808)";
            if (table.Version == 3)
            {
                return new($"{configFile}: {problem}. Set the one directory:{Snippet(3, certsDir)}and restart containerd.", notes);
            }
            notes.Add($"{configFile}: {problem} if this node runs containerd 2.x. With containerd 1.x a list is fine.");
        }
        notes.Add($"{configFile}: containerd reads hosts.toml files from {want} (config_path under {where}); it picks up changes there at the next pull, without a restart.");
        return new(null, notes);
    }

    /// <summary>The lines to add to containerd's config for a version, indented, on lines of their own.</summary>
    public static string Snippet(int version, string certsDir, bool withVersion = false) =>
        $"\n\n{(withVersion ? $"    version = {version}\n" : "")}    [plugins.\"{Tables.Single(t => t.Version == version).Plugin}\".registry]\n      config_path = \"{Normalize(certsDir)}\"\n\n";

    private static string Normalize(string path)
    {
        var full = Path.GetFullPath(path.Trim());
        return full.Length > 1 ? full.TrimEnd('/') : full;
    }
}
