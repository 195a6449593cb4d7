using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.PyPI;

/// <summary>
/// The PyPI simple API, per index: /pypi/NAME/simple/… for each configured index, and /simple/… for the first.
/// Pages come through the cache as mutable artifacts (revalidated after --index-ttl, served stale when upstream
/// fails) and are rewritten on the way out; files are immutable artifacts verified against the page's sha256.
/// Indexes are never mixed: a file is looked up only in the page of the index it was asked from.
/// </summary>
public sealed partial class PypiFrontEnd
{
    private static readonly ResponseShape FileShape = new("application/octet-stream", "public, max-age=31536000, immutable");
    private static readonly int Protocol = HoardMetrics.ProtocolIndex("pypi");
    private readonly FetchEngine _engine;
    private readonly ArtifactResponder _responder;
    private readonly HoardOptions _options;
    private readonly Hosting.AdminAuth _admin;
    private readonly ILogger _logger;
    private readonly Dictionary<string, UpstreamSpec> _indexes;
    /// <summary>
    /// Parsed pages by digest and rendered pages by digest and format, bounded by (estimated) bytes rather than by count:
    /// one page of a big index can be tens of MB, and what is cached follows what clients ask for.
    /// </summary>
    private readonly MemoryCache _pages = new(new MemoryCacheOptions { SizeLimit = PageCacheBytes, CompactionPercentage = 0.25 });
    private const long PageCacheBytes = 256L * 1024 * 1024;

    /// <summary>A parsed page takes several times its bytes in objects (strings, JSON nodes).</summary>
    private const int ParsedOverhead = 4;
    private readonly string _pageCacheControl;

    public PypiFrontEnd(FetchEngine engine, ArtifactResponder responder, HoardOptions options, Hosting.AdminAuth admin, ILogger<PypiFrontEnd> logger)
    {
        _engine = engine;
        _responder = responder;
        _options = options;
        _admin = admin;
        _logger = logger;
        _indexes = options.Pypi.ToDictionary(p => p.Name, StringComparer.Ordinal);
        _pageCacheControl = $"public, max-age={(int)options.IndexTtl.TotalSeconds}";
    }

    public void Map(IEndpointRouteBuilder app)
    {
        string[] methods = ["GET", "HEAD", "DELETE"];
        // Routing matches "/simple/" to the "/simple" template too (a trailing slash is not significant to it): only a
        // path without the slash is redirected, or the root list would redirect to itself forever.
        app.MapMethods("/simple", methods, ctx => (ctx.Request.Path.Value ?? "").EndsWith('/')
            ? HandleAsync(ctx, _options.DefaultPypiIndex, "/simple/")
            : Redirect(ctx, ctx.Request.PathBase + "/simple/"));
        app.MapMethods("/simple/{**rest}", methods, ctx => HandleAsync(ctx, _options.DefaultPypiIndex, "/simple/"));
        app.MapMethods("/pypi/{index}/simple", methods, ctx =>
        {
            var name = (string)ctx.Request.RouteValues["index"]!;
            if (!_indexes.TryGetValue(name, out var index))
            {
                return HttpErrors.WriteAsync(ctx, 404, $"no PyPI index named '{name}' is configured (configured: {string.Join(", ", _indexes.Keys)})");
            }
            return (ctx.Request.Path.Value ?? "").EndsWith('/')
                ? HandleAsync(ctx, index, $"/pypi/{name}/simple/")
                : Redirect(ctx, ctx.Request.PathBase + $"/pypi/{name}/simple/");
        });
        app.MapMethods("/pypi/{index}/simple/{**rest}", methods, ctx =>
        {
            var name = (string)ctx.Request.RouteValues["index"]!;
            return _indexes.TryGetValue(name, out var index)
                ? HandleAsync(ctx, index, $"/pypi/{name}/simple/")
                : HttpErrors.WriteAsync(ctx, 404, $"no PyPI index named '{name}' is configured (configured: {string.Join(", ", _indexes.Keys)})");
        });
    }

