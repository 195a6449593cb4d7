using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Hoard.Core.Upstream;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Caching.Memory;

namespace Hoard.Core.Git;

/// <summary>
/// Git LFS: the batch API goes upstream (which authorises the client); download hrefs in its answer become Hoard
/// URLs carrying an unguessable, expiring token that stands for that one upstream action; objects are then fetched
/// through the shared cache, verified by oid (sha256) and size, shared by concurrent downloads, served with Range.
/// Uploads and verify keep upstream's hrefs: they never pass through Hoard.
/// </summary>
public sealed class LfsProxy(UpstreamClient upstream, ArtifactResponder responder, HoardMetrics metrics, TimeProvider time) : IDisposable
{
    private static readonly ResponseShape ObjectShape = new("application/octet-stream", "private, max-age=3600");
    private static readonly TimeSpan MaxTokenLife = TimeSpan.FromHours(1);

    /// <summary>A batch answer lists at most a few hundred objects (git-lfs asks in batches of 100): a few hundred KB.</summary>
    private const long MaxBatchResponseBytes = 16L * 1024 * 1024;

    /// <summary>
    /// Grants outstanding, at most this many: each batch answer adds one per object, so the map is bounded rather than
    /// left to grow with what clients ask for; a client whose grant was dropped asks the batch API again.
    /// </summary>
    private const int MaxGrants = 200_000;
    private readonly MemoryCache _grants = new(new MemoryCacheOptions { SizeLimit = MaxGrants, CompactionPercentage = 0.25 });

    public void Dispose() => _grants.Dispose();

    /// <summary>What upstream allowed: one object, from one href, with its headers, until a time.</summary>
    private sealed record Grant(string Upstream, string Repository, string Oid, long Size, Uri Href, IReadOnlyList<KeyValuePair<string, string>> Headers, long ExpiresMs);

    /// <summary>A batch request that only reads (operation "download"); anything else is a write.</summary>
    public static bool IsDownload(byte[] body)
    {
        try
        {
            return JsonNode.Parse(body) is JsonObject o && o["operation"] is JsonValue v && v.TryGetValue<string>(out var op) && op == "download";
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }

    public async Task BatchAsync(HttpContext ctx, UpstreamSpec spec, string repository, Uri batchUrl, byte[] body, IReadOnlyList<KeyValuePair<string, string>> headers)
    {
        var content = new ByteArrayContent(body);
        content.Headers.TryAddWithoutValidation("Content-Type", "application/vnd.git-lfs+json");
        var call = new UpstreamCall("git", spec.Name, batchUrl)
        {
            Method = HttpMethod.Post,
            Accept = "application/vnd.git-lfs+json",
            Headers = headers,
            Body = content,
        };
        using var response = await upstream.SendUncheckedAsync(call, ctx.RequestAborted);
        byte[] answer;
        try
        {
            answer = await upstream.ReadBoundedAsync(call, response, MaxBatchResponseBytes, "an LFS batch answer", ctx.RequestAborted);
        }
        catch (UpstreamException e)
        {
            await HttpErrors.WriteAsync(ctx, e.ClientStatus, e.Message);
            return;
        }
        UpstreamRelay.CopyStatus(ctx.Response, response);
        ctx.Response.ContentType = "application/vnd.git-lfs+json";
        var text = System.Text.Encoding.UTF8.GetString(answer);
        metrics.Git("lfs_batch", ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (response.IsSuccessStatusCode && JsonNode.Parse(text) is JsonObject root && root["objects"] is JsonArray objects)
        {
            var baseUrl = $"{ctx.Request.Scheme}://{ctx.Request.Host}{ctx.Request.PathBase}/git/{spec.Name}/-/lfs/";
            foreach (var o in objects.OfType<JsonObject>())
            {
                RewriteDownload(spec, repository, o, baseUrl);
            }
            text = root.ToJsonString();
        }
        await ctx.Response.WriteAsync(text, ctx.RequestAborted);
    }

    private void RewriteDownload(UpstreamSpec spec, string repository, JsonObject o, string baseUrl)
    {
        if (o["actions"]?["download"] is not JsonObject download || o["oid"]?.GetValue<string>() is not { } oid || !Fetch.FetchEngine.IsDigest(oid)
            || download["href"]?.GetValue<string>() is not { } href || !Uri.TryCreate(href, UriKind.Absolute, out var hrefUrl) || hrefUrl.Scheme is not ("http" or "https"))
        {
            return;
        }
        var size = o["size"] is JsonValue sv && sv.TryGetValue<long>(out var s) ? s : -1;
        var headers = (download["header"] as JsonObject)?.Select(kv => new KeyValuePair<string, string>(kv.Key, kv.Value?.ToString() ?? "")).ToList() ?? [];
        var now = time.GetUtcNow();
        var expires = now + MaxTokenLife;
        if (download["expires_in"] is JsonValue ein && ein.TryGetValue<long>(out var seconds) && seconds > 0 && now.AddSeconds(seconds) < expires)
        {
            expires = now.AddSeconds(seconds);
        }
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        _grants.Set(token, new Grant(spec.Name, repository, oid, size, hrefUrl, headers, expires.ToUnixTimeMilliseconds()),
            new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = expires - now });
        download["href"] = baseUrl + oid + "?t=" + token;
        download.Remove("header");
        download["expires_in"] = (long)(expires - now).TotalSeconds;
        download.Remove("expires_at");
    }

    /// <summary>GET /git/NAME/-/lfs/&lt;oid&gt;?t=TOKEN: the object, from the cache or through it.</summary>
    public async Task ObjectAsync(HttpContext ctx, UpstreamSpec spec, string oid)
    {
        var token = ctx.Request.Query["t"].ToString();
        if (!_grants.TryGetValue(token, out Grant? grant) || grant is null || grant.Oid != oid || grant.Upstream != spec.Name)
        {
            await HttpErrors.WriteAsync(ctx, 401, "no valid LFS download token for this object: ask the batch API again");
            return;
        }
        if (grant.ExpiresMs < time.GetUtcNow().ToUnixTimeMilliseconds())
        {
            _grants.Remove(token);
            await HttpErrors.WriteAsync(ctx, 401, "the LFS download token has expired: ask the batch API again");
            return;
        }
        // Keyed by repository: a batch answer says the object exists in this repository, not that these bytes may be
        // had wherever else a blob with this sha256 was stored (LFS servers rarely check what was uploaded under an oid).
        var request = new ArtifactRequest("git", $"lfs/{spec.Name}/{grant.Repository}/{oid}", spec.Name, grant.Href)
        {
            ExpectedSha256 = oid,
            ExpectedSize = grant.Size >= 0 ? grant.Size : null,
            Headers = grant.Headers,
        };
        await responder.RespondAsync(ctx, request, ObjectShape);
        metrics.Git("lfs_object", RequestInfo.For(ctx).Outcome.ToString().ToLowerInvariant());
    }
}
