using Hoard.Core.Access;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Hoard.Core.Upstream;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Oci;

/// <summary>
/// The OCI distribution pull API at /v2/, for any number of registries. Blobs and manifests by digest are immutable
/// artifacts verified against their digest; a tag is resolved upstream with HEAD at most once per --tag-ttl and its
/// last known digest is served when upstream is unreachable. Cached content is served to a client only once upstream
/// has accepted that client's credentials (or lack of them) for that very object (<see cref="AuthoriseAsync"/>): a
/// digest is a name, not a credential.
/// </summary>
public sealed partial class OciFrontEnd(
    FetchEngine engine, ArtifactResponder responder, UpstreamClient upstream, RegistryAuthenticator authenticator, AccessGate gate,
    HoardOptions options, HoardMetrics metrics, TimeProvider time, ILogger<OciFrontEnd> logger)
{
    public const string ManifestAccept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
        "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

    private static readonly int Protocol = HoardMetrics.ProtocolIndex("oci");

    private long NowMs => time.GetUtcNow().ToUnixTimeMilliseconds();

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapMethods("/v2", ["GET", "HEAD"], Base);
        app.MapMethods("/v2/{**rest}", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], HandleAsync);
    }

    /// <summary>
    /// The API check. Like Docker Hub, it answers 401 to a client that sent no credentials: that is how clients learn
    /// to send the credentials they hold for this mirror, which Hoard presents upstream for private repositories.
    /// Clients without credentials carry on anonymously.
    /// </summary>
    private static Task Base(HttpContext ctx)
    {
        RequestInfo.For(ctx).Protocol = Protocol;
        if (ctx.Request.Headers.Authorization.Count == 0)
        {
            return OciErrors.WriteAsync(ctx, new OciError("UNAUTHORIZED", 401, "anonymous access works; send credentials to reach private repositories"));
        }
        ctx.Response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        ctx.Response.ContentType = "application/json";
        return HttpMethods.IsHead(ctx.Request.Method) ? Task.CompletedTask : ctx.Response.WriteAsync("{}");
    }

    private async Task HandleAsync(HttpContext ctx)
    {
        var info = RequestInfo.For(ctx);
        info.Protocol = Protocol;
        var rest = (ctx.Request.Path.Value ?? "")["/v2/".Length..];
        if (rest.Length == 0 && (HttpMethods.IsGet(ctx.Request.Method) || HttpMethods.IsHead(ctx.Request.Method)))
        {
            await Base(ctx);
            return;
        }
        if (!HttpMethods.IsGet(ctx.Request.Method) && !HttpMethods.IsHead(ctx.Request.Method))
        {
            await OciErrors.WriteAsync(ctx, new OciError("UNSUPPORTED", 405, "Hoard is a pull-through mirror: push to the registry itself"));
            return;
        }
        var (target, error) = OciRoute.Parse(rest, ctx.Request.Query["ns"], options);
        if (target is null)
        {
            await OciErrors.WriteAsync(ctx, error!);
            return;
        }
        var credentials = ClientCredentials(ctx) ?? RegistryAuthenticator.ConfiguredCredentials(target.Registry);
        var client = new Client(authenticator.For(target.Registry, target.Repository, credentials), new AccessScope("oci", target.Registry.Name, target.Repository, CredentialIds.Of(credentials)), credentials is null);
        try
        {
            switch (target.Kind)
            {
                case OciKind.TagsList:
                    await ServeTagsListAsync(ctx, target, client.Auth);
                    break;
                case OciKind.Manifest:
                    await ServeManifestAsync(ctx, target, client);
                    break;
                default:
                    await ServeBlobAsync(ctx, target, client);
                    break;
            }
        }
        finally
        {
            metrics.OciRequest(target.Registry.Name, info.Outcome);
        }
    }

    /// <summary>
    /// Who is asking: upstream auth with their credentials (or the configured ones), the scope their access is judged
    /// by, and whether upstream is asked with no credential at all (then what it gives is public).
    /// </summary>
    private sealed record Client(IUpstreamAuth Auth, AccessScope Repository, bool Anonymous);

    /// <summary>Basic credentials a client sent for this mirror; they are what Hoard presents upstream.</summary>
    private static string? ClientCredentials(HttpContext ctx)
    {
        var header = ctx.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        var value = header[6..].Trim();
        // Clients answer a Basic challenge with empty credentials when they hold none (":"): that is anonymous.
        try
        {
            return System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(value)) is ":" or "" ? null : value;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static Uri ApiUrl(UpstreamSpec registry, string path)
    {
        var b = new UriBuilder(UrlCredentials.WithoutUserInfo(registry.Url)) { Query = "" };
        b.Path = b.Path.TrimEnd('/') + "/v2/" + path;
        return b.Uri;
    }

    private ResponseShape Shape(OciKind kind, string digest, string cacheControl, CacheOutcome? hitOutcome = null) =>
        new(kind == OciKind.Blob ? "application/octet-stream" : null, cacheControl)
        {
            Headers = [new("Docker-Content-Digest", digest), new("Docker-Distribution-API-Version", "registry/2.0")],
            HitOutcome = hitOutcome,
            WriteError = (ctx, status, message) => OciErrors.WriteAsync(ctx, OciErrors.FromStatus(status, message, kind)),
        };

    private async Task ServeManifestAsync(HttpContext ctx, OciTarget target, Client client)
    {
        string digest;
        CacheOutcome? hitOutcome = null;
        if (target.IsDigest)
        {
            digest = target.Reference;
            if (await AuthoriseAsync(ctx, target, client, ManifestKey(target, digest), $"{target.Repository}/manifests/{digest}", OciKind.Manifest) is { } denied)
            {
                await OciErrors.WriteAsync(ctx, denied);
                return;
            }
        }
        else
        {
            var resolved = await ResolveTagAsync(ctx, target, client);
            if (resolved.Error is not null)
            {
                await OciErrors.WriteAsync(ctx, resolved.Error);
                return;
            }
            digest = resolved.Digest!;
            hitOutcome = resolved.Outcome;
        }
        var key = ManifestKey(target, digest);
        var request = new ArtifactRequest("oci", key, target.Registry.Name, ApiUrl(target.Registry, $"{target.Repository}/manifests/{digest}"))
        {
            ExpectedSha256 = digest["sha256:".Length..],
            Accept = ManifestAccept,
            Auth = client.Auth,
            Access = ContentAccess.Authorised,
            Anonymous = client.Anonymous,
        };
        var cacheControl = target.IsDigest ? "public, max-age=31536000, immutable" : "no-cache";
        await responder.RespondAsync(ctx, request, Shape(OciKind.Manifest, digest, cacheControl, hitOutcome));
        if (!target.IsDigest)
        {
            // Remember tag -> digest once the manifest is stored under this repository (durably: an outage after a
            // restart still finds it).
            await engine.RecordPointerAsync(TagKey(target), key, digest["sha256:".Length..]);
        }
    }

    private static string ManifestKey(OciTarget t, string digest) => $"oci/{t.Registry.Name}/{t.Repository}/manifests/{digest}";

    private static string TagKey(OciTarget t) => $"oci/{t.Registry.Name}/{t.Repository}/tags/{t.Reference}";

    /// <summary>
    /// Tag to digest: the stored answer while younger than --tag-ttl (and upstream accepted this client for the
    /// repository within a minute), else a HEAD upstream with the client's credentials, which also decides access:
    /// only a 2xx lets the client have the digest. Upstream unreachable: the last known digest, to a client upstream
    /// accepted for this repository before (logged and counted as stale).
    /// </summary>
    private async Task<(string? Digest, CacheOutcome? Outcome, OciError? Error)> ResolveTagAsync(HttpContext ctx, OciTarget target, Client client)
    {
        var tagKey = TagKey(target);
        var isKnown = engine.TryGetStored(tagKey, out var known);
        var fresh = isKnown && NowMs - known.FetchedAtMs < options.TagTtl.TotalMilliseconds;
        if (fresh && gate.IsFresh(client.Repository))
        {
            return ("sha256:" + known.Digest, null, null);
        }
        var call = Head(target, client.Auth, $"{target.Repository}/manifests/{target.Reference}");
        string failure;
        try
        {
            using var response = await upstream.SendUncheckedAsync(call, ctx.RequestAborted);
            var status = (int)response.StatusCode;
            var digest = response.Headers.TryGetValues("Docker-Content-Digest", out var values) ? values.FirstOrDefault() : null;
            if (!response.IsSuccessStatusCode)
            {
                gate.Record(client.Repository, status);
            }
            if (response.IsSuccessStatusCode && digest is not null && digest.StartsWith("sha256:", StringComparison.Ordinal) && digest.Length == 71 && FetchEngine.IsDigest(digest[7..]))
            {
                // A 2xx counts as the registry's acceptance only with a digest: a login page reached by redirects is
                // not a manifest.
                gate.Record(client.Repository, status);
                if (isKnown && "sha256:" + known.Digest == digest)
                {
                    engine.ConfirmPointer(tagKey, known.Digest);
                    return (digest, CacheOutcome.Revalidated, null);
                }
                return (digest, null, null);
            }
            if (status is >= 400 and < 500)
            {
                return (null, null, status == 404
                    ? new OciError("MANIFEST_UNKNOWN", 404, $"{target.Registry.Name}/{target.Repository}:{target.Reference} does not exist upstream (for these credentials)")
                    : OciErrors.FromStatus(status is 401 or 403 or 429 ? status : 404, AccessDenied(target, status), OciKind.Manifest));
            }
            failure = response.IsSuccessStatusCode ? $"HEAD answered {status} without a usable Docker-Content-Digest" : $"HEAD answered {status}";
        }
        catch (UpstreamException e)
        {
            failure = e.Message;
        }
        if (!isKnown || !gate.WasGranted(client.Repository))
        {
            return (null, null, new OciError("UNKNOWN", 502, $"upstream '{target.Registry.Name}' cannot resolve {target.Repository}:{target.Reference} now ({failure}), and never confirmed these credentials for it"));
        }
        LogStaleTag(logger, target.Registry.Name, target.Repository, target.Reference, failure);
        metrics.StaleServed("oci");
        return ("sha256:" + known.Digest, CacheOutcome.Stale, null);
    }

    private static string AccessDenied(OciTarget t, int status) => status switch
    {
        401 or 403 => $"upstream '{t.Registry.Name}' refused these credentials for {t.Repository}: log in to this mirror with credentials the registry accepts",
        429 => $"upstream '{t.Registry.Name}' is rate-limiting these credentials for {t.Repository}",
        _ => $"upstream '{t.Registry.Name}' answered {status} for {t.Repository}",
    };

    private async Task ServeBlobAsync(HttpContext ctx, OciTarget target, Client client)
    {
        var key = $"oci/{target.Registry.Name}/{target.Repository}/blobs/{target.Reference}";
        if (await AuthoriseAsync(ctx, target, client, key, $"{target.Repository}/blobs/{target.Reference}", OciKind.Blob) is { } denied)
        {
            await OciErrors.WriteAsync(ctx, denied);
            return;
        }
        var request = new ArtifactRequest("oci", key, target.Registry.Name, ApiUrl(target.Registry, $"{target.Repository}/blobs/{target.Reference}"))
        {
            ExpectedSha256 = target.DigestHex,
            Auth = client.Auth,
            Access = ContentAccess.Authorised,
            Anonymous = client.Anonymous,
        };
        await responder.RespondAsync(ctx, request, Shape(OciKind.Blob, target.Reference, "public, max-age=31536000, immutable"));
    }

    /// <summary>
    /// May this client have this object (a manifest or blob by digest) of this repository? Stored under this
    /// repository's own key and the client accepted for the repository within a minute: yes. Otherwise upstream is
    /// asked, with a HEAD of the object and the client's credentials, and only a 2xx lets the client have it, from
    /// wherever Hoard has it (the store, another client's download, a peer node). Upstream unreachable: a client it
    /// accepted before for this object, or for this repository when the object is stored under it, is served.
    /// </summary>
    private async Task<OciError?> AuthoriseAsync(HttpContext ctx, OciTarget target, Client client, string key, string probePath, OciKind kind)
    {
        var storedHere = engine.TryGetStored(key, out _);
        if (storedHere && gate.IsFresh(client.Repository))
        {
            return null;
        }
        var decision = await gate.CheckAsync(client.Repository with { Item = target.Reference }, ct => ProbeAsync(target, client.Auth, probePath, ct), ctx.RequestAborted,
            staleFallback: storedHere ? client.Repository : null);
        if (decision.Allowed)
        {
            return null;
        }
        return decision.Status switch
        {
            401 or 403 or 429 => OciErrors.FromStatus(decision.Status, AccessDenied(target, decision.Status), kind),
            404 => OciErrors.FromStatus(404, $"{target.Registry.Name}/{target.Repository}@{target.Reference} does not exist upstream (for these credentials)", kind),
            _ => OciErrors.FromStatus(decision.Status, decision.Reason, kind),
        };
    }

    /// <summary>A HEAD with the client's credentials. It decides a pull: one more try if the connection fails.</summary>
    private static UpstreamCall Head(OciTarget target, IUpstreamAuth auth, string path) =>
        new("oci", target.Registry.Name, ApiUrl(target.Registry, path))
        {
            Method = HttpMethod.Head,
            Accept = ManifestAccept,
            Auth = auth,
            Retries = 1,
        };

    /// <summary>HEAD upstream with the client's credentials; the status, or 0 when upstream could not be reached.</summary>
    private async Task<int> ProbeAsync(OciTarget target, IUpstreamAuth auth, string path, CancellationToken ct)
    {
        try
        {
            using var response = await upstream.SendUncheckedAsync(Head(target, auth, path), ct);
            return Evidence(response, target);
        }
        catch (UpstreamException)
        {
            return 0;
        }
    }

    /// <summary>
    /// The probe's status, where a 2xx counts only if it is the registry's answer about this object: its
    /// Docker-Content-Digest names the digest asked for, or (a blob HEAD redirected to storage, which sends no such
    /// header) it is not an HTML page. A 2xx without that evidence (a login page reached by redirects, an auth proxy)
    /// counts as a refusal (401): the client is not accepted on its strength.
    /// </summary>
    private static int Evidence(HttpResponseMessage response, OciTarget target)
    {
        var status = (int)response.StatusCode;
        if (status is < 200 or >= 300)
        {
            return status;
        }
        if (response.Headers.TryGetValues("Docker-Content-Digest", out var values))
        {
            return values.FirstOrDefault() == target.Reference ? status : 401;
        }
        var redirected = response.RequestMessage?.RequestUri is { } final && final.Authority != target.Registry.Url.Authority;
        var html = response.Content.Headers.ContentType?.MediaType?.Contains("html", StringComparison.OrdinalIgnoreCase) == true;
        return target.Kind == OciKind.Blob && redirected && !html ? status : 401;
    }

    /// <summary>tags/list is not cached: it is upstream's current answer, with the client's credentials.</summary>
    private async Task ServeTagsListAsync(HttpContext ctx, OciTarget target, IUpstreamAuth auth)
    {
        var url = new UriBuilder(ApiUrl(target.Registry, $"{target.Repository}/tags/list")) { Query = ctx.Request.QueryString.Value?.TrimStart('?').Replace("ns=", "_ns=", StringComparison.Ordinal) ?? "" }.Uri;
        try
        {
            using var response = await upstream.SendUncheckedAsync(new UpstreamCall("oci", target.Registry.Name, url) { Auth = auth }, ctx.RequestAborted);
            var status = (int)response.StatusCode;
            if (status != 200)
            {
                await OciErrors.WriteAsync(ctx, OciErrors.FromStatus(status is 401 or 403 or 404 or 429 ? status : 502, $"upstream '{target.Registry.Name}' answered {status} for the tags of {target.Repository}", OciKind.TagsList));
                return;
            }
            RequestInfo.For(ctx).Outcome = CacheOutcome.Discovery;
            ctx.Response.ContentType = "application/json";
            ctx.Response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
            if (response.Headers.TryGetValues("Link", out var link))
            {
                ctx.Response.Headers["Link"] = link.First();
            }
            await response.Content.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
        }
        catch (UpstreamException e)
        {
            await OciErrors.WriteAsync(ctx, OciErrors.FromStatus(e.ClientStatus, e.Message, OciKind.TagsList));
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Serving the last known digest of {Registry}/{Repository}:{Tag}: {Error}")]
    private static partial void LogStaleTag(ILogger logger, string registry, string repository, string tag, string error);
}
