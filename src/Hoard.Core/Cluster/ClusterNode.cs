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
/// expire), which node holds which blob, and who is downloading a digest (a lock taken with SET NX, refreshed while
/// the download runs). Blobs move between nodes over plain HTTP on the normal port, under /_hoard/peer/, signed with
/// the cluster secret; every node verifies every digest itself. If Redis is unreachable, each node works alone.
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
    private readonly byte[] _secret;
    private readonly ConcurrentDictionary<string, int> _uploads = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ITimer> _locks = new(StringComparer.Ordinal);
    private ConnectionMultiplexer? _redis;
    private ITimer? _heartbeat;
    private int _redisDown;
    private int _announced;

    public ClusterNode(HoardOptions options, FetchEngine engine, ArtifactResponder responder, HoardMetrics metrics, TimeProvider time, ILogger<ClusterNode> logger)
    {
        _options = options;
        _engine = engine;
        _responder = responder;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _secret = Encoding.UTF8.GetBytes(options.ClusterSecret!);
        _peers = new HttpClient(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(2), AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        Id = LoadOrCreateId(options.DataDir);
        engine.Cluster = this;
    }

    /// <summary>This node's identity; kept in the data dir, so it survives restarts.</summary>
    public string Id { get; }

    private static string LoadOrCreateId(string dataDir)
    {
        var path = Path.Combine(dataDir, "node-id");
        if (File.Exists(path) && File.ReadAllText(path).Trim() is { Length: 32 } existing)
        {
            return existing;
        }
        var id = Guid.NewGuid().ToString("N");
        File.WriteAllText(path, id);
        return id;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var uri = new Uri(_options.ClusterRedis!);
        var config = new ConfigurationOptions
        {
            AbortOnConnectFail = false,
            ConnectTimeout = 2000,
            SyncTimeout = 2000,
            AsyncTimeout = 2000,
            BacklogPolicy = BacklogPolicy.FailFast,
            ReconnectRetryPolicy = new LinearRetry(1000),
        };
        config.EndPoints.Add(uri.Host, uri.Port > 0 ? uri.Port : 6379);
        _redis = await ConnectionMultiplexer.ConnectAsync(config);
        _heartbeat = _time.CreateTimer(_ => _ = BeatAsync(), null, TimeSpan.Zero, Heartbeat);
        LogJoined(_logger, Id, _options.Advertise!, _options.ClusterRedis!);
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
                if (await db.KeyExistsAsync($"hoard:node:{id}"))
                {
                    live++;
                }
                else
                {
                    await db.SetRemoveAsync("hoard:nodes", id); // gone for good, or back under this id at its next beat
                }
            }
            _metrics.ClusterSize = live;
            return true;
        });
        if (Volatile.Read(ref _redisDown) == 0 && Interlocked.Exchange(ref _announced, 1) == 0)
        {
            await AnnounceHeldAsync();
        }
    }

    /// <summary>
    /// Tells Redis every blob this node holds: at start (the store outlives the process) and whenever Redis comes
    /// back (it may have lost everything). Commits and evictions after that are announced one by one.
    /// </summary>
    private async Task AnnounceHeldAsync()
    {
        var blobs = _engine.Index.Blobs.Select(b => b.Digest).ToList();
        var done = await Redis(async db =>
        {
            foreach (var chunk in blobs.Chunk(512))
            {
                await Task.WhenAll(chunk.Select(d => db.SetAddAsync($"hoard:blob:{d}", Id)));
            }
            return true;
        });
        if (done)
        {
            LogAnnounced(_logger, blobs.Count);
        }
        else
        {
            Volatile.Write(ref _announced, 0); // Redis went away meanwhile: again when it is back
        }
    }

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
            Volatile.Write(ref _announced, 0);
            return default;
        }
    }

    public async Task<HttpResponseMessage?> TryPeersAsync(string digest, CancellationToken ct)
    {
        for (var attempt = 0; attempt < 40; attempt++)
        {
            // 1. Nodes that hold it, then nodes that are streaming it themselves, then the lock holder (a tree, not
            //    a star: a node at its fan-out limit answers 503 and the next one is asked).
            if (await CandidatesAsync(digest) is not { } candidates)
            {
                return null; // alone: upstream
            }
            if (await FirstAnswerAsync(candidates, digest, 0, null, ct) is { } response)
            {
                await Redis(db => db.SetAddAsync($"hoard:fetching:{digest}", Id));
                return response;
            }
            // 2. Nobody has it: take the cluster-wide lock and go upstream; if another node holds the lock, it will
            //    be asked on the next round (and released here if it turns out to be gone).
            var taken = await Redis(db => db.StringSetAsync($"hoard:lock:{digest}", Id, LockTtl, When.NotExists));
            if (taken)
            {
                await Redis(db => db.SetAddAsync($"hoard:fetching:{digest}", Id));
                _locks[digest] = _time.CreateTimer(_ => _ = Redis(db => db.KeyExpireAsync($"hoard:lock:{digest}", LockTtl)), null, LockTtl / 3, LockTtl / 3);
                return null;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(150), _time, ct);
        }
        return null;
    }

    public async Task<HttpResponseMessage?> ResumeAsync(string digest, long offset, Uri? failed, CancellationToken ct)
    {
        var response = await FirstAnswerAsync(await CandidatesAsync(digest) ?? [], digest, offset, failed, ct);
        if (response is not null)
        {
            _metrics.PeerResumed();
        }
        return response;
    }

    /// <summary>Asks the candidates in turn; the first that streams the blob wins, the unreachable ones are forgotten.</summary>
    private async Task<HttpResponseMessage?> FirstAnswerAsync(List<string> candidates, string digest, long offset, Uri? skip, CancellationToken ct)
    {
        foreach (var node in candidates)
        {
            var (response, dead) = await FromPeerAsync(node, digest, offset, skip, ct);
            if (response is not null)
            {
                return response;
            }
            if (dead)
            {
                await ForgetAsync(node, digest);
            }
        }
        return null;
    }

    /// <summary>Other nodes that hold it, fetch it or hold its lock, in that order; null when Redis is unreachable.</summary>
    private async Task<List<string>?> CandidatesAsync(string digest)
    {
        var holders = await Redis(db => db.SetMembersAsync($"hoard:blob:{digest}")) ?? [];
        var fetching = await Redis(db => db.SetMembersAsync($"hoard:fetching:{digest}")) ?? [];
        var locker = await Redis(db => db.StringGetAsync($"hoard:lock:{digest}"));
        if (_redis is null || Volatile.Read(ref _redisDown) == 1)
        {
            return null;
        }
        return [.. holders.Concat(fetching).Append(locker).Where(n => !n.IsNullOrEmpty).Select(n => n.ToString()).Where(n => n != Id).Distinct()];
    }

    /// <summary>
    /// A node that cannot be reached (or whose heartbeat expired) serves nothing to anyone: drop it from the digest's
    /// holders and fetchers (a node that comes back announces its store again) and, if the digest's lock is still that
    /// node's, release it, so a live node takes over now instead of after the lock expires.
    /// </summary>
    private async Task ForgetAsync(string node, string digest)
    {
        await Redis(db => db.SetRemoveAsync($"hoard:fetching:{digest}", node));
        await Redis(db => db.SetRemoveAsync($"hoard:blob:{digest}", node));
        var released = await Redis(db => db.ScriptEvaluateAsync(ReleaseIfOwner, [(RedisKey)$"hoard:lock:{digest}"], [(RedisValue)node]));
        if (released is not null && (long)released == 1)
        {
            _metrics.LockTakenOver();
            LogLockReleased(_logger, node, digest);
        }
    }

    private const string ReleaseIfOwner = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

    /// <summary>Asks one node for the blob from <paramref name="offset"/>. Dead: it could not be reached at all.</summary>
    private async Task<(HttpResponseMessage? Response, bool Dead)> FromPeerAsync(string node, string digest, long offset, Uri? skip, CancellationToken ct)
    {
        var url = (await Redis(db => db.StringGetAsync($"hoard:node:{node}"))).ToString();
        if (string.IsNullOrEmpty(url))
        {
            return (null, true); // heartbeat expired: the node is gone
        }
        var path = "/_hoard/peer/blob/" + digest;
        using var request = new HttpRequestMessage(HttpMethod.Get, url + path);
        if (skip is not null && request.RequestUri!.Authority == skip.Authority)
        {
            return (null, false); // the node whose body just broke off
        }
        request.Headers.TryAddWithoutValidation("X-Hoard-Peer", Sign(path));
        if (offset > 0)
        {
            request.Headers.Range = new System.Net.Http.Headers.RangeHeaderValue(offset, null);
        }
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

    public void Finished(string digest, bool committed)
    {
        _ = Redis(db => db.SetRemoveAsync($"hoard:fetching:{digest}", Id));
        if (_locks.TryRemove(digest, out var timer))
        {
            timer.Dispose();
            _ = Redis(db => db.KeyDeleteAsync($"hoard:lock:{digest}"));
        }
        if (committed)
        {
            _ = Redis(db => db.SetAddAsync($"hoard:blob:{digest}", Id));
        }
    }

    public void Evicted(string digest) => _ = Redis(db => db.SetRemoveAsync($"hoard:blob:{digest}", Id));

    /// <summary>"{unix seconds}.{hex HMAC-SHA256(secret, seconds + path)}".</summary>
    private string Sign(string path)
    {
        var ts = _time.GetUtcNow().ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        return ts + "." + Convert.ToHexStringLower(HMACSHA256.HashData(_secret, Encoding.UTF8.GetBytes(ts + "\n" + path)));
    }

    private bool Verify(string? header, string path)
    {
        var dot = header?.IndexOf('.', StringComparison.Ordinal) ?? -1;
        if (dot <= 0 || !long.TryParse(header![..dot], out var ts) || Math.Abs(_time.GetUtcNow().ToUnixTimeSeconds() - ts) > 60)
        {
            return false;
        }
        var expected = HMACSHA256.HashData(_secret, Encoding.UTF8.GetBytes(header[..dot] + "\n" + path));
        return CryptographicOperations.FixedTimeEquals(expected, Convert.FromHexString(header[(dot + 1)..].PadRight(64, '0')[..64]));
    }

    public void Map(IEndpointRouteBuilder app) => app.MapGet("/_hoard/peer/blob/{digest}", ServePeerAsync);

    /// <summary>A peer asks for a blob: committed, or streamed from this node's download in progress. Never fetched for it.</summary>
    private async Task ServePeerAsync(HttpContext ctx, string digest)
    {
        if (!Verify(ctx.Request.Headers["X-Hoard-Peer"], ctx.Request.Path.Value ?? ""))
        {
            await HttpErrors.WriteAsync(ctx, 403, "cluster requests must be signed with the cluster secret");
            return;
        }
        if (!Storage.ContentStore.IsDigest(digest))
        {
            await HttpErrors.WriteAsync(ctx, 400, "not a sha256 digest");
            return;
        }
        if (_uploads.AddOrUpdate(digest, 1, (_, n) => n + 1) > _options.PeerFanout)
        {
            _uploads.AddOrUpdate(digest, 0, (_, n) => n - 1);
            await HttpErrors.WriteAsync(ctx, 503, "this node is serving this blob to enough peers already: ask another holder");
            return;
        }
        try
        {
            if (_engine.TryAcquireBlob(digest) is { } blob)
            {
                try
                {
                    await _responder.ServeBlobAsync(ctx, blob, null, ResponseShape.Immutable with { ContentType = blob.ContentType }, CacheOutcome.Hit);
                }
                finally
                {
                    blob.Release();
                }
                return;
            }
            if (_engine.InFlightFor("sha256:" + digest) is { } fill)
            {
                await _responder.ServeInFlightAsync(ctx, fill);
                return;
            }
            await HttpErrors.WriteAsync(ctx, 404, "this node neither holds nor is fetching that blob");
        }
        finally
        {
            _uploads.AddOrUpdate(digest, 0, (_, n) => n - 1);
        }
    }

    /// <summary>Live nodes and how many blobs each holds, read from Redis (for `hoard status`).</summary>
    public static async Task<List<(string Id, string Url, int Blobs)>> StatusAsync(IDatabase db, IServer server)
    {
        var holdings = new Dictionary<string, int>(StringComparer.Ordinal);
        await foreach (var key in server.KeysAsync(pattern: "hoard:blob:*"))
        {
            foreach (var holder in await db.SetMembersAsync(key))
            {
                holdings[holder.ToString()] = holdings.GetValueOrDefault(holder.ToString()) + 1;
            }
        }
        var nodes = new List<(string, string, int)>();
        foreach (var id in (await db.SetMembersAsync("hoard:nodes")).Select(i => i.ToString()))
        {
            var url = (await db.StringGetAsync($"hoard:node:{id}")).ToString();
            if (!string.IsNullOrEmpty(url))
            {
                nodes.Add((id, url, holdings.GetValueOrDefault(id)));
            }
        }
        return nodes;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        _heartbeat?.Dispose();
        foreach (var timer in _locks.Values)
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Cluster: announced {Count} blob(s) held here")]
    private static partial void LogAnnounced(ILogger logger, int count);
}
