using System.Text.RegularExpressions;

namespace Hoard.Core.Warm;

/// <summary>
/// Which files of a project page a pinned requirement means, as `pip download` would choose them: the files of that
/// exact version; with hashes or file names from a lock, exactly those; with --python-version/--platform, only wheels
/// those accept, and the sdist only when no wheel of the version does (pip would build from it).
/// </summary>
public static partial class DistributionFiles
{
    [GeneratedRegex(@"^(?<name>[^-]+)-(?<version>[^-]+)(-(?<build>\d[^-]*))?-(?<py>[^-]+)-(?<abi>[^-]+)-(?<plat>[^-]+)\.whl$")]
    private static partial Regex WheelPattern();

    private static readonly string[] SdistExtensions = [".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz", ".tar"];

    /// <summary>A wheel's tags, or null for a file that is not a wheel.</summary>
    public static (string Version, string[] Python, string[] Abi, string[] Platform)? ParseWheel(string filename)
    {
        var m = WheelPattern().Match(filename);
        return m.Success ? (m.Groups["version"].Value, m.Groups["py"].Value.Split('.'), m.Groups["abi"].Value.Split('.'), m.Groups["plat"].Value.Split('.')) : null;
    }

    /// <summary>An sdist's version (the part after the project name), or null for a file that is not an sdist.</summary>
    public static string? SdistVersion(string filename, string project)
    {
        var ext = SdistExtensions.FirstOrDefault(e => filename.EndsWith(e, StringComparison.OrdinalIgnoreCase));
        if (ext is null)
        {
            return null;
        }
        var stem = filename[..^ext.Length];
        // Old sdists keep the project's own spelling (dashes included): strip the name by its normalized length.
        var normalized = PyPI.PypiNames.Normalize(project);
        for (var i = stem.Length - 1; i > 0; i--)
        {
            if (stem[i] == '-' && PyPI.PypiNames.Normalize(stem[..i]) == normalized)
            {
                return stem[(i + 1)..];
            }
        }
        return null;
    }

    /// <summary>PEP 440 equality, as far as pins need it: case, a leading v, separators and trailing zero releases.</summary>
    public static bool SameVersion(string a, string b) => NormalizeVersion(a) == NormalizeVersion(b);

    public static string NormalizeVersion(string version)
    {
        var v = version.Trim().ToLowerInvariant().TrimStart('v').Replace('_', '.').Replace('-', '.');
        var plus = v.IndexOf('+', StringComparison.Ordinal);
        var local = plus < 0 ? "" : v[plus..];
        v = plus < 0 ? v : v[..plus];
        var release = ReleasePattern().Match(v);
        if (!release.Success)
        {
            return v + local;
        }
        var parts = release.Value.Split('.').Select(p => p.TrimStart('0') is { Length: > 0 } s ? s : "0").ToList();
        while (parts.Count > 1 && parts[^1] == "0")
        {
            parts.RemoveAt(parts.Count - 1);
        }
        return string.Join('.', parts) + v[release.Length..].TrimStart('.') + local;
    }

    [GeneratedRegex(@"^\d+(\.\d+)*")]
    private static partial Regex ReleasePattern();

    /// <summary>Whether a wheel with these tags installs on one of the Pythons and platforms asked for (empty: any).</summary>
    public static bool WheelFits(string[] python, string[] abi, string[] platform, IReadOnlyList<string> pythonVersions, IReadOnlyList<string> platforms)
    {
        var platformOk = platforms.Count == 0 || platform.Contains("any") || platform.Any(p => platforms.Any(want => PlatformFits(p, want)));
        return platformOk && (pythonVersions.Count == 0 || pythonVersions.Any(v => PythonFits(python, abi, v)));
    }

    [GeneratedRegex(@"^(?<kind>manylinux|musllinux|macosx)_(?<major>\d+)_(?<minor>\d+)_(?<arch>.+)$")]
    private static partial Regex VersionedPlatform();

