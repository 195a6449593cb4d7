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
/// may go upstream for a digest, or for a key whose digest is unknown until downloaded (an owner-checked lock,
/// extended while the download runs), and which digest such a key turned out to be: see <see cref="ClusterRecords"/>
/// and ClusterNode.Peers.cs. Blobs move between nodes over plain HTTP on the normal port, under /_hoard/peer/,
/// signed with the cluster secret (<see cref="PeerSignature"/>); every node verifies every digest it knows itself,
/// and a node asks a peer only for what its own client was allowed (ClusterNode.Serving.cs). If Redis is
/// unreachable, each node works alone.
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
    /// <summary>Download locks this node holds, by subject (digest or key), with the download that holds each (its request).</summary>
    private readonly ConcurrentDictionary<string, (ITimer Timer, ArtifactRequest Owner)> _locks = new(StringComparer.Ordinal);
    /// <summary>
    /// Keys known only by their key that this node committed, with their digest: re-announced with the store, so a
    /// later node finds the digest (and this holder) while the entry is here. Kept in memory only: after a restart
    /// the published digests run out, and a key asked for then is downloaded once more, still once for the cluster.
    /// </summary>
    private readonly ConcurrentDictionary<string, string> _keyDigests = new(StringComparer.Ordinal);
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
            await PublishInfoAsync(db);
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
    /// Tells Redis every blob this node holds, and the digests of the keys it committed (see <see cref="_keyDigests"/>):
    /// at start (the store outlives the process), whenever Redis comes back (it may have lost everything) and every
    /// third of the record lifetime (records expire unless refreshed).
    /// Commits and evictions in between are announced one by one.
    /// </summary>
    private async Task AnnounceHeldAsync()
    {
        var blobs = _engine.StoredDigests().Concat(HeldMirrorSubjects()).ToList();
        var keys = new List<(string KeyId, string Digest)>();
        foreach (var (key, digest) in _keyDigests)
        {
            if (_engine.TryGetStored(key, out var stored) && stored.Digest == digest)
            {
                keys.Add((ClusterRecords.KeyId(key), digest));
            }
            else
            {
                _keyDigests.TryRemove(new KeyValuePair<string, string>(key, digest)); // evicted or replaced
            }
        }
        var done = await Redis(async db =>
        {
            foreach (var chunk in blobs.Chunk(512))
            {
                await Task.WhenAll(chunk.Select(d => _records.AddHolderAsync(db, d, Id)));
            }
            foreach (var chunk in keys.Chunk(512))
            {
                await Task.WhenAll(chunk.Select(k => _records.PublishKeyDigestAsync(db, k.KeyId, k.Digest)));
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: node {Node} cannot be reached; released its download lock for {Subject} so this node takes over")]
    private static partial void LogLockReleased(ILogger logger, string node, string subject);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cluster: the download lock for {Subject} is no longer this node's (taken over); the download goes on, unlocked")]
    private static partial void LogLockLost(ILogger logger, string subject);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Cluster: announced {Count} blob(s) held here")]
    private static partial void LogAnnounced(ILogger logger, int count);
}
