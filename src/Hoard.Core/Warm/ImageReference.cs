namespace Hoard.Core.Warm;

/// <summary>
/// An image reference as users write it, turned into the path Hoard's registry API serves it at. The first segment
/// is a registry when it looks like a host (has a '.' or ':', or is localhost; the registry route then refuses one
/// that is not configured); otherwise the reference is Docker Hub's, as docker reads it: "alpine" is
/// docker.io/library/alpine:latest.
/// </summary>
public sealed partial record ImageReference(string Name, string Reference)
{
    public static ImageReference? Parse(string text)
    {
        var value = text.Trim();
        foreach (var scheme in new[] { "docker://", "oci://", "https://", "http://" })
        {
            if (value.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
            {
                value = value[scheme.Length..];
            }
        }
        // Only what a reference may hold: the path is built from it, so nothing that a URL would decode or normalise.
        if (value.Length is 0 or > 512 || value.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' or '/' or ':' or '@')))
        {
            return null;
        }
        string? digest = null;
        var at = value.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = value[(at + 1)..];
            value = value[..at];
        }
        string? tag = null;
        var colon = value.LastIndexOf(':');
        if (colon > value.LastIndexOf('/'))
        {
            tag = value[(colon + 1)..];
            value = value[..colon];
        }
        var segments = value.Split('/');
        if (segments.Any(s => s.Length == 0 || s is "." or ".."))
        {
            return null;
        }
        var first = segments[0];
        var hasRegistry = segments.Length > 1 && (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost");
        if ((digest is not null && !DigestPattern().IsMatch(digest)) || (tag is not null && !TagPattern().IsMatch(tag)))
        {
            return null;
        }
        var name = hasRegistry ? value : "docker.io/" + (segments.Length == 1 ? "library/" + value : value);
        return new ImageReference(name, digest ?? (string.IsNullOrEmpty(tag) ? "latest" : tag));
    }

    [System.Text.RegularExpressions.GeneratedRegex("^sha256:[a-f0-9]{64}$")]
    private static partial System.Text.RegularExpressions.Regex DigestPattern();

    [System.Text.RegularExpressions.GeneratedRegex("^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")]
    private static partial System.Text.RegularExpressions.Regex TagPattern();

    public override string ToString() => Reference.StartsWith("sha256:", StringComparison.Ordinal) ? $"{Name}@{Reference}" : $"{Name}:{Reference}";
}
