using System.Text.RegularExpressions;

namespace Hoard.Core.Configuration;

/// <summary>A named upstream: "NAME=URL" (or just "URL" where a name can be derived).</summary>
public sealed partial record UpstreamSpec(string Name, Uri Url)
{
    [GeneratedRegex("^[a-z0-9][a-z0-9._:-]{0,62}$")]
    private static partial Regex NamePattern();

    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    /// <summary>Parses "NAME=URL" or "URL". Returns an error message, or null on success.</summary>
    public static string? TryParse(string text, bool nameRequired, out UpstreamSpec? spec, out bool hadName)
    {
        spec = null;
        hadName = false;
        var value = text.Trim();
        string? name = null;
        var eq = value.IndexOf('=', StringComparison.Ordinal);
        var scheme = value.IndexOf("://", StringComparison.Ordinal);
        if (eq > 0 && (scheme < 0 || eq < scheme))
        {
            name = value[..eq].Trim().ToLowerInvariant();
            value = value[(eq + 1)..].Trim();
            hadName = true;
        }
        if (!Uri.TryCreate(value, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            return $"'{text}': expected an http(s) URL";
        }
        if (name is null)
        {
            if (nameRequired)
            {
                return $"'{text}': expected NAME=URL";
            }
            name = url.Host.Equals("pypi.org", StringComparison.OrdinalIgnoreCase) ? "pypi" : url.Host.ToLowerInvariant();
        }
        if (!IsValidName(name))
        {
            return $"'{text}': the name '{name}' must be 1-63 characters of a-z, 0-9, '.', '_', ':' or '-'";
        }
        if (!url.AbsolutePath.EndsWith('/'))
        {
            url = new Uri(url.GetLeftPart(UriPartial.Path) + "/" + url.Query);
        }
        spec = new UpstreamSpec(name, url);
        return null;
    }
}
