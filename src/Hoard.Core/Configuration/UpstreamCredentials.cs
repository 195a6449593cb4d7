namespace Hoard.Core.Configuration;

/// <summary>
/// The --credentials file: one <c>NAME=USER:TOKEN</c> a line (blank lines and # comments allowed), NAME being a
/// --pypi, --registry, --git or --files upstream. Each pair becomes the user info of that upstream's URL, so every
/// code path that reads credentials from a URL (UrlCredentials) works unchanged, and nothing secret is on the
/// command line. Errors name the file and line, never the line's content.
/// </summary>
public static class UpstreamCredentials
{
    public sealed record Entry(int Line, string Name, string User, string Token);

    public static (List<Entry> Entries, List<string> Errors) Parse(string text, string path)
    {
        var entries = new List<Entry>();
        var errors = new List<string>();
        var lines = text.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#'))
            {
                continue;
            }
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            var colon = eq < 0 ? -1 : line.IndexOf(':', eq + 1);
            var name = eq > 0 ? line[..eq].Trim().ToLowerInvariant() : "";
            var user = colon < 0 ? "" : line[(eq + 1)..colon].Trim();
            if (colon < 0 || !UpstreamSpec.IsValidName(name) || user.Length == 0 || colon == line.Length - 1)
            {
                errors.Add($"--credentials '{path}' line {i + 1}: expected NAME=USER:TOKEN");
                continue;
            }
            if (entries.FirstOrDefault(e => e.Name == name) is { } earlier)
            {
                errors.Add($"--credentials '{path}' line {i + 1}: '{name}' was already given on line {earlier.Line}");
                continue;
            }
            // The token is taken as written (up to the line's end): only the name and user are trimmed.
            entries.Add(new Entry(i + 1, name, user, line[(colon + 1)..]));
        }
        return (entries, errors);
    }

    /// <summary>Reads the file and sets each entry's credentials on every upstream of that name. Returns the errors.</summary>
    public static List<string> Apply(HoardOptions options, string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [$"--credentials '{path}': cannot read it: {e.Message}"];
        }
        var (entries, errors) = Parse(text, path);
        foreach (var entry in entries)
        {
            var matched = 0;
            foreach (var upstreams in new[] { options.Pypi, options.Registries, options.Git, options.Files })
            {
                for (var i = 0; i < upstreams.Count; i++)
                {
                    if (upstreams[i].Name == entry.Name)
                    {
                        upstreams[i] = upstreams[i] with { Url = WithUserInfo(upstreams[i].Url, entry.User, entry.Token) };
                        matched++;
                    }
                }
            }
            if (matched == 0)
            {
                errors.Add($"--credentials '{path}' line {entry.Line}: no --pypi, --registry, --git or --files upstream is named '{entry.Name}'");
            }
        }
        return errors;
    }

    /// <summary>
    /// The URL with USER:TOKEN as its user info, each percent-escaped: a token may hold '@', ':' or '/', which
    /// would otherwise end the user info early. UrlCredentials unescapes them again for the Basic credential.
    /// </summary>
    public static Uri WithUserInfo(Uri url, string user, string token) =>
        new UriBuilder(url) { UserName = Uri.EscapeDataString(user), Password = Uri.EscapeDataString(token) }.Uri;
}
