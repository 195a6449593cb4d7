using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Hoard.Core.Cluster;

/// <summary>
/// Cluster mode, with one Redis as the only shared part. Redis knows which nodes are alive (heartbeat keys that
/// expire), which node holds which blob and who is downloading it (records that expire unless refreshed), and who
/// may go upstream for a digest (an owner-checked lock, extended while the download runs): see
/// <see cref="ClusterRecords"/>. Blobs move between nodes over plain HTTP on the normal port, under /_hoard/peer/,
/// signed with the cluster secret (<see cref="PeerSignature"/>); every node verifies every digest itself, and a node
/// asks a peer only for what its own client was allowed (ClusterNode.Serving.cs). If Redis is unreachable, each node
/// works alone.
/// </summary>
public sealed partial class ClusterNode : IClusterPeers, IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan NodeTtl = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan LockTtl = TimeSpan.FromSeconds(15);
    private readonly HoardOptions _options;
    private readonly FetchEngine _engine;
    private readonly ArtifactResponder _responder;
    private readonly HoardMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly HttpClient _peers;
    private readonly PeerSignature _signature;
    private readonly ClusterRecords _records;
    private readonly ConcurrentDictionary<string, int> _uploads = new(StringComparer.Ordinal);
    /// <summary>Download locks this node holds, by digest, with the download that holds each (its request).</summary>
    private readonly ConcurrentDictionary<string, (ITimer Timer, ArtifactRequest Owner)> _locks = new(StringComparer.Ordinal);
    private ConnectionMultiplexer? _redis;
    private ITimer? _heartbeat;
    private int _redisDown;
    private int _announced;
    private long _announcedAtMs;

    public ClusterNode(HoardOptions options, FetchEngine engine, ArtifactResponder responder, HoardMetrics metrics, TimeProvider time, ILogger<ClusterNode> logger)
    {
        _options = options;
        _engine = engine;
        _responder = responder;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _signature = new PeerSignature(Encoding.UTF8.GetBytes(options.ClusterSecret!), time);
        _records = new ClusterRecords(options.ClusterRecordTtl, LockTtl, time);
        _peers = new HttpClient(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(2), AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        Id = LoadOrCreateId(options.DataDir);
        engine.Cluster = this;
    }

    /// <summary>This node's identity; kept in the data dir, so it survives restarts.</summary>
    public string Id { get; }

    /// <summary>
    /// What a node id read from Redis or a peer request must look like before it is used in a key, a header, a
    /// metric label or a log line: anything else (of any length) is ignored.
    /// </summary>
    public static bool IsNodeId(string? id) => id is { Length: > 0 and <= 64 } && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    private static string LoadOrCreateId(string dataDir)
    {
        var path = Path.Combine(dataDir, "node-id");
        if (File.Exists(path) && File.ReadAllText(path).Trim() is { Length: 32 } existing && IsNodeId(existing))
        {
            return existing;
        }
        var id = Guid.NewGuid().ToString("N");
        File.WriteAllText(path, id);
        return id;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var config = RedisUrl.Parse(_options.ClusterRedis!);
        config.ConnectTimeout = 2000;
        config.SyncTimeout = 2000;
        config.AsyncTimeout = 2000;
        config.BacklogPolicy = BacklogPolicy.FailFast;
        config.ReconnectRetryPolicy = new LinearRetry(1000);
        _redis = await ConnectionMultiplexer.ConnectAsync(config);
        _heartbeat = _time.CreateTimer(_ => _ = BeatAsync(), null, TimeSpan.Zero, Heartbeat);
        LogJoined(_logger, Id, _options.Advertise!, RedisUrl.Redact(_options.ClusterRedis!));
    }

    private async Task BeatAsync()
    {
        await Redis(async db =>
        {
            await db.StringSetAsync($"hoard:node:{Id}", _options.Advertise, NodeTtl);
            await db.SetAddAsync("hoard:nodes", Id);
            var live = 0;
            foreach (var id in await db.SetMembersAsync("hoard:nodes"))
            {
                if (IsNodeId(id.ToString()) && await db.KeyExistsAsync($"hoard:node:{id}"))
                {
                    live++;
                }
                else
                {
                    await db.SetRemoveAsync("hoard:nodes", id); // gone for good, or back under this id at its next beat
                }
            }
            _metrics.ClusterSize = live;
        });
        // Announce the store at start, when Redis comes back, and before this node's holder records expire.
        var due = _time.GetUtcNow().ToUnixTimeMilliseconds() - Interlocked.Read(ref _announcedAtMs) > _records.RecordTtl.TotalMilliseconds / 3;
        if (Volatile.Read(ref _redisDown) == 0 && due && Interlocked.Exchange(ref _announced, 1) == 0)
        {
            await AnnounceHeldAsync();
        }
    }

    /// <summary>
    /// Tells Redis every blob this node holds: at start (the store outlives the process), whenever Redis comes back
    /// (it may have lost everything) and every third of the record lifetime (records expire unless refreshed).
    /// Commits and evictions in between are announced one by one.
    /// </summary>
    private async Task AnnounceHeldAsync()
    {
        var blobs = _engine.Index.Blobs.Select(b => b.Digest).ToList();
        var done = await Redis(async db =>
        {
            foreach (var chunk in blobs.Chunk(512))
            {
                await Task.WhenAll(chunk.Select(d => _records.AddHolderAsync(db, d, Id)));
            }
        });
        if (done)
        {
            Interlocked.Exchange(ref _announcedAtMs, _time.GetUtcNow().ToUnixTimeMilliseconds());
            LogAnnounced(_logger, blobs.Count);
        }
        Volatile.Write(ref _announced, 0); // due again in a third of the record lifetime (or at once if Redis went away)
    }

    /// <summary>Runs a Redis call that answers nothing; true when it ran.</summary>
    private Task<bool> Redis(Func<IDatabase, Task> call) => Redis(async db =>
    {
        await call(db);
        return true;
    });

    /// <summary>Runs a Redis call; on failure logs once (until Redis is back) and answers the fallback.</summary>
    private async Task<T?> Redis<T>(Func<IDatabase, Task<T>> call)
    {
        if (_redis is null)
        {
            return default;
        }
        try
        {
            var result = await call(_redis.GetDatabase());
            if (Interlocked.Exchange(ref _redisDown, 0) == 1)
            {
                LogRedisBack(_logger);
            }
            return result;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            if (Interlocked.Exchange(ref _redisDown, 1) == 0)
            {
                LogRedisDown(_logger, e.Message);
            }
            Interlocked.Exchange(ref _announcedAtMs, 0);
            return default;
        }
    }

    public async Task<HttpResponseMessage?> TryPeersAsync(ArtifactRequest request, CancellationToken ct)
    {
        var digest = request.ExpectedSha256!;
        if (_locks.ContainsKey(digest))
        {
            // This node is downloading the digest already, for requests that may not share this one's bytes (another
            // access class): this one goes upstream too, without waiting on a lock that is its own node's.
            return null;
        }
        for (var attempt = 0; attempt < 40; attempt++)
        {
            // 1. Nodes that hold it, then nodes that are streaming it themselves, then the lock holder (a tree, not
            //    a star: a node at its fan-out limit answers 503 and the next one is asked).
            if (await CandidatesAsync(digest) is not { } candidates)
            {
                return null; // alone: upstream
            }
            if (await FirstAnswerAsync(candidates, request, 0, null, ct) is { } response)
            {
                await Redis(db => _records.AddFetcherAsync(db, digest, Id));
                return response;
            }
            // 2. Nobody has it: take the cluster-wide lock and go upstream; if another node holds the lock, it will
            //    be asked on the next round (and released here if it turns out to be gone).
            if (await Redis(db => _records.TakeLockAsync(db, digest, Id)))
            {
                await Redis(db => _records.AddFetcherAsync(db, digest, Id));
                var timer = _time.CreateTimer(_ => _ = ExtendLockAsync(digest), null, LockTtl / 3, LockTtl / 3);
                if (!_locks.TryAdd(digest, (timer, request)))
                {
                    timer.Dispose();
                }
                return null;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(150), _time, ct);
        }
        return null;
    }

    /// <summary>Keeps the lock (and this node's fetcher record) while the download runs; stops if the lock is no longer ours.</summary>
    private async Task ExtendLockAsync(string digest)
    {
        var extended = await Redis(async db =>
        {
            await _records.AddFetcherAsync(db, digest, Id);
            return await _records.ExtendLockAsync(db, digest, Id);
        });
        if (!extended && Volatile.Read(ref _redisDown) == 0 && _locks.TryRemove(digest, out var held))
        {
            held.Timer.Dispose();
            LogLockLost(_logger, digest);
        }
    }

    public async Task<HttpResponseMessage?> ResumeAsync(ArtifactRequest request, long offset, Uri? failed, CancellationToken ct)
    {
        var response = await FirstAnswerAsync(await CandidatesAsync(request.ExpectedSha256!) ?? [], request, offset, failed, ct);
        if (response is not null)
        {
            _metrics.PeerResumed();
        }
        return response;
    }

    /// <summary>Asks the candidates in turn; the first that streams the blob wins, the unreachable ones are forgotten.</summary>
    private async Task<HttpResponseMessage?> FirstAnswerAsync(List<string> candidates, ArtifactRequest request, long offset, Uri? skip, CancellationToken ct)
    {
        foreach (var node in candidates)
        {
            var (response, dead) = await FromPeerAsync(node, request, offset, skip, ct);
            if (response is not null)
            {
                return response;
            }
            if (dead)
            {
                await ForgetAsync(node, request.ExpectedSha256!);
            }
        }
        return null;
    }

    /// <summary>Other nodes that hold it, fetch it or hold its lock, in that order; null when Redis is unreachable.</summary>
    private async Task<List<string>?> CandidatesAsync(string digest)
    {
        var holders = await Redis(db => _records.LiveAsync(db, ClusterRecords.Holders(digest))) ?? [];
        var fetching = await Redis(db => _records.LiveAsync(db, ClusterRecords.Fetchers(digest))) ?? [];
        var locker = await Redis(db => _records.LockOwnerAsync(db, digest));
        if (_redis is null || Volatile.Read(ref _redisDown) == 1)
        {
            return null;
        }
        return [.. holders.Concat(fetching).Append(locker).OfType<string>().Where(n => n != Id).Distinct()];
    }

    /// <summary>
    /// A node that cannot be reached (or whose heartbeat expired) serves nothing to anyone: drop it from the digest's
    /// holders and fetchers (a node that comes back announces its store again) and, if the digest's lock is still that
    /// node's, release it, so a live node takes over now instead of after the lock expires.
    /// </summary>
    private async Task ForgetAsync(string node, string digest)
    {
        await Redis(db => _records.RemoveFetcherAsync(db, digest, node));
        await Redis(db => _records.RemoveHolderAsync(db, digest, node));
        if (await Redis(db => _records.ReleaseLockAsync(db, digest, node)))
        {
            _metrics.LockTakenOver();
            LogLockReleased(_logger, node, digest);
        }
    }

    /// <summary>What a peer request is for, as signed and sent in <see cref="PeerSignature.ForHeader"/>.</summary>
    internal static string Purpose(ArtifactRequest request) => request.Access switch
    {
        ContentAccess.Authorised => "authorised",
        ContentAccess.Public => "public",
        _ => "key " + Uri.EscapeDataString(request.Key),
    };

    /// <summary>Asks one node for the blob from <paramref name="offset"/>. Dead: it could not be reached at all.</summary>
    private async Task<(HttpResponseMessage? Response, bool Dead)> FromPeerAsync(string node, ArtifactRequest artifact, long offset, Uri? skip, CancellationToken ct)
    {
        var url = (await Redis(db => db.StringGetAsync($"hoard:node:{node}"))).ToString();
        if (string.IsNullOrEmpty(url) || !Uri.TryCreate(url + "/", UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
        {
            return (null, true); // heartbeat expired (or nonsense in Redis): the node is gone
        }
        var path = "/_hoard/peer/blob/" + artifact.ExpectedSha256;
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(baseUrl, path));
        if (skip is not null && request.RequestUri!.Authority == skip.Authority)
        {
            return (null, false); // the node whose body just broke off
        }
        string? range = null;
        if (offset > 0)
        {
            request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(offset, null);
            range = request.Headers.Range.ToString();
        }
        var purpose = Purpose(artifact);
        request.Headers.TryAddWithoutValidation(PeerSignature.ForHeader, purpose);
        request.Headers.TryAddWithoutValidation(PeerSignature.Header, _signature.Sign("GET", path, range, purpose, Id, node));
        try
        {
            var response = await _peers.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            var ok = offset == 0
                ? response.StatusCode == HttpStatusCode.OK
                : response.StatusCode == HttpStatusCode.PartialContent && response.Content.Headers.ContentRange?.From == offset;
            if (ok)
            {
                _metrics.PeerFetch(node, "ok");
                if (response.Content.Headers.ContentLength is { } bytes)
                {
                    _metrics.FromPeers(bytes);
                }
                return (response, false);
            }
            _metrics.PeerFetch(node, ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture));
            response.Dispose();
            return (null, false);
        }
        catch (HttpRequestException e)
        {
            _metrics.PeerFetch(node, "error");
            // Refused or unreachable: the process (or its address) is gone; other failures may be passing.
            return (null, e.HttpRequestError == HttpRequestError.ConnectionError);
        }
    }

    public void Finished(ArtifactRequest request, bool committed)
    {
        var digest = request.ExpectedSha256!;
        _ = Redis(db => _records.RemoveFetcherAsync(db, digest, Id));
        // Only the download that took the lock releases it (another download of the digest on this node may end first).
        if (_locks.TryGetValue(digest, out var held) && ReferenceEquals(held.Owner, request) && _locks.TryRemove(new KeyValuePair<string, (ITimer, ArtifactRequest)>(digest, held)))
        {
            held.Timer.Dispose();
            _ = Redis(db => _records.ReleaseLockAsync(db, digest, Id));
        }
        if (committed)
        {
            _ = Redis(db => _records.AddHolderAsync(db, digest, Id));
        }
    }

    public void Evicted(string digest) => _ = Redis(db => _records.RemoveHolderAsync(db, digest, Id));

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        _heartbeat?.Dispose();
        foreach (var (timer, _) in _locks.Values)
        {
            timer.Dispose();
        }
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }
        _peers.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster: node {Id} at {Advertise} joined through {Redis}")]
    private static partial void LogJoined(ILogger logger, string id, string advertise, string redis);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: Redis unreachable, working alone until it is back: {Error}")]
    private static partial void LogRedisDown(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster: Redis is back")]
    private static partial void LogRedisBack(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: node {Node} cannot be reached; released its download lock for {Digest} so this node takes over")]
    private static partial void LogLockReleased(ILogger logger, string node, string digest);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: the download lock for {Digest} is no longer this node's (taken over); the download goes on, unlocked")]
    private static partial void LogLockLost(ILogger logger, string digest);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Cluster: announced {Count} blob(s) held here")]
    private static partial void LogAnnounced(ILogger logger, int count);
}
