using System.Text.RegularExpressions;
using Hoard.Core.Warm;
using Tomlyn;
using Tomlyn.Model;

namespace Hoard;

/// <summary>
/// Reads what `hoard warm` is asked to warm from the files users already have: requirements files (pip-compile and
/// `uv pip compile` output, with or without --hash), pylock.toml (PEP 751), uv.lock, and image lists. Only exact pins
/// say what a build downloads: a requirement that is not `==` pinned is reported, not guessed at.
/// </summary>
public static partial class WarmSources
{
    /// <summary>A line that could not be used, and why: shown to the user, and the warm exits 1.</summary>
    public sealed record Problem(string Where, string Why);

    [GeneratedRegex(@"^(?<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*(?<op>===|==|~=|!=|<=|>=|<|>)?\s*(?<version>[^\s;,\\]*)(?<more>[^;]*)(?:;.*)?$")]
    private static partial Regex RequirementPattern();

    [GeneratedRegex(@"--hash[=\s]+sha256:(?<hex>[0-9a-fA-F]{64})")]
    private static partial Regex HashPattern();

    /// <summary>Options that take a value and are about where or how pip installs, not what: skipped.</summary>
    private static readonly string[] IgnoredOptions = ["-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-binary", "--only-binary", "--prefer-binary", "--pre", "--no-index", "--use-feature", "-c", "--constraint"];

    /// <summary>Pinned packages of a requirements file and the files it includes with -r.</summary>
    public static List<WarmPackage> Requirements(string path, List<Problem> problems, HashSet<string>? seen = null)
    {
        seen ??= new HashSet<string>(StringComparer.Ordinal);
        var full = Path.GetFullPath(path);
        var packages = new List<WarmPackage>();
        if (!seen.Add(full))
        {
            return packages; // included twice (or in a loop): once is enough
        }
        var lineNumber = 0;
        var logical = "";
        // An empty line after the last: a final line ending in a backslash is still read.
        foreach (var raw in File.ReadAllLines(full).Append(""))
        {
            lineNumber++;
            var line = raw;
            // pip joins a line ending in a backslash with the next, except a comment line.
            if (line.EndsWith('\\') && !line.TrimStart().StartsWith('#'))
            {
                logical += line[..^1] + " ";
                continue;
            }
            line = logical + line;
            logical = "";
            var comment = Regex.Match(line, @"(^|\s)#");
            if (comment.Success)
            {
                line = line[..comment.Index];
            }
            line = line.Trim();
            if (line.Length == 0)
            {
                continue;
            }
            var where = $"{path}:{lineNumber}";
            if (line.StartsWith("-r", StringComparison.Ordinal) || line.StartsWith("--requirement", StringComparison.Ordinal))
            {
                var included = line[(line.StartsWith("-r", StringComparison.Ordinal) ? 2 : "--requirement".Length)..].TrimStart('=', ' ').Trim();
                packages.AddRange(Requirements(Path.Combine(Path.GetDirectoryName(full)!, included), problems, seen));
                continue;
            }
            if (line.StartsWith('-') && !line.StartsWith("-e ", StringComparison.Ordinal) && !line.StartsWith("--editable", StringComparison.Ordinal))
            {
                if (!IgnoredOptions.Any(o => line.StartsWith(o, StringComparison.Ordinal)))
                {
                    problems.Add(new Problem(where, $"unknown option '{line.Split(' ')[0]}' ignored"));
                }
                continue;
            }
            if (line.StartsWith("-e ", StringComparison.Ordinal) || line.StartsWith("--editable", StringComparison.Ordinal) || line.Contains("://", StringComparison.Ordinal)
                || line.StartsWith('.') || line.StartsWith('/'))
            {
                problems.Add(new Problem(where, "not from an index (a path, URL or editable): nothing to warm"));
                continue;
            }
            var m = RequirementPattern().Match(line);
            if (!m.Success)
            {
                problems.Add(new Problem(where, "not a requirement"));
                continue;
            }
            if (m.Groups["op"].Value is not ("==" or "===") || m.Groups["version"].Value.Length == 0 || m.Groups["version"].Value.Contains('*')
                || m.Groups["more"].Value.TrimStart().StartsWith(','))
            {
                problems.Add(new Problem(where, $"'{m.Groups["name"].Value}' is not pinned with ==: pin it (pip-compile, uv pip compile) to say which files a build downloads"));
                continue;
            }
            packages.Add(new WarmPackage(m.Groups["name"].Value, m.Groups["version"].Value)
            {
                Sha256 = HashPattern().Matches(line).Select(h => h.Groups["hex"].Value.ToLowerInvariant()).ToList(),
            });
        }
        return packages;
    }

