using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Hoard.Core.Hosting;

/// <summary>
/// Refuses request targets with dot segments or encoded separators before routing. Kestrel would quietly
/// normalise "/a/%2e%2e/b" to "/b"; a mirror should say no instead of answering for a path nobody asked for.
/// One pass over the raw target, no allocation: it runs on every request.
/// </summary>
public static class PathGuard
{
    public static string? Check(HttpContext ctx)
    {
        var raw = ctx.Features.Get<IHttpRequestFeature>()?.RawTarget ?? ctx.Request.Path.Value ?? "";
        var path = raw.AsSpan();
        var query = path.IndexOf('?');
        if (query >= 0)
        {
            path = path[..query];
        }
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (c == '\\')
            {
                return "the path contains a backslash: refused";
            }
            if (c == '%' && i + 2 < path.Length)
            {
                var hi = path[i + 1];
                var lo = char.ToLowerInvariant(path[i + 2]);
                if ((hi == '2' && (lo == 'e' || lo == 'f')) || (hi == '5' && lo == 'c') || (hi == '0' && lo == '0'))
                {
                    return "the path contains an encoded '.', '/', '\\' or NUL: refused";
                }
            }
            if (c == '.' && (i == 0 || path[i - 1] == '/'))
            {
                var end = path[(i + 1)..];
                if (end.IsEmpty || end[0] == '/' || (end[0] == '.' && (end.Length == 1 || end[1] == '/')))
                {
                    return "the path contains '.' or '..' segments: refused";
                }
            }
        }
        return null;
    }
}