    private Task HandleAsync(HttpContext ctx, UpstreamSpec index, string prefix)
    {
        RequestInfo.For(ctx).Protocol = Protocol;
        var path = ctx.Request.Path.Value ?? "";
        var rest = path.Length > prefix.Length ? path[prefix.Length..] : "";
        var isDelete = HttpMethods.IsDelete(ctx.Request.Method);
        // Hot path: a stored file is found by its key alone. Keys hold only validated, normalized names,
        // so an odd request can only miss here and then meets the checks below.
        var split = rest.IndexOf('/', StringComparison.Ordinal);
        if (!isDelete && split > 0 && split < rest.Length - 1 && FileKey(index, rest) is var key && _engine.TryGetHit(key, out var stored))
        {
            return _responder.ServeHitAsync(ctx, key, stored, FileShape);
        }
        if (rest.Length == 0)
        {
            return isDelete ? HttpErrors.WriteAsync(ctx, 405, "only a project's page can be purged") : ServeListAsync(ctx, index);
        }
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var project = slash < 0 ? rest : rest[..slash];
        if (!PypiNames.IsValidProject(project))
        {
            return HttpErrors.WriteAsync(ctx, 400, "not a valid project name: names are letters, digits, '.', '_' and '-', at most 200 characters");
        }
        var normalized = PypiNames.Normalize(project);
        var file = slash < 0 ? null : rest[(slash + 1)..];
        if (normalized != project || slash < 0)
        {
            // PEP 503: clients should ask for the normalized name; point them at it (and at the trailing slash).
            return Redirect(ctx, ctx.Request.PathBase + prefix + normalized + "/" + (file ?? ""));
        }
        if (file!.Length == 0)
        {
            return isDelete ? PurgeAsync(ctx, index, normalized) : ServeProjectAsync(ctx, index, normalized);
        }
        if (isDelete)
        {
            return HttpErrors.WriteAsync(ctx, 405, "files are immutable; purge the project page instead");
        }
        if (!PypiNames.IsValidFilename(file))
        {
            return HttpErrors.WriteAsync(ctx, 400, "not a valid file name");
        }
        return ServeFileAsync(ctx, index, normalized, file);
    }

    private static Task Redirect(HttpContext ctx, string location)
    {
        ctx.Response.StatusCode = StatusCodes.Status301MovedPermanently;
        ctx.Response.Headers.Location = location + ctx.Request.QueryString;
        return Task.CompletedTask;
    }

    private ArtifactRequest PageRequest(UpstreamSpec index, string project) =>
        new("pypi", PageKey(index, project), index.Name, project.Length == 0 ? index.Url : new Uri(index.Url, project + "/"))
        {
            Ttl = _options.IndexTtl,
            Decompress = true,
            Accept = SimpleNegotiation.UpstreamAccept,
            Retries = _options.IndexRetries,
            Anonymous = Upstream.UrlCredentials.Basic(index.Url) is null,
        };

    private static string FileKey(UpstreamSpec index, string projectAndFile) => "pypi/" + index.Name + "/files/" + projectAndFile;

    private static string PageKey(UpstreamSpec index, string project) => $"pypi/{index.Name}/simple/{project}";

