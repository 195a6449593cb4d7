using System.Collections.Concurrent;
using StackExchange.Redis;

namespace Hoard.Core.Cluster;

/// <summary>
/// The cluster as the dashboard and `hoard status --url` show it: every node seen through Redis lately, alive while
/// its heartbeat key lives and stale after, with the store size it publishes at each heartbeat, and this node's
/// traffic with it (bytes served to it, bytes fetched from it).
///
/// Each heartbeat writes <c>hoard:nodeinfo:{id}</c> (a hash: url, beat time, store bytes and blobs) and scores the id
/// in <c>hoard:seen</c> by its beat time; both outlive the heartbeat by <see cref="StaleListed"/>, so a node that stopped
/// is still listed, as stale, for a while. Nodes of versions that write neither are found in <c>hoard:nodes</c>.
/// The beat times are each writer's clock: they say how old a heartbeat is and when to forget a node, never whether it
/// is alive (its heartbeat key's expiry on Redis's clock says that), so clocks a few seconds apart change nothing.
/// </summary>
public sealed partial class ClusterNode
{
    /// <summary>How long a node that stopped beating is still listed (as stale) before it is forgotten.</summary>
    private static readonly TimeSpan StaleListed = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Nodes listed, and peers counted, at most: far beyond any real cluster, a bound on what a Redis full of ids
    /// (or a churn of nodes with new ids) can make this node keep.
    /// </summary>
    private const int MaxListed = 256;

    /// <summary>The dashboard polls every few seconds, perhaps from several browsers: Redis is read once per this.</summary>
    private static readonly TimeSpan StatusFresh = TimeSpan.FromSeconds(2);

    private const string SeenKey = "hoard:seen";

    private static RedisKey InfoKey(string id) => "hoard:nodeinfo:" + id;

    /// <summary>Bytes this node served to and fetched from each peer, by node id: peers seen in Redis lately (pruned at each status read).</summary>
    private readonly ConcurrentDictionary<string, PeerTraffic> _traffic = new(StringComparer.Ordinal);

    private sealed class PeerTraffic
    {
        public long Served;
        public long Fetched;
    }

    /// <summary>The last status read and when it started: one reference, so a reader never sees half of an update.</summary>
    private sealed record StatusRead(long AtMs, Task<ClusterStatus> Status);

    private StatusRead? _statusRead;

    /// <summary>The last node list read from Redis, shown (as of unknown state) while Redis cannot be read.</summary>
    private List<ClusterNodeStatus> _lastListed = [];

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Counts bytes exchanged with <paramref name="node"/>; a node beyond <see cref="MaxListed"/> peers is not counted.</summary>
    private void CountTraffic(string node, long served, long fetched)
    {
        if (node == Id || !IsNodeId(node))
        {
            return;
        }
        if (!_traffic.TryGetValue(node, out var traffic))
        {
            if (_traffic.Count >= MaxListed)
            {
                return;
            }
            traffic = _traffic.GetOrAdd(node, static _ => new PeerTraffic());
        }
        Interlocked.Add(ref traffic.Served, served);
        Interlocked.Add(ref traffic.Fetched, fetched);
    }

    /// <summary>This node's entry in the list, written at each heartbeat.</summary>
    private async Task PublishInfoAsync(IDatabase db)
    {
        var now = NowMs;
        var stats = _engine.Stats;
        var mirrors = _metrics.GitMirrorGauge?.Invoke() ?? (0, 0);
        await db.HashSetAsync(InfoKey(Id),
        [
            new("url", _options.Advertise), new("beat", now), new("bytes", stats.Bytes + mirrors.Bytes), new("blobs", stats.Blobs),
        ]);
        await db.KeyExpireAsync(InfoKey(Id), StaleListed);
        await db.SortedSetAddAsync(SeenKey, Id, now);
        await db.SortedSetRemoveRangeByScoreAsync(SeenKey, double.NegativeInfinity, now - StaleListed.TotalMilliseconds);
    }

