using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Hoard.Core.Files;

/// <summary>
/// Generic upstreams: /files/NAME/&lt;path&gt; is NAME's URL + &lt;path&gt;, cached as immutable unless --files-ttl
/// makes that upstream mutable. The path may only go down from the upstream's base URL.
/// </summary>
public sealed class FilesFrontEnd(ArtifactResponder responder, HoardOptions options)
{
    private static readonly int Protocol = HoardMetrics.ProtocolIndex("files");
    private readonly Dictionary<string, UpstreamSpec> _upstreams = options.Files.ToDictionary(f => f.Name, StringComparer.Ordinal);

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapMethods("/files/{name}/{**path}", ["GET", "HEAD"], HandleAsync);
    }

    private Task HandleAsync(HttpContext ctx)
    {
        RequestInfo.For(ctx).Protocol = Protocol;
        var name = (string)ctx.Request.RouteValues["name"]!;
        if (!_upstreams.TryGetValue(name, out var upstream))
        {
            return HttpErrors.WriteAsync(ctx, 404, $"no files upstream named '{name}' is configured");
        }
        var prefix = $"/files/{name}/";
        var path = ctx.Request.Path.Value is { } p && p.Length > prefix.Length ? p[prefix.Length..] : "";
        if (ValidatePath(path) is { } problem)
        {
            return HttpErrors.WriteAsync(ctx, 400, problem);
        }
        var escaped = string.Join('/', path.Split('/').Select(Uri.EscapeDataString));
        var url = new Uri(upstream.Url, escaped);
        if (!url.AbsoluteUri.StartsWith(upstream.Url.GetLeftPart(UriPartial.Path), StringComparison.Ordinal))
        {
            return HttpErrors.WriteAsync(ctx, 400, "the path leaves the upstream's base URL");
        }
        var ttl = options.FilesTtl.TryGetValue(name, out var t) ? t : (TimeSpan?)null;
        var request = new ArtifactRequest("files", $"files/{name}/{path}", name, url) { Ttl = ttl, Anonymous = Upstream.UrlCredentials.Basic(url) is null };
        var shape = ttl is null ? ResponseShape.Immutable : new ResponseShape(null, $"public, max-age={(int)ttl.Value.TotalSeconds}");
        return responder.RespondAsync(ctx, request, shape);
    }

    /// <summary>Returns why a path is refused, or null. Dot segments, empty segments and control characters never reach upstream.</summary>
    public static string? ValidatePath(string path)
    {
        if (path.Length == 0 || path.EndsWith('/'))
        {
            return "a file path is needed after /files/NAME/";
        }
        if (path.Length > 2048)
        {
            return "path too long";
        }
        foreach (var segment in path.Split('/'))
        {
            if (segment.Length == 0 || segment == "." || segment == ".." || segment.Length > 255)
            {
                return "empty, '.' and '..' path segments are not allowed";
            }
            foreach (var c in segment)
            {
                if (char.IsControl(c) || c == '\\')
                {
                    return "control characters and backslashes are not allowed in paths";
                }
            }
        }
        return null;
    }
}