    private async Task<(T? Page, string? Digest, CacheOutcome Outcome, int Status, string? Error)> LoadAsync<T>(
        HttpContext ctx, UpstreamSpec index, string project, Func<byte[], string?, Uri, T> parse) where T : class
    {
        var request = PageRequest(index, project);
        var lookup = await _engine.GetAsync(request, ctx.RequestAborted, ctx.Connection.RemoteIpAddress);
        var (body, contentType, digest, status, error) = await _engine.ReadAllAsync(request, lookup, ctx.RequestAborted);
        if (body is null || digest is null)
        {
            return (null, null, CacheOutcome.Error, status, error);
        }
        if (_pages.TryGetValue("parsed:" + digest, out var cached) && cached is T page)
        {
            return (page, digest, lookup.Outcome, 200, null);
        }
        try
        {
            page = parse(body, contentType, request.UpstreamUrl);
        }
        catch (Exception e) when (e is FormatException or System.Text.Json.JsonException or InvalidOperationException or UriFormatException)
        {
            LogUnparseable(_logger, index.Name, project, e.Message);
            return (null, null, CacheOutcome.Error, 502, $"upstream '{index.Name}' sent a page Hoard cannot read: {e.Message}");
        }
        _pages.Set("parsed:" + digest, page, new MemoryCacheEntryOptions { Size = (long)body.Length * ParsedOverhead + 1024 });
        if (page is SimplePage projectPage)
        {
            ForgetReplacedFiles(index, project, projectPage);
        }
        return (page, digest, lookup.Outcome, 200, null);
    }

    /// <summary>
    /// A stored file is served by its key alone (the hot path reads no page). So when a new version of a page names
    /// another sha256 for a file name (a private index that rebuilt a wheel), the old file's key is dropped here,
    /// before any client can ask for the file by the new page.
    /// </summary>
    private void ForgetReplacedFiles(UpstreamSpec index, string project, SimplePage page)
    {
        foreach (var file in page.Files)
        {
            var key = FileKey(index, project + "/" + file.Filename);
            if (file.Sha256 is { } sha && _engine.TryGetStored(key, out var stored) && stored.Digest != sha)
            {
                _engine.Forget(key);
                LogFileReplaced(_logger, index.Name, file.Filename, stored.Digest, sha);
            }
        }
    }

    private async Task ServeProjectAsync(HttpContext ctx, UpstreamSpec index, string project)
    {
        if (Negotiate(ctx) is not { } chosen)
        {
            await NotAcceptableAsync(ctx);
            return;
        }
        var (page, digest, outcome, status, error) = await LoadAsync(ctx, index, project, (b, t, u) => SimpleParser.ParseProject(project, b, t, u));
        if (page is null)
        {
            await HttpErrors.WriteAsync(ctx, status, error ?? "upstream failed");
            return;
        }
        await WritePageAsync(ctx, digest!, outcome, chosen, () => SimpleRenderer.RenderProject(page, chosen.Format));
    }

    private async Task ServeListAsync(HttpContext ctx, UpstreamSpec index)
    {
        if (Negotiate(ctx) is not { } chosen)
        {
            await NotAcceptableAsync(ctx);
            return;
        }
        var (list, digest, outcome, status, error) = await LoadAsync(ctx, index, "", (b, t, _) => SimpleParser.ParseList(b, t));
        if (list is null)
        {
            await HttpErrors.WriteAsync(ctx, status, error ?? "upstream failed");
            return;
        }
        await WritePageAsync(ctx, digest!, outcome, chosen, () => SimpleRenderer.RenderList(list, chosen.Format));
    }

    private static (SimpleFormat Format, string ContentType)? Negotiate(HttpContext ctx) =>
        SimpleNegotiation.Choose(ctx.Request.Headers.Accept, ctx.Request.Query["format"]);

    private static Task NotAcceptableAsync(HttpContext ctx) =>
        HttpErrors.WriteAsync(ctx, 406, $"acceptable: {SimpleNegotiation.JsonType}, {SimpleNegotiation.HtmlType}, text/html");

