using System.Text.RegularExpressions;

namespace Hoard.Core.PyPI;

/// <summary>Project and file names: PEP 503 normalization and the strict shapes Hoard accepts from clients.</summary>
public static partial class PypiNames
{
    [GeneratedRegex("^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?$")]
    private static partial Regex ProjectPattern();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._+!~-]{0,250}$")]
    private static partial Regex FilePattern();

    [GeneratedRegex("[-_.]+")]
    private static partial Regex Separators();

    public static bool IsValidProject(string name) => ProjectPattern().IsMatch(name);

    public static bool IsValidFilename(string name) => FilePattern().IsMatch(name) && !name.Contains("..", StringComparison.Ordinal);

    /// <summary>PEP 503: runs of -, _ and . become one -, and the name is lower-cased.</summary>
    public static string Normalize(string name) => Separators().Replace(name, "-").ToLowerInvariant();
}
