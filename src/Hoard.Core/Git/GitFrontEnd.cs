using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Hoard.Core.Access;
using Hoard.Core.Configuration;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Hoard.Core.Upstream;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Git;

/// <summary>
/// Git smart HTTP at /git/NAME/&lt;repo&gt;. Discovery (info/refs) always goes upstream with the client's credentials,
/// so clients see current refs and upstream authorises them; fetches are answered by the real
/// `git upload-pack --stateless-rpc` on a local full mirror, fetched from upstream only when it lacks a wanted
/// object; pushes stream straight to upstream. With upstream unreachable, a mirrored repository is served from its
/// last known refs.
/// </summary>
public sealed partial class GitFrontEnd(GitMirror mirrors, UpstreamClient upstream, ArtifactResponder responder, Fetch.FetchEngine engine, LfsProxy lfs, AccessGate gate,
    RequestBodyReader bodies, HoardOptions options, HoardMetrics metrics, TimeProvider time, ILogger<GitFrontEnd> logger)
{
    private static readonly ResponseShape PackShape = new("application/x-git-upload-pack-result", "no-cache");
    /// <summary>A fetch's request (wants, haves, arguments) after gunzip; a repository with thousands of refs needs a few MB.</summary>
    private const long MaxRequestBody = 16L * 1024 * 1024;

    /// <summary>An LFS batch request: a list of oids and sizes.</summary>
    private const long MaxBatchBody = 4L * 1024 * 1024;
    private static readonly int Protocol = HoardMetrics.ProtocolIndex("git");
    private readonly Dictionary<string, UpstreamSpec> _upstreams = options.Git.ToDictionary(g => g.Name, StringComparer.Ordinal);

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapMethods("/git/{name}/{**rest}", ["GET", "POST"], HandleAsync);
        app.MapMethods("/_hoard/peer/git/{name}/{**rest}", ["GET", "POST"], ServePeerAsync);
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        RequestInfo.For(ctx).Protocol = Protocol;
        var name = (string)ctx.Request.RouteValues["name"]!;
        if (!_upstreams.TryGetValue(name, out var spec))
        {
            await HttpErrors.WriteAsync(ctx, 404, $"no git upstream named '{name}' is configured");
            return;
        }
        var rest = (ctx.Request.Path.Value ?? "")[$"/git/{name}/".Length..];
        var (target, status, error) = GitRoute.Parse(rest, ctx.Request.Method, ctx.Request.Query["service"].ToString());
        if (target is null)
        {
            await HttpErrors.WriteAsync(ctx, status, error);
            return;
        }
        var repository = target.Repository;
        await (target.Action switch
        {
            GitAction.LfsObject => lfs.ObjectAsync(ctx, spec, rest["-/lfs/".Length..]),
            GitAction.LfsBatch => LfsBatchAsync(ctx, spec, repository, rest),
            GitAction.LfsForward => ForwardAsync(ctx, spec, rest, "lfs"),
            GitAction.Bundle => BundleAsync(ctx, spec, repository),
            GitAction.InfoRefs => InfoRefsAsync(ctx, spec, repository),
            GitAction.ReceivePack => ForwardAsync(ctx, spec, rest, "receive_pack"),
            _ => UploadPackAsync(ctx, spec, repository),
        });
    }

    /// <summary>
    /// An LFS batch: upstream's answer decides per object; the body is read only for a client upstream accepted
    /// for the repository, and bounded.
    /// </summary>
    private async Task LfsBatchAsync(HttpContext ctx, UpstreamSpec spec, string repository, string rest)
    {
        RequestInfo.For(ctx).Outcome = CacheOutcome.Discovery;
        if (await AuthoriseAsync(ctx, spec, repository) is { } denied)
        {
            await HttpErrors.WriteAsync(ctx, denied.Status, denied.Reason);
            return;
        }
        if (await bodies.ReadAsync(ctx, MaxBatchBody) is { } batch)
        {
            await lfs.BatchAsync(ctx, spec, repository, UpstreamUrl(spec, rest), batch, ForwardHeaders(ctx, spec, configuredMayRead: LfsProxy.IsDownload(batch)));
        }
    }

    private static string? Authorization(HttpContext ctx) => ctx.Request.Headers.Authorization.Count > 0 ? ctx.Request.Headers.Authorization.ToString() : null;

    private static string GitProtocolHeader(HttpContext ctx) => ctx.Request.Headers["Git-Protocol"].ToString();

    private Uri UpstreamUrl(UpstreamSpec spec, string pathAndQuery) =>
        new(UrlCredentials.WithoutUserInfo(spec.Url), pathAndQuery);

    /// <param name="configuredMayRead">
    /// The configured credentials stand in for a client that sent none, for reading only: a push or an LFS upload
    /// goes upstream with the client's own credentials or none, never as the operator.
    /// </param>
    private List<KeyValuePair<string, string>> ForwardHeaders(HttpContext ctx, UpstreamSpec spec, bool configuredMayRead = true)
    {
        var headers = new List<KeyValuePair<string, string>>();
        var auth = Authorization(ctx) ?? (configuredMayRead && UrlCredentials.Basic(spec.Url) is { } basic ? "Basic " + basic : null);
        if (auth is not null)
        {
            headers.Add(new("Authorization", auth));
        }
        if (GitProtocolHeader(ctx) is { Length: > 0 } gp)
        {
            headers.Add(new("Git-Protocol", gp));
        }
        return headers;
    }

    /// <summary>Access is judged per upstream, repository and credential (the client's, else the configured one).</summary>
    private static AccessScope Scope(UpstreamSpec spec, string repository, HttpContext ctx) =>
        new("git", spec.Name, repository, CredentialIds.Of(Authorization(ctx) ?? UrlCredentials.Basic(spec.Url)));

    /// <summary>Refs come from upstream every time (with the client's credentials, which this also checks).</summary>
    private async Task InfoRefsAsync(HttpContext ctx, UpstreamSpec spec, string repository)
    {
        var info = RequestInfo.For(ctx);
        try
        {
            using var response = await upstream.SendUncheckedAsync(new UpstreamCall("git", spec.Name, UpstreamUrl(spec, repository + "/info/refs?service=git-upload-pack"))
            {
                Headers = ForwardHeaders(ctx, spec),
            }, ctx.RequestAborted);
            var status = (int)response.StatusCode;
            gate.Record(Scope(spec, repository, ctx), Evidence(response));
            UpstreamRelay.CopyStatus(ctx.Response, response);
            ctx.Response.ContentType = response.Content.Headers.ContentType?.ToString() ?? "application/x-git-upload-pack-advertisement";
            info.Outcome = CacheOutcome.Discovery;
            metrics.Git("info_refs", status == 200 ? "upstream" : status.ToString(System.Globalization.CultureInfo.InvariantCulture));
            if (status == 200 && UploadPackRequest.IsV2(GitProtocolHeader(ctx)) && BundleAdvertised(mirrors.PathOf(spec, repository)))
            {
                await RelayWithBundleUriAsync(ctx, response);
                return;
            }
            await response.Content.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
        }
        catch (UpstreamException e)
        {
            var mirror = mirrors.PathOf(spec, repository);
            using var lease = mirrors.Space.Use(mirror);
            if (!options.GitServeStale || !mirrors.Exists(mirror) || !gate.WasGranted(Scope(spec, repository, ctx)))
            {
                metrics.Git("info_refs", "error");
                await HttpErrors.WriteAsync(ctx, e.ClientStatus, e.Message);
                return;
            }
            LogStaleRefs(logger, spec.Name, repository, e.Message);
            metrics.StaleServed("git");
            metrics.Git("info_refs", "stale");
            info.Outcome = CacheOutcome.Stale;
            await RunUploadPackAsync(ctx, mirror, advertise: true, body: null);
        }
    }

    private async Task UploadPackAsync(HttpContext ctx, UpstreamSpec spec, string repository)
    {
        var info = RequestInfo.For(ctx);
        // Authorised first: the body (gzip may make 64 KB into 16 MB) is read only for a client upstream accepted.
        if (await AuthoriseAsync(ctx, spec, repository) is { } refusal)
        {
            await HttpErrors.WriteAsync(ctx, refusal.Status, refusal.Reason);
            return;
        }
        var body = await bodies.ReadAsync(ctx, MaxRequestBody);
        if (body is null)
        {
            return;
        }
        if (UploadPackRequest.IsCommand(body, "bundle-uri"))
        {
            await BundleListAsync(ctx, spec, repository);
            return;
        }
        if (UploadPackRequest.IsCommand(body, "ls-refs"))
        {
            // Protocol v2 discovery: upstream's refs, always; the mirror's only when upstream is unreachable.
            if (await TryForwardUploadPackAsync(ctx, spec, repository, body, "ls_refs"))
            {
                return;
            }
            var stale = mirrors.PathOf(spec, repository);
            using var staleLease = mirrors.Space.Use(stale);
            if (!options.GitServeStale || !mirrors.Exists(stale))
            {
                await HttpErrors.WriteAsync(ctx, 502, $"upstream '{spec.Name}' is unreachable and {repository} is not mirrored");
                return;
            }
            LogStaleRefs(logger, spec.Name, repository, "ls-refs from the mirror");
            metrics.StaleServed("git");
            metrics.Git("ls_refs", "stale");
            info.Outcome = CacheOutcome.Stale;
            await RunUploadPackAsync(ctx, stale, advertise: false, body);
            return;
        }
        var mirror = mirrors.PathOf(spec, repository);
        using var lease = mirrors.Space.Use(mirror);
        var (fetched, passThrough) = await PrepareMirrorAsync(ctx, spec, repository, mirror, UploadPackRequest.ParseWants(body));
        info.Outcome = fetched ? CacheOutcome.Miss : CacheOutcome.Hit;
        if (passThrough is not null)
        {
            // Never worse than a direct fetch: what the mirror cannot answer (no mirror yet, a failed or stalled
            // fetch, objects upstream gives only by ref) goes to upstream's own upload-pack, as the client sent it.
            LogPassThrough(logger, spec.Name, repository, passThrough);
            info.Outcome = CacheOutcome.Bypass;
            if (!await TryForwardUploadPackAsync(ctx, spec, repository, body, "pass_through"))
            {
                await HttpErrors.WriteAsync(ctx, 502, $"could not mirror {spec.Name}/{repository}, and upstream is unreachable");
            }
            return;
        }
        metrics.Git("upload_pack", fetched ? "fetched" : "hit");
        if (fetched)
        {
            WarmBundle(spec, repository, mirror);
        }
        var gitProtocol = GitProtocolHeader(ctx);
        if (UploadPackRequest.PackCacheKey(spec, repository, mirror, options.GitRefsOf(spec.Name), gitProtocol, body) is { } key)
        {
            CountClone(mirror);
            // Identical requests (same repository, refs, protocol, wants, haves, arguments) share one upload-pack
            // run: it streams to everyone waiting and is stored, progress removed, for the next identical request.
            var request = new Fetch.ArtifactRequest("git", "git/pack/" + key, spec.Name, UpstreamUrl(spec, repository + "/git-upload-pack"))
            {
                Producer = ct => ProducePackAsync(mirror, gitProtocol, body, ct),
            };
            await responder.RespondAsync(ctx, request, PackShape);
            metrics.Git("pack_cache", info.Outcome.ToString().ToLowerInvariant());
            return;
        }
        await RunUploadPackAsync(ctx, mirror, advertise: false, body);
    }

    /// <summary>
    /// Sends an upload-pack request (a v2 ls-refs, or a fetch the mirror cannot answer) upstream with the client's
    /// credentials and streams the answer back; false when upstream could not be reached.
    /// </summary>
    private async Task<bool> TryForwardUploadPackAsync(HttpContext ctx, UpstreamSpec spec, string repository, byte[] body, string kind)
    {
        var content = new ByteArrayContent(body);
        content.Headers.TryAddWithoutValidation("Content-Type", "application/x-git-upload-pack-request");
        try
        {
            using var response = await upstream.SendUncheckedAsync(new UpstreamCall("git", spec.Name, UpstreamUrl(spec, repository + "/git-upload-pack"))
            {
                Method = HttpMethod.Post,
                Headers = ForwardHeaders(ctx, spec),
                Body = content,
            }, ctx.RequestAborted);
            // ls-refs is discovery; a fetch passed through bypasses the mirror.
            RequestInfo.For(ctx).Outcome = kind == "ls_refs" ? CacheOutcome.Discovery : CacheOutcome.Bypass;
            ctx.Response.StatusCode = (int)response.StatusCode;
            ctx.Response.Headers.CacheControl = "no-cache";
            ctx.Response.ContentType = response.Content.Headers.ContentType?.ToString() ?? "application/x-git-upload-pack-result";
            metrics.Git(kind, "upstream");
            await response.Content.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
            return true;
        }
        catch (UpstreamException)
        {
            return false;
        }
    }

    /// <summary>
    /// The status of an info/refs answer, where a 2xx counts only if it is a ref advertisement (a login page reached
    /// by redirects is not): otherwise a refusal, 401.
    /// </summary>
    private static int Evidence(HttpResponseMessage response) =>
        response.IsSuccessStatusCode
            ? response.Content.Headers.ContentType?.MediaType == "application/x-git-upload-pack-advertisement" ? (int)response.StatusCode : 401
            : (int)response.StatusCode;

    /// <summary>
    /// Upstream must accept this client for this repository: its info/refs with the client's credentials must answer
    /// 2xx (remembered for a minute, see <see cref="AccessGate"/>). Upstream unreachable: a client it accepted before.
    /// </summary>
    private async Task<AccessDecision?> AuthoriseAsync(HttpContext ctx, UpstreamSpec spec, string repository)
    {
        var decision = await gate.CheckAsync(Scope(spec, repository, ctx), async ct =>
        {
            var headers = ForwardHeaders(ctx, spec);
            headers.RemoveAll(h => h.Key == "Git-Protocol");
            headers.Add(new("Git-Protocol", "version=2"));
            try
            {
                using var response = await upstream.SendUncheckedAsync(new UpstreamCall("git", spec.Name, UpstreamUrl(spec, repository + "/info/refs?service=git-upload-pack")) { Headers = headers }, ct);
                return Evidence(response);
            }
            catch (UpstreamException)
            {
                return 0;
            }
        }, ctx.RequestAborted);
        return decision.Allowed ? null : decision;
    }

    /// <summary>Pushes and their discovery: streamed to upstream as they come, never buffered, never retried.</summary>
    private async Task ForwardAsync(HttpContext ctx, UpstreamSpec spec, string pathAndService, string kind)
    {
        RequestInfo.For(ctx).Outcome = CacheOutcome.Bypass;
        var isPost = HttpMethods.IsPost(ctx.Request.Method);
        if (isPost && ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = null;
        }
        var headers = ForwardHeaders(ctx, spec, configuredMayRead: false);
        HttpContent? content = null;
        if (isPost)
        {
            content = new StreamContent(ctx.Request.Body);
            content.Headers.TryAddWithoutValidation("Content-Type", ctx.Request.ContentType ?? "application/x-git-receive-pack-request");
            if (ctx.Request.Headers.ContentEncoding.Count > 0)
            {
                content.Headers.TryAddWithoutValidation("Content-Encoding", ctx.Request.Headers.ContentEncoding.ToString());
            }
        }
        var query = ctx.Request.QueryString.Value ?? "";
        try
        {
            using var response = await upstream.SendUncheckedAsync(new UpstreamCall("git", spec.Name, UpstreamUrl(spec, pathAndService + query))
            {
                Method = isPost ? HttpMethod.Post : HttpMethod.Get,
                Headers = headers,
                Body = content,
            }, ctx.RequestAborted);
            UpstreamRelay.CopyStatus(ctx.Response, response);
            if (response.Content.Headers.ContentType is { } type)
            {
                ctx.Response.ContentType = type.ToString();
            }
            metrics.Git(kind, ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture));
            await response.Content.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
        }
        catch (UpstreamException e)
        {
            metrics.Git(kind, "error");
            await HttpErrors.WriteAsync(ctx, e.ClientStatus, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git {Upstream}/{Repository}: passing the fetch through to upstream: {Reason}")]
    private static partial void LogPassThrough(ILogger logger, string upstream, string repository, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git {Upstream}/{Repository}: upstream unreachable, serving the mirror's last known refs: {Error}")]
    private static partial void LogStaleRefs(ILogger logger, string upstream, string repository, string error);
}
