using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Threading.RateLimiting;
using Hoard.Core.Configuration;
using Hoard.Core.Metrics;
using Hoard.Core.Storage;
using Hoard.Core.Upstream;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Fetch;

/// <summary>
/// The one fetch path. Front-ends describe an artifact; the engine answers from the store, or runs (or joins)
/// the single download for it and lets every client stream the growing temp file.
///
/// A download (<see cref="FillRunner"/>):
///   1. sends the upstream request (conditional when a stale entry is being revalidated);
///   2. 304: restarts the stale entry's TTL; error: ends the fill, clients get the stale entry or the error;
///   3. writes the body to a temp file, hashing as it goes, with an idle timeout that each read pushes back;
///   4. on a broken body resumes with Range (If-Range pinned to the validator), up to three times;
///   5. checks size and sha256 (readers may then have the last byte), fsyncs, renames into the store, records the keys;
///   6. on a write error gives up storing: clients read what was written and the rest straight from upstream.
/// The download runs under the engine's lifetime, not a client's, so a client that leaves does not cancel it.
///
/// Only the engine touches the index and the store: front-ends use its public methods (README.md in this folder lists
/// them, and how a new protocol front-end plugs in; tests/Hoard.Tests/Unit/EngineSurfaceTests.cs enforces it).
/// </summary>
public sealed partial class FetchEngine : IDisposable, IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Fill> _flights = new(StringComparer.Ordinal);
    /// <summary>
    /// Recent failures by flight key, answered without asking upstream again: a digest mismatch for a minute (a bad
    /// upstream is not hammered) and a 404 for <see cref="NotFoundTtl"/> (a flood of requests for a missing name reaches
    /// upstream once). Bounded: the keys are what clients ask for.
    /// </summary>
    private readonly MemoryCache _recentFailures = new(new MemoryCacheOptions { SizeLimit = 20_000, CompactionPercentage = 0.25 });
    public static readonly TimeSpan NotFoundTtl = TimeSpan.FromSeconds(10);
    private readonly CancellationTokenSource _shutdown = new();
    private readonly ContentStore _store;
    private readonly CacheIndex _index;
    private readonly UpstreamClient _upstream;
    private readonly HoardOptions _options;
    private readonly HoardMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly IdleTimeoutPool _idleTimeouts;
    private readonly FillRunner _runner;
    private readonly ILogger _logger;
    private readonly PartitionedRateLimiter<string>? _perClient;
    private long _storageDegradedUntilMs;
    private int _running;

    public FetchEngine(ContentStore store, CacheIndex index, UpstreamClient upstream, HoardOptions options, HoardMetrics metrics, TimeProvider time, ILogger<FetchEngine> logger)
    {
        _perClient = options.MaxUpstreamFetchesPerClient > 0
            ? PartitionedRateLimiter.Create<string, string>(client => RateLimitPartition.GetTokenBucketLimiter(client, _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = options.MaxUpstreamFetchesPerClient,
                TokensPerPeriod = options.MaxUpstreamFetchesPerClient,
                ReplenishmentPeriod = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
                AutoReplenishment = true,
            }))
            : null;
        _store = store;
        _index = index;
        _upstream = upstream;
        _options = options;
        _metrics = metrics;
        _time = time;
        _idleTimeouts = new IdleTimeoutPool(time);
        _runner = new FillRunner(this, store, upstream, options, metrics, time, _idleTimeouts, logger, _shutdown.Token);
        _logger = logger;
        _evictor = new Evictor(index, store, options.MaxSizeBytes, logger, _shutdown.Token)
        {
            Evicted = blob =>
            {
                Cluster?.Evicted(blob.Digest);
                _metrics.Evicted(blob.Size);
            },
        };
    }

    /// <summary>Other nodes sharing this cache (cluster mode), or null when this node works alone.</summary>
    public IClusterPeers? Cluster { get; set; }


    public int InFlight => _flights.Count;

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>
    /// The whole body of a small artifact (an index page), whatever the lookup's outcome. Errors come back as
    /// a status and message. Used by front-ends that must parse what they serve.
    /// </summary>
    public async Task<(byte[]? Body, string? ContentType, string? Digest, int Status, string? Error)> ReadAllAsync(ArtifactRequest request, CacheLookup lookup, CancellationToken ct)
    {
        switch (lookup.Outcome)
        {
            case CacheOutcome.Hit or CacheOutcome.Revalidated or CacheOutcome.Stale:
                try
                {
                    var blob = lookup.Blob!;
                    var bytes = blob.Hot ?? await File.ReadAllBytesAsync(_store.BlobPath(blob.Digest), ct);
                    return (bytes, lookup.Entry?.ContentType, blob.Digest, 200, null);
                }
                finally
                {
                    lookup.Release();
                }
            case CacheOutcome.Miss or CacheOutcome.Coalesced or CacheOutcome.Peer:
                var fill = lookup.Fill!;
                var result = await fill.Completed.WaitAsync(ct);
                if (result is { End: FillEnd.Committed, Blob: { } committed })
                {
                    return (await File.ReadAllBytesAsync(_store.BlobPath(committed.Digest), ct), fill.Started.Result.ContentType, committed.Digest, 200, null);
                }
                if (result.End == FillEnd.UpstreamFailed)
                {
                    return (null, null, null, result.Error?.ClientStatus ?? 502, result.Error?.Message ?? "upstream failed");
                }
                goto case CacheOutcome.Bypass;
            case CacheOutcome.Bypass:
                try
                {
                    var (response, body) = await OpenPassthroughAsync(request, 0, ct);
                    using (response)
                    await using (body)
                    {
                        using var buffer = new MemoryStream();
                        if (!await UpstreamClient.TryCopyBoundedAsync(body, buffer, _options.MaxPageSizeBytes, ct))
                        {
                            _metrics.UpstreamError(request.Protocol, request.UpstreamName, "too_large");
                            return (null, null, null, 502, FillRunner.PageTooLarge(request, _options));
                        }
                        var bytes = buffer.ToArray();
                        return (bytes, response.Content.Headers.ContentType?.ToString(), Convert.ToHexStringLower(SHA256.HashData(bytes)), 200, null);
                    }
                }
                catch (UpstreamException e)
                {
                    return (null, null, null, e.ClientStatus, e.Message);
                }
            default:
                return (null, null, null, lookup.ErrorStatus, lookup.ErrorMessage);
        }
    }

    /// <summary>
    /// Looks the artifact up and, on a miss, starts or joins its download and waits for upstream's headers.
    /// <paramref name="client"/>: who asked, for the per-client limit on new upstream fetches (when one is set).
    /// </summary>
    public async ValueTask<CacheLookup> GetAsync(ArtifactRequest request, CancellationToken ct, System.Net.IPAddress? client = null)
    {
        var now = NowMs;
        EntryRecord? stale = null;
        if (request.ExpectedSha256 is { } sha && _index.TryGetBlob(sha, out var known) && MayShare(request.Access, known) && _index.HasFile(known, _store) && known.TryAcquire(now))
        {
            // Stored under another key: this key names it from now on (a hit without this lookup next time, and the
            // Content-Type the blob was first stored with).
            if (!_index.TryGetEntry(request.Key, out var e) || e.Blob != known)
            {
                e = RecordAlias(known, new EntryTemplate(request.Key, known.ContentType, null, null), isPublic: false);
            }
            return CacheLookup.Stored(CacheOutcome.Hit, known, e);
        }
        // A key whose stored blob is not the digest the front-end expects (a file rebuilt under the same name on a
        // private index) is a miss, not a hit and not a stale copy to fall back on.
        if (_index.TryGetEntry(request.Key, out var entry) && (request.ExpectedSha256 is not { } expectedSha || entry.Blob.Digest == expectedSha))
        {
            var fresh = request.Ttl is not { } ttl || now - entry.FetchedAtMs < ttl.TotalMilliseconds;
            if (!_index.HasFile(entry.Blob, _store))
            {
                // Found missing before the start-up reconciliation got to it: dropped, and this is a miss.
                entry = null;
            }
            else if (fresh && entry.Blob.TryAcquire(now))
            {
                return CacheLookup.Stored(CacheOutcome.Hit, entry.Blob, entry);
            }
            stale = fresh || entry is null ? null : entry;
        }
        if (_recentFailures.TryGetValue(request.FlightKey, out (long AtMs, int Status, string Message) failure)
            && now - failure.AtMs < (failure.Status == 404 ? NotFoundTtl : TimeSpan.FromMinutes(1)).TotalMilliseconds
            && (failure.Status != 404 || stale is null))
        {
            return CacheLookup.Failed(failure.Status, failure.Message);
        }
        if (now < Interlocked.Read(ref _storageDegradedUntilMs) && stale is null)
        {
            return CacheLookup.Bypass();
        }

        if (_perClient is not null && client is not null && !_flights.ContainsKey(request.FlightKey))
        {
            // A new upstream fetch (not a hit, not a join) counts against this client's allowance.
            using var lease = _perClient.AttemptAcquire(client.ToString());
            if (!lease.IsAcquired)
            {
                _metrics.UpstreamError(request.Protocol, request.UpstreamName, "client_rate_limited");
                return CacheLookup.Failed(429, $"this client started more than {_options.MaxUpstreamFetchesPerClient} upstream fetches in the last minute; try again shortly");
            }
        }
        var created = new Fill(request, stale, _store.BlobPath);
        var fill = _flights.GetOrAdd(request.FlightKey, created);
        var joined = !ReferenceEquals(fill, created);
        fill.AddClient();
        if (!joined)
        {
            Interlocked.Increment(ref _running);
            _ = Task.Run(async () =>
            {
                try
                {
                    await _runner.RunAsync(fill);
                }
                finally
                {
                    Interlocked.Decrement(ref _running);
                }
            }, CancellationToken.None);
        }
        var alias = new EntryTemplate(request.Key, null, null, null);
        if (joined && request.Key != fill.Request.Key && !fill.TryAddAlias(alias))
        {
            _ = RecordAliasAfterCommitAsync(fill, alias);
        }

        if (joined && fill.IsVerified && await fill.Completed.WaitAsync(ct) is { End: FillEnd.Committed, Blob: { } done } && done.TryAcquire(NowMs))
        {
            // The body was whole and checked, only the commit was under way: a hit from the store, not a join.
            _index.TryGetEntry(request.Key, out var committed);
            return CacheLookup.Stored(CacheOutcome.Hit, done, committed);
        }
        var start = await fill.Started.WaitAsync(ct);
        switch (start.Kind)
        {
            case FillStartKind.Streaming:
                // FromPeer is settled before Started: a joiner of a download from a peer is served from that peer too.
                return CacheLookup.Streaming(fill.FromPeer ? CacheOutcome.Peer : joined ? CacheOutcome.Coalesced : CacheOutcome.Miss, fill);
            case FillStartKind.NotModified when fill.Stale is { } revalidated && revalidated.Blob.TryAcquire(NowMs):
                return CacheLookup.Stored(CacheOutcome.Revalidated, revalidated.Blob, revalidated);
        }
        var error = start.Error ?? new UpstreamException("status", 502, "upstream failed");
        // Stale is for an upstream that cannot answer, not for one that says no (gone, or these credentials refused).
        if (stale is not null && error.ClientStatus is not (404 or 401 or 403) && stale.Blob.TryAcquire(NowMs))
        {
            LogServingStale(_logger, request.Protocol, request.Key, error.Message);
            _metrics.StaleServed(request.Protocol);
            return CacheLookup.Stored(CacheOutcome.Stale, stale.Blob, stale);
        }
        if (start.Kind == FillStartKind.Failed && error.Reason == "storage")
        {
            return CacheLookup.Bypass();
        }
        if (error.ClientStatus == 404)
        {
            RememberFailure(request.FlightKey, 404, error.Message, NotFoundTtl);
        }
        return CacheLookup.Failed(error.ClientStatus, error.Message);
    }

    private void RememberFailure(string flightKey, int status, string message, TimeSpan ttl) =>
        _recentFailures.Set(flightKey, (NowMs, status, message), new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = ttl });

    /// <summary>Opens the artifact straight from upstream at an offset, storing nothing (used when the store fails).</summary>
    public async Task<(HttpResponseMessage Response, Stream Body)> OpenPassthroughAsync(ArtifactRequest request, long offset, CancellationToken ct)
    {
        var response = request.Producer is { } produce
            ? await produce(ct)
            : await _upstream.SendAsync(new UpstreamCall(request.Protocol, request.UpstreamName, request.UpstreamUrl)
            {
                Decompress = request.Decompress,
                Accept = request.Accept,
                RangeStart = offset,
                Auth = request.Auth,
                Headers = request.Headers,
            }, ct);
        var body = await response.Content.ReadAsStreamAsync(ct);
        if (offset > 0 && response.StatusCode != HttpStatusCode.PartialContent)
        {
            try
            {
                await SkipAsync(body, offset, ct);
            }
            catch
            {
                // A producer behind it (a git process) must not block on a full pipe forever.
                await body.DisposeAsync();
                response.Dispose();
                throw;
            }
        }
        return (response, body);
    }

    /// <summary>Reads and drops what the client already has (upstream ignored Range).</summary>
    private static async Task SkipAsync(Stream body, long offset, CancellationToken ct)
    {
        var skip = offset;
        var buffer = ArrayPool<byte>.Shared.Rent(StreamCopy.BufferSize);
        try
        {
            while (skip > 0)
            {
                var n = await body.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, skip)), ct);
                if (n == 0)
                {
                    throw new UpstreamException("body", 502, "upstream body ended before the resume point");
                }
                skip -= n;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private int _disposed;

    /// <summary>Cancels downloads still running (called on shutdown and again by the container).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _shutdown.Cancel();
        }
    }

    /// <summary>
    /// Cancels the downloads and waits (up to 10 s) for them to end: one may be committing (fsync, rename, index
    /// row), and the index it writes to is disposed right after this engine.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        Dispose();
        var deadline = NowMs + 10_000;
        while (Volatile.Read(ref _running) > 0 && NowMs < deadline)
        {
            await Task.Delay(20, CancellationToken.None);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Serving stale {Protocol} {Key}: {Error}")]
    private static partial void LogServingStale(ILogger logger, string protocol, string key, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record {Key} in the index: {Error}")]
    private static partial void LogAliasNotRecorded(ILogger logger, string key, string error);
}