    /// <summary>
    /// Whether a wheel's platform tag installs where <paramref name="wanted"/> does, as pip reads --platform: a glibc,
    /// musl or macOS version also takes wheels built for older ones (manylinux_2_28_x86_64 takes manylinux_2_17 and
    /// its alias manylinux2014), and macOS takes universal2 wheels of either architecture.
    /// </summary>
    public static bool PlatformFits(string tag, string wanted)
    {
        if (string.Equals(tag, wanted, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }
        if (Versioned(wanted) is not { } want || Versioned(tag) is not { } have || have.Kind != want.Kind)
        {
            return false;
        }
        var archFits = have.Arch == want.Arch
            || (want.Kind == "macosx" && (have.Arch == "universal2" || (want.Arch == "x86_64" && have.Arch is "intel" or "universal")));
        return archFits && (have.Major < want.Major || (have.Major == want.Major && have.Minor <= want.Minor));
    }

    /// <summary>A versioned platform tag, with the legacy manylinux names as the glibc versions they stand for.</summary>
    private static (string Kind, int Major, int Minor, string Arch)? Versioned(string tag)
    {
        tag = tag.ToLowerInvariant();
        foreach (var (legacy, minor) in new[] { ("manylinux2014_", 17), ("manylinux2010_", 12), ("manylinux1_", 5) })
        {
            if (tag.StartsWith(legacy, StringComparison.Ordinal))
            {
                return ("manylinux", 2, minor, tag[legacy.Length..]);
            }
        }
        var m = VersionedPlatform().Match(tag);
        return m.Success && int.TryParse(m.Groups["major"].Value, out var major) && int.TryParse(m.Groups["minor"].Value, out var minorVersion)
            ? (m.Groups["kind"].Value, major, minorVersion, m.Groups["arch"].Value)
            : null;
    }

    /// <summary>pip's tag order for CPython X.Y: cpXY (any ABI), cp3Z-abi3 for Z ≤ Y, py3, pyXY and py3Z for Z ≤ Y.</summary>
    private static bool PythonFits(string[] python, string[] abi, string version)
    {
        var parts = version.Split('.');
        if (parts.Length < 2 || !int.TryParse(parts[0], out var major) || !int.TryParse(parts[1], out var minor))
        {
            return true; // not a version we can compare: do not filter on it
        }
        foreach (var tag in python)
        {
            if (tag == $"py{major}" || tag == $"cp{major}{minor}")
            {
                return true;
            }
            if ((tag.StartsWith($"py{major}", StringComparison.Ordinal) || (tag.StartsWith($"cp{major}", StringComparison.Ordinal) && abi.Contains("abi3")))
                && int.TryParse(tag[3..], out var tagMinor) && tagMinor <= minor)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The files of <paramref name="files"/> (name, sha256) that warming <paramref name="package"/> fetches.</summary>
    public static List<T> Select<T>(IEnumerable<T> files, Func<T, string> filename, Func<T, string?> sha256, WarmPackage package, IReadOnlyList<string> pythonVersions, IReadOnlyList<string> platforms)
    {
        var ofVersion = files.Where(f => ParseWheel(filename(f)) is { } w ? SameVersion(w.Version, package.Version)
            : SdistVersion(filename(f), package.Project) is { } v && SameVersion(v, package.Version)).ToList();
        if (package.Sha256.Count > 0 || package.Files.Count > 0)
        {
            ofVersion = ofVersion.Where(f => package.Files.Contains(filename(f), StringComparer.Ordinal)
                || (sha256(f) is { } sha && package.Sha256.Contains(sha, StringComparer.OrdinalIgnoreCase))).ToList();
        }
        if (pythonVersions.Count == 0 && platforms.Count == 0)
        {
            return ofVersion;
        }
        var wheels = ofVersion.Where(f => ParseWheel(filename(f)) is { } w && WheelFits(w.Python, w.Abi, w.Platform, pythonVersions, platforms)).ToList();
        return wheels.Count > 0 ? wheels : ofVersion.Where(f => ParseWheel(filename(f)) is null).ToList();
    }
}
