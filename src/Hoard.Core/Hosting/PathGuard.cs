using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Hoard.Core.Hosting;

/// <summary>
/// Refuses request targets with dot segments or encoded separators before routing. Kestrel would quietly
/// normalise "/a/%2e%2e/b" to "/b"; a mirror should say no instead of answering for a path nobody asked for.
/// </summary>
public static class PathGuard
{
    private static readonly string[] Forbidden = ["%2e", "%2f", "%5c", "%00", "\\"];

    public static string? Check(HttpContext ctx)
    {
        var raw = ctx.Features.Get<IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path.Value ?? "";
        var query = raw.IndexOf('?', StringComparison.Ordinal);
        var path = query >= 0 ? raw[..query] : raw;
        foreach (var f in Forbidden)
        {
            if (path.Contains(f, StringComparison.OrdinalIgnoreCase))
            {
                return "the path contains an encoded '.', '/', '\\' or NUL: refused";
            }
        }
        foreach (var segment in path.Split('/'))
        {
            if (segment is "." or "..")
            {
                return "the path contains '.' or '..' segments: refused";
            }
        }
        return null;
    }
}