    /// <summary>A page's ETag names the upstream content and the format, so a 304 needs no rendering.</summary>
    private async Task WritePageAsync(HttpContext ctx, string digest, CacheOutcome outcome, (SimpleFormat Format, string ContentType) chosen, Func<byte[]> render)
    {
        RequestInfo.For(ctx).Outcome = outcome;
        var response = ctx.Response;
        var etag = $"\"{digest[..32]}-{(chosen.Format == SimpleFormat.Json ? 'j' : 'h')}1\"";
        CacheStatusHeader.Apply(response, outcome);
        response.Headers.ETag = etag;
        // The stored upstream page this was rendered from, whole (the ETag holds half): `hoard pin` keeps that blob.
        response.Headers["X-Hoard-Digest"] = "sha256:" + digest;
        response.Headers.Vary = "Accept";
        response.Headers.CacheControl = _pageCacheControl;
        response.ContentType = chosen.ContentType;
        if (ctx.Request.Headers.IfNoneMatch.ToString().Contains(etag, StringComparison.Ordinal))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return;
        }
        var renderedKey = $"rendered:{digest}:{chosen.Format}";
        if (!_pages.TryGetValue(renderedKey, out byte[]? body) || body is null)
        {
            body = render();
            _pages.Set(renderedKey, body, new MemoryCacheEntryOptions { Size = body.Length + 256 });
        }
        response.ContentLength = body.Length;
        if (!HttpMethods.IsHead(ctx.Request.Method))
        {
            await response.Body.WriteAsync(body, ctx.RequestAborted);
        }
    }

    private async Task PurgeAsync(HttpContext ctx, UpstreamSpec index, string project)
    {
        if (!await _admin.AuthorizeAsync(ctx))
        {
            return;
        }
        var removed = _engine.Forget(PageKey(index, project));
        LogPurged(_logger, index.Name, project, removed);
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        await ctx.Response.WriteAsync(removed ? $"purged {index.Name}/{project}\n" : $"{index.Name}/{project} was not cached\n");
    }

    private async Task ServeFileAsync(HttpContext ctx, UpstreamSpec index, string project, string filename)
    {
        var key = FileKey(index, project + "/" + filename);
        var (page, _, _, status, error) = await LoadAsync(ctx, index, project, (b, t, u) => SimpleParser.ParseProject(project, b, t, u));
        if (page is null)
        {
            await HttpErrors.WriteAsync(ctx, status, error ?? "upstream failed");
            return;
        }
        var isMetadata = filename.EndsWith(".metadata", StringComparison.Ordinal);
        var file = page.Find(isMetadata ? filename[..^".metadata".Length] : filename);
        if (file is null)
        {
            await HttpErrors.WriteAsync(ctx, 404, $"index '{index.Name}' lists no file '{filename}' for project '{project}'");
            return;
        }
        ArtifactRequest request;
        if (isMetadata)
        {
            var (available, sha) = file.Metadata;
            if (!available)
            {
                await HttpErrors.WriteAsync(ctx, 404, $"index '{index.Name}' offers no metadata file for '{file.Filename}'");
                return;
            }
            request = new ArtifactRequest("pypi", key, index.Name, new Uri(file.Url + ".metadata")) { ExpectedSha256 = sha };
        }
        else
        {
            request = new ArtifactRequest("pypi", key, index.Name, file.Url) { ExpectedSha256 = file.Sha256, ExpectedSize = file.Size };
        }
        // A file fetched with no credential is public, shared by digest with anyone's public requests. One from a
        // private index (credentials in its URL) is this key's alone: the index's page names the digest, but a page
        // is not upstream's word that this client may have bytes Hoard got elsewhere with credentials.
        var anonymous = Upstream.UrlCredentials.Basic(request.UpstreamUrl) is null;
        request = request with { Anonymous = anonymous, Access = anonymous ? ContentAccess.Public : ContentAccess.Keyed };
        await _responder.RespondAsync(ctx, request, FileShape);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Index {Index}: cannot parse the page of {Project}: {Error}")]
    private static partial void LogUnparseable(ILogger logger, string index, string project, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Index {Index}: {File} now has sha256 {New} (stored: {Old}); it will be fetched again")]
    private static partial void LogFileReplaced(ILogger logger, string index, string file, string old, string @new);

    [LoggerMessage(Level = LogLevel.Information, Message = "Index {Index}: purge of {Project} (was cached: {Removed})")]
    private static partial void LogPurged(ILogger logger, string index, string project, bool removed);
}