    /// <summary>
    /// The packages of a pylock.toml ([[packages]], PEP 751) or a uv.lock ([[package]]): each with the exact files the
    /// lock lists (by name and sha256). Packages from a directory, VCS or URL source have no index files and are skipped.
    /// </summary>
    public static List<WarmPackage> Lock(string path, List<Problem> problems)
    {
        TomlTable model;
        try
        {
            model = TomlSerializer.Deserialize<TomlTable>(File.ReadAllText(path)) ?? [];
        }
        catch (TomlException e)
        {
            problems.Add(new Problem(path, "not TOML: " + e.Message.Trim()));
            return [];
        }
        var entries = model.TryGetValue("packages", out var p) && p is TomlTableArray pylock ? pylock
            : model.TryGetValue("package", out var u) && u is TomlTableArray uv ? uv : null;
        if (entries is null)
        {
            problems.Add(new Problem(path, "neither a pylock.toml ([[packages]]) nor a uv.lock ([[package]])"));
            return [];
        }
        var packages = new List<WarmPackage>();
        foreach (var entry in entries)
        {
            var name = entry.TryGetValue("name", out var n) ? n as string : null;
            var version = entry.TryGetValue("version", out var v) ? v as string : null;
            var files = new List<TomlTable>();
            if (entry.TryGetValue("sdist", out var sdist) && sdist is TomlTable s)
            {
                files.Add(s);
            }
            if (entry.TryGetValue("wheels", out var wheels))
            {
                files.AddRange(wheels switch { TomlTableArray a => a, TomlArray a => a.OfType<TomlTable>(), _ => [] });
            }
            if (IsLocalSource(entry))
            {
                continue; // built from a directory, VCS or URL, not downloaded from an index
            }
            if (name is null || version is null || files.Count == 0)
            {
                if (name is not null)
                {
                    problems.Add(new Problem($"{path}: {name}", "lists no version or no sdist/wheels: nothing to warm"));
                }
                continue;
            }
            packages.Add(new WarmPackage(name, version)
            {
                Files = files.Select(FileName).OfType<string>().ToList(),
                Sha256 = files.Select(Sha256).OfType<string>().ToList(),
            });
        }
        return packages;
    }

    /// <summary>uv's editable, virtual, path and git sources, and pylock's directory and vcs entries: built, not downloaded.</summary>
    private static bool IsLocalSource(TomlTable entry) =>
        (entry.TryGetValue("source", out var source) && source is TomlTable t && !t.ContainsKey("registry"))
        || entry.ContainsKey("directory") || entry.ContainsKey("vcs") || entry.ContainsKey("archive");

    private static string? FileName(TomlTable file)
    {
        if (file.TryGetValue("name", out var n) && n is string name)
        {
            return name;
        }
        if (file.TryGetValue("url", out var u) && u is string url && Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            return Uri.UnescapeDataString(uri.Segments[^1]);
        }
        return file.TryGetValue("path", out var pth) && pth is string path ? Path.GetFileName(path) : null;
    }

    private static string? Sha256(TomlTable file) =>
        file.TryGetValue("hashes", out var h) && h is TomlTable hashes && hashes.TryGetValue("sha256", out var hex) && hex is string pylock ? pylock.ToLowerInvariant()
        : file.TryGetValue("hash", out var one) && one is string uv && uv.StartsWith("sha256:", StringComparison.Ordinal) ? uv[7..].ToLowerInvariant()
        : null;

    /// <summary>Image references, one per line; blank lines and # comments are skipped.</summary>
    public static List<string> Images(string path) =>
        File.ReadAllLines(path).Select(l => (l.IndexOf('#', StringComparison.Ordinal) is var i and >= 0 ? l[..i] : l).Trim()).Where(l => l.Length > 0).ToList();
}