    /// <summary>The cluster's nodes and this node's traffic with each, read from Redis at most every <see cref="StatusFresh"/>.</summary>
    public Task<ClusterStatus> NodesAsync()
    {
        var now = NowMs;
        if (Volatile.Read(ref _statusRead) is { } read && now - read.AtMs < StatusFresh.TotalMilliseconds)
        {
            return read.Status;
        }
        // Two callers at the same moment may both read: harmless, and no lock for a poll.
        var status = ReadStatusAsync(now);
        Volatile.Write(ref _statusRead, new StatusRead(now, status));
        return status;
    }

    private async Task<ClusterStatus> ReadStatusAsync(long now)
    {
        var listed = await Redis(async db =>
        {
            var seen = await db.SortedSetRangeByScoreAsync(SeenKey, now - StaleListed.TotalMilliseconds, double.PositiveInfinity, Exclude.None, Order.Descending, 0, MaxListed);
            var members = await db.SetMembersAsync("hoard:nodes");
            var ids = seen.Concat(members).Select(v => v.ToString()).Where(IsNodeId).Distinct(StringComparer.Ordinal).Take(MaxListed).ToList();
            var beats = ids.Select(id => db.StringGetAsync($"hoard:node:{id}")).ToList();
            var infos = ids.Select(id => db.HashGetAsync(InfoKey(id), ["url", "beat", "bytes", "blobs"])).ToList();
            await Task.WhenAll(beats.Concat<Task>(infos));
            return ids.Select((id, i) => Listed(id, beats[i].Result, infos[i].Result, now)).ToList();
        });
        if (listed is null)
        {
            // Redis cannot be read: the nodes last seen, their state unknown, with this node's traffic as it is now.
            return new ClusterStatus(Id, false, [.. Volatile.Read(ref _lastListed).Select(n => WithTraffic(n with { State = "unknown", HeartbeatAgeSeconds = null }))]);
        }
        // Peers no longer listed are forgotten (the node list bounds the traffic table).
        var ids = listed.Select(n => n.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var gone in _traffic.Keys.Where(id => !ids.Contains(id)))
        {
            _traffic.TryRemove(gone, out _);
        }
        listed = [.. listed.OrderByDescending(n => n.Self).ThenBy(n => n.State, StringComparer.Ordinal).ThenBy(n => n.Url, StringComparer.Ordinal)];
        Volatile.Write(ref _lastListed, listed);
        return new ClusterStatus(Id, true, [.. listed.Select(WithTraffic)]);
    }

    /// <summary>
    /// One node's entry. Alive: its heartbeat key still lives (it expires on Redis's clock, so clocks that differ do not
    /// matter); the age is from the time it wrote with its last beat.
    /// </summary>
    private ClusterNodeStatus Listed(string id, RedisValue beat, RedisValue[] info, long now)
    {
        var alive = !beat.IsNullOrEmpty;
        var url = alive ? beat.ToString() : info[0].IsNullOrEmpty ? null : info[0].ToString();
        double? age = long.TryParse(info[1].ToString(), out var at) ? Math.Max(0, now - at) / 1000.0 : null;
        long? bytes = long.TryParse(info[2].ToString(), out var b) ? b : null;
        int? blobs = int.TryParse(info[3].ToString(), out var n) ? n : null;
        return new ClusterNodeStatus(id, url, id == Id, alive ? "alive" : "stale", age, bytes, blobs, 0, 0);
    }

    private ClusterNodeStatus WithTraffic(ClusterNodeStatus node) => _traffic.TryGetValue(node.Id, out var t)
        ? node with { ServedToBytes = Interlocked.Read(ref t.Served), FetchedFromBytes = Interlocked.Read(ref t.Fetched) }
        : node;
}

/// <summary>The cluster as this node sees it (/_hoard/status): its own id, whether Redis answered, every node listed.</summary>
public sealed record ClusterStatus(string Self, bool RedisReachable, List<ClusterNodeStatus> Nodes);

/// <summary>
/// One node: its id and address; this node or another; alive, stale (heartbeat expired) or unknown (Redis unreachable);
/// seconds since its last heartbeat; its store (bytes with git mirrors, and blobs) as of that beat; and what this node
/// served to it and fetched from it since start.
/// </summary>
public sealed record ClusterNodeStatus(
    string Id, string? Url, bool Self, string State, double? HeartbeatAgeSeconds, long? StoreBytes, int? StoreBlobs, long ServedToBytes, long FetchedFromBytes);
