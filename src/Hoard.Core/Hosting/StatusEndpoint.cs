using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Hoard.Core.Cluster;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Hoard.Core.Hosting;

/// <summary>
/// GET /_hoard/status: this node's state as JSON, for `hoard status --url` (and the dashboard to come): version and
/// uptime, store fill, hit ratios and bytes saved since start, downloads in flight, each upstream's requests and
/// failures, cluster size and (in cluster mode) every node with this node's traffic with it, the downloads running
/// now, recent problems; with ?artifacts=1 and the admin token also the most requested, largest and most recently used
/// artifacts by name (the dashboard asks for them when opened as /#token=...).
/// </summary>
public static class StatusEndpoint
{
    public const string Path = "/_hoard/status";

    /// <summary>Outcomes that answered without a download of their own from upstream.</summary>
    private static readonly HashSet<string> Served = new(StringComparer.Ordinal) { "hit", "revalidated", "stale", "peer", "coalesced" };

    /// <summary>Outcomes that are not cacheable requests at all (discovery always asks upstream, bypass is by design).</summary>
    private static readonly HashSet<string> NotCacheable = new(StringComparer.Ordinal) { "discovery", "bypass" };

    /// <param name="cluster">This node in cluster mode, else null.</param>
    public static void Map(IEndpointRouteBuilder app, HoardOptions options, FetchEngine engine, HoardMetrics metrics, AdminAuth admin, ClusterNode? cluster)
    {
        app.MapGet(Path, async (HttpContext ctx) =>
        {
            ctx.Response.Headers.CacheControl = "no-store";
            // Artifact names (keys name packages, images and repositories, private ones too) only with the admin token.
            var withArtifacts = ctx.Request.Query["artifacts"] == "1" && admin.Presents(ctx);
            var nodes = cluster is null ? null : await cluster.NodesAsync();
            return Results.Json(Describe(options, engine, metrics, withArtifacts, nodes), StatusJson.Default.NodeStatus);
        });
    }

    /// <param name="withArtifacts">Also the most requested, largest and most recently used artifacts by name.</param>
    /// <param name="cluster">The cluster's nodes and this node's traffic with each (cluster mode), else null.</param>
    public static NodeStatus Describe(HoardOptions options, FetchEngine engine, HoardMetrics metrics, bool withArtifacts = false, ClusterStatus? cluster = null)
    {
        var stats = engine.Stats;
        var mirrors = metrics.GitMirrorGauge?.Invoke() ?? (0, 0);
        var requests = metrics.RequestCounts();
        long cacheable = 0, answered = 0;
        foreach (var (outcome, n) in requests.Values.SelectMany(byOutcome => byOutcome))
        {
            if (!NotCacheable.Contains(outcome))
            {
                cacheable += n;
                answered += Served.Contains(outcome) ? n : 0;
            }
        }
        var (store, upstream, coalesced, peer) = metrics.ServedBytes();
        var served = store + upstream + coalesced + peer;
        var upstreams = metrics.UpstreamTotals();
        var fetched = upstreams.Sum(u => u.Bytes);
        using var self = Process.GetCurrentProcess();
        var pins = engine.Pins();
        return new NodeStatus(
            BuildVersion.Version,
            BuildVersion.Commit,
            (long)(DateTime.Now - self.StartTime).TotalSeconds,
            new StoreStatus(stats.Bytes + mirrors.Bytes, options.MaxSizeBytes, stats.Blobs, stats.Keys, mirrors.Bytes, mirrors.Mirrors),
            requests,
            cacheable == 0 ? null : (double)answered / cacheable,
            served == 0 ? null : (double)(store + coalesced + peer) / served,
            new BytesStatus(store, upstream, coalesced, peer, fetched, store + coalesced + peer),
            engine.InFlight,
            upstreams.Select(u => new UpstreamStatus(u.Upstream, u.Protocol, u.Requests, u.Failed, u.Bytes)).ToList(),
            metrics.ClusterSize > 0 ? metrics.ClusterSize : null,
            cluster,
            engine.Downloads(),
            withArtifacts ? engine.TopArtifacts(10) : null,
            metrics.RecentProblems().Select(p => new ProblemStatus(p.At, p.What)).ToList(),
            new PinsStatus(pins.Count, engine.PinnedBytes, engine.MaxPinnedBytes, withArtifacts ? pins : null));
    }
}

public sealed record NodeStatus(
    string Version, string? Commit, long UptimeSeconds, StoreStatus Store, Dictionary<string, Dictionary<string, long>> Requests,
    double? HitRatio, double? ByteHitRatio, BytesStatus Bytes, int DownloadsInFlight, List<UpstreamStatus> Upstreams, int? ClusterNodes,
    ClusterStatus? Cluster, List<DownloadProgress> Downloads, StoredArtifacts? Artifacts, List<ProblemStatus> Problems, PinsStatus Pins);

/// <summary>Pins: how many, the bytes they keep (counted once however many pins share a blob), the most they may keep; names with the admin token.</summary>
public sealed record PinsStatus(int Count, long Bytes, long MaxBytes, List<PinInfo>? Pins);

public sealed record ProblemStatus(DateTimeOffset At, string What);

public sealed record StoreStatus(long Bytes, long MaxBytes, int Blobs, int Keys, long GitMirrorBytes, int GitMirrors);

/// <summary>
/// Bytes served by source and bytes fetched from upstreams. Saved: bytes a client got without an upstream transfer
/// of its own (from the store, a download another client started, or a peer). Served minus fetched says the same once
/// no download is running, but counts a download in flight against the savings until its clients have it.
/// </summary>
public sealed record BytesStatus(long ServedFromStore, long ServedFromUpstream, long ServedCoalesced, long ServedFromPeers, long FetchedFromUpstream, long Saved);

/// <summary>One upstream: a name and its protocol, since the same name may be configured for two protocols.</summary>
public sealed record UpstreamStatus(string Name, string Protocol, long Requests, long Failed, long Bytes);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(NodeStatus))]
public sealed partial class StatusJson : JsonSerializerContext;
