using Hoard.Core.Fetch;
using Hoard.Core.Hosting;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Hoard.Core.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using StackExchange.Redis;

namespace Hoard.Core.Cluster;

/// <summary>The peer endpoint: what this node gives other nodes, and to whom.</summary>
public sealed partial class ClusterNode
{
    public void Map(IEndpointRouteBuilder app)
    {
        app.MapGet(BlobPath + "{digest}", (HttpContext ctx, string digest) => ServePeerAsync(ctx, digest, byKey: false));
        app.MapGet(KeyPath + "{id}", (HttpContext ctx, string id) => ServePeerAsync(ctx, id, byKey: true));
    }

    /// <summary>
    /// A peer asks for a blob by digest, or for a key's content by the key's id (<see cref="ClusterRecords.KeyId"/>):
    /// committed, or streamed from this node's download in progress; never fetched for it. The request is signed
    /// (method, path, Range, purpose, node, time) and says what it is for: a client upstream confirmed for the digest
    /// ("authorised"), a public request ("public": public blobs only) or one key ("key K": that key's own content, or
    /// a public blob; by key only that key's, and K must be the key the id names). The asking node made its own
    /// client's check; this node gives nothing beyond what that check allows.
    /// </summary>
    private async Task ServePeerAsync(HttpContext ctx, string name, bool byKey)
    {
        var purpose = ctx.Request.Headers[PeerSignature.ForHeader].ToString();
        var range = ctx.Request.Headers.Range.Count > 0 ? ctx.Request.Headers.Range.ToString() : null;
        switch (_signature.Verify(ctx.Request.Headers[PeerSignature.Header], "GET", ctx.Request.Path.Value ?? "", range, purpose, Id, out var peer))
        {
            case PeerSignature.Check.Malformed:
                ctx.Response.Headers.WWWAuthenticate = "HoardPeer";
                await HttpErrors.WriteAsync(ctx, 401, "cluster requests must carry an X-Hoard-Peer signature: v1 TIME NODE HMAC");
                return;
            case PeerSignature.Check.Expired or PeerSignature.Check.Forged:
                await HttpErrors.WriteAsync(ctx, 403, "cluster requests must be signed with the cluster secret, within a minute");
                return;
        }
        if (!FetchEngine.IsDigest(name))
        {
            await HttpErrors.WriteAsync(ctx, 400, "not a sha256 digest");
            return;
        }
        if (ParsePurpose(purpose) is not { } wanted)
        {
            await HttpErrors.WriteAsync(ctx, 400, "X-Hoard-Peer-For must be 'authorised', 'public' or 'key KEY'");
            return;
        }
        if (byKey && (wanted.Access != ContentAccess.Keyed || ClusterRecords.KeyId(wanted.Key) != name))
        {
            await HttpErrors.WriteAsync(ctx, 400, "a key's content is asked for as 'key KEY', for the key the path names");
            return;
        }
        var upload = byKey ? "key:" + name : name;
        if (_uploads.AddOrUpdate(upload, 1, (_, n) => n + 1) > _options.PeerFanout)
        {
            EndUpload(upload);
            await HttpErrors.WriteAsync(ctx, 503, "this node is serving this blob to enough peers already: ask another holder");
            return;
        }
        // The response body as sent (the access log's count): what this peer was given, for the dashboard's traffic.
        var body = ctx.Features.Get<IHttpResponseBodyFeature>() as CountingResponseBody;
        var before = body?.Bytes ?? 0;
        try
        {
            var (blob, entry, fill) = byKey ? _engine.FindKeyForPeer(wanted.Key) : WithoutEntry(_engine.FindForPeer(name, wanted.Access, wanted.Key));
            if (blob is not null)
            {
                try
                {
                    // A key's entry brings its own Content-Type and upstream's Last-Modified.
                    await _responder.ServeBlobAsync(ctx, blob, entry, ResponseShape.Immutable with { ContentType = entry?.ContentType ?? blob.ContentType }, CacheOutcome.Hit);
                }
                finally
                {
                    blob.Release();
                }
                return;
            }
            if (fill is not null)
            {
                await _responder.ServeInFlightAsync(ctx, fill);
                return;
            }
            await HttpErrors.WriteAsync(ctx, 404, "this node neither holds nor is fetching that blob for this purpose");
        }
        finally
        {
            EndUpload(upload);
            if (body is not null && ctx.Response.StatusCode is StatusCodes.Status200OK or StatusCodes.Status206PartialContent)
            {
                CountTraffic(peer, body.Bytes - before, 0);
            }
        }
    }

    private static (BlobRecord? Blob, EntryRecord? Entry, Fill? Fill) WithoutEntry((BlobRecord? Blob, Fill? Fill) found) => (found.Blob, null, found.Fill);

    /// <summary>One upload fewer; the count leaves the map at zero, so the map holds only blobs being uploaded now.</summary>
    private void EndUpload(string digest)
    {
        if (_uploads.AddOrUpdate(digest, 0, (_, n) => n - 1) <= 0)
        {
            _uploads.TryRemove(new KeyValuePair<string, int>(digest, 0));
        }
    }

    private static (ContentAccess Access, string Key)? ParsePurpose(string purpose) => purpose switch
    {
        "authorised" => (ContentAccess.Authorised, ""),
        "public" => (ContentAccess.Public, ""),
        _ when purpose.StartsWith("key ", StringComparison.Ordinal) && purpose.Length > 4 => (ContentAccess.Keyed, Uri.UnescapeDataString(purpose[4..])),
        _ => null,
    };

    /// <summary>Live nodes and how many blobs each holds, read from Redis (for `hoard status`).</summary>
    public static async Task<List<(string Id, string Url, int Blobs)>> StatusAsync(IDatabase db, IServer server)
    {
        var holdings = new Dictionary<string, int>(StringComparer.Ordinal);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await foreach (var key in server.KeysAsync(db.Database, pattern: "hoard:holders:*"))
        {
            foreach (var holder in await db.SortedSetRangeByScoreAsync(key, now, double.PositiveInfinity))
            {
                holdings[holder.ToString()] = holdings.GetValueOrDefault(holder.ToString()) + 1;
            }
        }
        var nodes = new List<(string, string, int)>();
        foreach (var id in (await db.SetMembersAsync("hoard:nodes")).Select(i => i.ToString()).Where(IsNodeId))
        {
            var url = (await db.StringGetAsync($"hoard:node:{id}")).ToString();
            if (!string.IsNullOrEmpty(url))
            {
                nodes.Add((id, url, holdings.GetValueOrDefault(id)));
            }
        }
        return nodes;
    }
}
