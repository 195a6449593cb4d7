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
/// A download (<see cref="RunFillAsync"/>):
///   1. sends the upstream request (conditional when a stale entry is being revalidated);
///   2. 304: restarts the stale entry's TTL; error: ends the fill, clients get the stale entry or the error;
///   3. writes the body to a temp file, hashing as it goes, with an idle timeout per read;
///   4. on a broken body resumes with Range (If-Range pinned to the validator), up to three times;
///   5. checks size and sha256 (readers may then have the last byte), fsyncs, renames into the store, records the keys;
///   6. on a write error gives up storing: clients read what was written and the rest straight from upstream.
/// The download runs under the engine's lifetime, not a client's, so a client that leaves does not cancel it.
/// </summary>
public sealed partial class FetchEngine : IDisposable, IAsyncDisposable
{
    private const int MaxResumes = 3;
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
        _logger = logger;
    }

    /// <summary>Other nodes sharing this cache (cluster mode), or null when this node works alone.</summary>
    public IClusterPeers? Cluster { get; set; }

    public ContentStore Store => _store;
    public CacheIndex Index => _index;
    public int InFlight => _flights.Count;

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>A committed entry by key, pinned for the caller (immutable content only: no freshness check).</summary>
    public bool TryAcquireEntry(string key, out EntryRecord entry) =>
        _index.TryGetEntry(key, out entry) && entry.Blob.TryAcquire(NowMs);

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
            case CacheOutcome.Miss or CacheOutcome.Coalesced:
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
                            _metrics.UpstreamError(request.UpstreamName, "too_large");
                            return (null, null, null, 502, PageTooLarge(request));
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

    /// <summary>Looks the artifact up and, on a miss, starts or joins its download and waits for upstream's headers.</summary>
    public async ValueTask<CacheLookup> GetAsync(ArtifactRequest request, CancellationToken ct)
    {
        var now = NowMs;
        EntryRecord? stale = null;
        if (request.ExpectedSha256 is { } sha && _index.TryGetBlob(sha, out var known) && MayShare(request.Access, known) && known.TryAcquire(now))
        {
            // Stored under another key: this key names it from now on (a hit without this lookup next time, and the
            // Content-Type the blob was first stored with).
            if (!_index.TryGetEntry(request.Key, out var e) || e.Blob != known)
            {
                e = RecordAlias(known, request.Key);
            }
            return CacheLookup.Stored(CacheOutcome.Hit, known, e);
        }
        // A key whose stored blob is not the digest the front-end expects (a file rebuilt under the same name on a
        // private index) is a miss, not a hit and not a stale copy to fall back on.
        if (_index.TryGetEntry(request.Key, out var entry) && (request.ExpectedSha256 is not { } expectedSha || entry.Blob.Digest == expectedSha))
        {
            var fresh = request.Ttl is not { } ttl || now - entry.FetchedAtMs < ttl.TotalMilliseconds;
            if (fresh && entry.Blob.TryAcquire(now))
            {
                return CacheLookup.Stored(CacheOutcome.Hit, entry.Blob, entry);
            }
            stale = fresh ? null : entry;
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

        if (_perClient is not null && request.Client is { } client && !_flights.ContainsKey(request.FlightKey))
        {
            // A new upstream fetch (not a hit, not a join) counts against this client's allowance.
            using var lease = _perClient.AttemptAcquire(client);
            if (!lease.IsAcquired)
            {
                _metrics.UpstreamError(request.UpstreamName, "client_rate_limited");
                return CacheLookup.Failed(429, $"this client started more than {_options.MaxUpstreamFetchesPerClient} upstream fetches in the last minute; try again shortly");
            }
        }
        var created = new Fill(request, stale, _store.BlobPath);
        var fill = _flights.GetOrAdd(request.FlightKey, created);
        var joined = !ReferenceEquals(fill, created);
        if (!joined)
        {
            Interlocked.Increment(ref _running);
            _ = Task.Run(async () =>
            {
                try
                {
                    await RunFillAsync(fill);
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
                return CacheLookup.Streaming(joined ? CacheOutcome.Coalesced : CacheOutcome.Miss, fill);
            case FillStartKind.NotModified when fill.Stale is { } revalidated && revalidated.Blob.TryAcquire(NowMs):
                return CacheLookup.Stored(CacheOutcome.Revalidated, revalidated.Blob, revalidated);
        }
        var error = start.Error ?? new UpstreamException("status", 502, "upstream failed");
        if (stale is not null && error.ClientStatus != 404 && stale.Blob.TryAcquire(NowMs))
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

    /// <summary>A stored blob may be given by digest to a client upstream confirmed for it, or to anyone when it is public.</summary>
    private static bool MayShare(ContentAccess access, BlobRecord blob) => access == ContentAccess.Authorised || blob.IsPublic;

    private EntryRecord? RecordAlias(BlobRecord blob, string key)
    {
        try
        {
            _index.Commit(blob.Digest, blob.Size, NowMs, [new EntryTemplate(key, blob.ContentType, null, null)]);
        }
        catch (Exception e) when (e is IOException or Microsoft.Data.Sqlite.SqliteException)
        {
            return null; // the blob is served all the same; the key is recorded next time
        }
        return _index.TryGetEntry(key, out var entry) ? entry : null;
    }

    /// <summary>
    /// What this node may give a peer node that asks for a digest on behalf of a request of the given access (the peer
    /// made its own client's check): a committed blob (pinned for the caller) or a download in progress, or neither.
    /// </summary>
    public (BlobRecord? Blob, Fill? Fill) FindForPeer(string digest, ContentAccess access, string key)
    {
        if (_index.TryGetBlob(digest, out var blob) && blob.TryAcquire(NowMs))
        {
            var allowed = MayShare(access, blob) || (access == ContentAccess.Keyed && _index.TryGetEntry(key, out var entry) && entry.Blob == blob);
            if (allowed)
            {
                return (blob, null);
            }
            blob.Release();
        }
        var authorised = _flights.GetValueOrDefault("sha256:" + digest);
        var open = _flights.GetValueOrDefault("public:sha256:" + digest) ?? (authorised?.Request.Anonymous == true ? authorised : null);
        var fill = access switch
        {
            ContentAccess.Authorised => authorised ?? open,
            ContentAccess.Public => open,
            _ => open ?? (_flights.GetValueOrDefault(key) is { } keyed && keyed.Request.ExpectedSha256 == digest ? keyed : null),
        };
        return (null, fill);
    }

    private async Task RecordAliasAfterCommitAsync(Fill fill, EntryTemplate alias)
    {
        var result = await fill.Completed;
        if (result is { End: FillEnd.Committed, Blob: { } blob })
        {
            try
            {
                _index.Commit(blob.Digest, blob.Size, NowMs, [alias with { ContentType = fill.Started.Result.ContentType }], fill.Request.Anonymous);
            }
            catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
            {
                LogAliasNotRecorded(_logger, alias.Key, e.Message); // served all the same; recorded at the next request
            }
        }
    }

    /// <summary>Opens the artifact straight from upstream at an offset, storing nothing (used when the store fails).</summary>
    public async Task<(HttpResponseMessage Response, Stream Body)> OpenPassthroughAsync(ArtifactRequest request, long offset, CancellationToken ct)
    {
        var response = request.Producer is { } produce
            ? await produce(ct)
            : await _upstream.SendAsync(new UpstreamCall(request.UpstreamName, request.UpstreamUrl)
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
            // Upstream ignored Range: skip what the client already has.
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
        return (response, body);
    }

    private async Task RunFillAsync(Fill fill)
    {
        var request = fill.Request;
        var ct = _shutdown.Token;
        HttpResponseMessage? response = null;
        Microsoft.Win32.SafeHandles.SafeFileHandle? handle = null;
        var committed = false;
        string? clusterDigest = null;
        try
        {
            // :: Step 1 — the upstream request, conditional when revalidating.
            var call = new UpstreamCall(request.UpstreamName, request.UpstreamUrl)
            {
                Decompress = request.Decompress,
                Accept = request.Accept,
                Retries = request.Retries,
                Auth = request.Auth,
                Headers = request.Headers,
                IfNoneMatch = fill.Stale?.UpstreamETag,
                IfModifiedSince = fill.Stale?.UpstreamETag is null ? fill.Stale?.UpstreamLastModified : null,
            };
            try
            {
                if (Cluster is { } cluster && request.Producer is null && request.ExpectedSha256 is { } wanted && fill.Stale is null)
                {
                    // Another node may hold it or be fetching it: stream from there, verified here as always.
                    clusterDigest = wanted;
                    response = await cluster.TryPeersAsync(request, ct);
                    fill.FromPeer = response is not null;
                }
                response ??= request.Producer is { } produce ? await produce(ct) : await _upstream.SendAsync(call, ct);
            }
            catch (UpstreamException e)
            {
                fill.Complete(new FillResult(FillEnd.UpstreamFailed, 0, null, e));
                return;
            }

            // :: Step 2 — 304 keeps the entry we have.
            if (response.StatusCode == HttpStatusCode.NotModified)
            {
                if (fill.Stale is { } stale)
                {
                    _index.Touch(stale, NowMs);
                    fill.SetStarted(new FillStart(FillStartKind.NotModified, null, null, null, null, null));
                    fill.Complete(new FillResult(FillEnd.Committed, stale.Blob.Size, stale.Blob, null));
                }
                else
                {
                    fill.Complete(new FillResult(FillEnd.UpstreamFailed, 0, null, new UpstreamException("status", 502, "upstream answered 304 to an unconditional request")));
                }
                return;
            }

            var length = request.Decompress ? null : response.Content.Headers.ContentLength;
            if (length is { } l && request.ExpectedSize is { } expected && l != expected)
            {
                Fail(fill, "size_mismatch", $"upstream sent {l} bytes for {request.Key}, the index says {expected}");
                return;
            }
            if (length > _options.MaxSizeBytes)
            {
                Fail(fill, "too_large", StoreTooSmall(request, length.Value));
                return;
            }
            var etag = response.Headers.ETag?.ToString();
            var lastModified = response.Content.Headers.LastModified?.ToString("R");
            var contentType = response.Content.Headers.ContentType?.ToString();

            // :: Step 3 — a temp file clients can read while it grows.
            try
            {
                (fill.TempPath, handle) = _store.CreateTemp();
            }
            catch (IOException e)
            {
                StorageFailed(fill, 0, e);
                return;
            }
            fill.SetStarted(new FillStart(FillStartKind.Streaming, length, contentType, etag, lastModified, null));
            // A peer's body resumes from upstream: no validator to pin (the digest check is the pin).
            var (end, written, digest) = await DownloadAsync(fill, response, handle, call, fill.FromPeer ? null : etag ?? lastModified, length, ct);
            response = null; // DownloadAsync owns and disposes the responses it used.
            if (end is not null)
            {
                fill.Complete(end);
                return;
            }

            // :: Step 5 — verify, flush, rename, index.
            if (length is { } len && written != len)
            {
                Fail(fill, "size_mismatch", $"upstream sent {written} bytes for {request.Key}, its Content-Length said {len}");
                return;
            }
            if (request.ExpectedSha256 is { } sha && !string.Equals(sha, digest, StringComparison.Ordinal))
            {
                _metrics.DigestMismatch(request.Protocol);
                var message = $"sha256 of {request.Key} from upstream '{request.UpstreamName}' is {digest}, the index says {sha}; not stored";
                RememberFailure(request.FlightKey, 502, message, TimeSpan.FromMinutes(1));
                Fail(fill, "digest_mismatch", message);
                return;
            }
            fill.Verified(written);
            try
            {
                RandomAccess.FlushToDisk(handle);
                handle.Dispose();
                handle = null;
                _store.Commit(fill.TempPath, digest);
            }
            catch (IOException e)
            {
                StorageFailed(fill, written, e);
                return;
            }
            var aliases = fill.TakeAliases();
            aliases.Insert(0, new EntryTemplate(request.Key, contentType, etag, lastModified));
            for (var i = 1; i < aliases.Count; i++)
            {
                aliases[i] = aliases[i] with { ContentType = contentType };
            }
            BlobRecord blob;
            try
            {
                blob = _index.Commit(digest, written, NowMs, aliases, request.Anonymous);
            }
            catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
            {
                // The index could not record it (the disk filled up at this very step): like any other write failure,
                // the clients keep their bytes and nothing unindexed stays in the store. The renamed file goes back to
                // its temp name, where late readers still find it until the temp file is cleaned up.
                if (!_index.TryGetBlob(digest, out _))
                {
                    UnCommit(fill.TempPath!, digest);
                }
                StorageFailed(fill, written, e);
                return;
            }
            committed = true;
            LogCommitted(_logger, request.Key, digest, written);
            fill.Complete(new FillResult(FillEnd.Committed, written, blob, null));
            EvictIfNeeded();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            fill.Complete(new FillResult(FillEnd.UpstreamFailed, fill.Written, null, new UpstreamException("shutdown", 503, "Hoard is shutting down")));
        }
        catch (Exception e)
        {
            LogFillCrashed(_logger, e, request.Key);
            fill.Complete(new FillResult(FillEnd.UpstreamFailed, fill.Written, null, new UpstreamException("internal", 500, "internal error: " + e.Message)));
        }
        finally
        {
            response?.Dispose();
            handle?.Dispose();
            if (!committed && fill.TempPath is { } temp)
            {
                if (fill.Completed.IsCompletedSuccessfully && fill.Completed.Result.End == FillEnd.StorageFailed)
                {
                    // Clients still read what was written before the failure; give late openers a minute.
                    _ = Task.Delay(TimeSpan.FromMinutes(1), _time, CancellationToken.None).ContinueWith(_ => TryDelete(temp), TaskScheduler.Default);
                }
                else
                {
                    TryDelete(temp);
                }
            }
            _flights.TryRemove(new KeyValuePair<string, Fill>(request.FlightKey, fill));
            if (clusterDigest is not null)
            {
                Cluster?.Finished(clusterDigest, committed);
            }
        }
    }

    /// <summary>Step 3 and 4: the body loop. Returns a failure, or null with the size and digest on success.</summary>
    private async Task<(FillResult? Failure, long Written, string Digest)> DownloadAsync(
        Fill fill, HttpResponseMessage response, Microsoft.Win32.SafeHandles.SafeFileHandle handle, UpstreamCall call, string? validator, long? length, CancellationToken ct)
    {
        var request = fill.Request;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = ArrayPool<byte>.Shared.Rent(128 * 1024);
        long written = 0;
        var roomMadeFor = 0L;
        var resumes = 0;
        var current = response;
        try
        {
            var body = await current.Content.ReadAsStreamAsync(ct);
            while (true)
            {
                int n;
                using (var idle = CancellationTokenSource.CreateLinkedTokenSource(ct))
                {
                    idle.CancelAfter(_options.IdleTimeout);
                    try
                    {
                        n = await body.ReadAsync(buffer, idle.Token);
                    }
                    catch (Exception e) when (!ct.IsCancellationRequested && e is IOException or HttpRequestException or OperationCanceledException)
                    {
                        var reason = e is OperationCanceledException ? $"no data for {_options.IdleTimeout.TotalSeconds:0.#}s" : e.Message;
                        _metrics.UpstreamError(request.UpstreamName, "body");
                        LogBodyBroken(_logger, request.UpstreamName, request.Key, written, reason);
                        var brokenFrom = current.RequestMessage?.RequestUri;
                        current.Dispose();
                        HttpResponseMessage? resumed = null;
                        if (fill.FromPeer && Cluster is { } cluster && request.ExpectedSha256 is not null && written > 0)
                        {
                            // A peer went away: another node that holds or fetches the blob has the rest at once.
                            resumed = await cluster.ResumeAsync(request, written, brokenFrom, ct);
                        }
                        var fromAnotherPeer = resumed is not null;
                        // Only a body of known length from a real upstream can be resumed (not a git pack being produced).
                        while (resumed is null && resumes < MaxResumes && written > 0 && !request.Decompress && length is not null && request.Producer is null)
                        {
                            // Back off before each try: a restarting upstream needs a moment.
                            await Task.Delay(TimeSpan.FromMilliseconds(500 << resumes), _time, ct);
                            resumes++;
                            resumed = await TryResumeAsync(call, written, validator, length, ct);
                        }
                        if (resumed is null)
                        {
                            return (new FillResult(FillEnd.UpstreamFailed, written, null,
                                new UpstreamException("body", 502, $"upstream '{request.UpstreamName}' broke off after {written} bytes ({reason}) and could not be resumed")), written, "");
                        }
                        if (!fromAnotherPeer)
                        {
                            _metrics.Resumed(request.UpstreamName);
                        }
                        current = resumed;
                        body = await current.Content.ReadAsStreamAsync(ct);
                        continue;
                    }
                }
                if (n == 0)
                {
                    break;
                }
                if (TooLarge(request, written + n) is { } tooLarge)
                {
                    current.Dispose();
                    _metrics.UpstreamError(request.UpstreamName, "too_large");
                    LogVerificationFailed(_logger, tooLarge);
                    return (new FillResult(FillEnd.UpstreamFailed, written, null, new UpstreamException("too_large", 502, tooLarge)), written, "");
                }
                if (written + n - roomMadeFor >= EvictionStep)
                {
                    // Room for what has arrived, never for what upstream declared: a lying Content-Length
                    // must not empty the store.
                    roomMadeFor = written + n;
                    MakeRoom(roomMadeFor);
                }
                try
                {
                    // Synchronous: the write lands in the page cache; WriteAsync on Linux would hand the same
                    // call to another thread-pool thread, one more wake-up per chunk for every download.
                    RandomAccess.Write(handle, buffer.AsSpan(0, n), written);
                }
                catch (IOException e)
                {
                    current.Dispose();
                    StorageFailed(fill, written, e);
                    return (fill.Completed.Result, written, "");
                }
                hash.AppendData(buffer, 0, n);
                written += n;
                _metrics.UpstreamBytes(request.UpstreamName, n);
                fill.Advance(written);
            }
            current.Dispose();
            return (null, written, Convert.ToHexStringLower(hash.GetHashAndReset()));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Asks upstream for the rest. Only a 206 starting exactly where we stopped, for the same validator, counts.</summary>
    private async Task<HttpResponseMessage?> TryResumeAsync(UpstreamCall call, long written, string? validator, long? length, CancellationToken ct)
    {
        if (length is null)
        {
            return null;
        }
        HttpResponseMessage response;
        try
        {
            response = await _upstream.SendAsync(call with { RangeStart = written, IfRange = validator, IfNoneMatch = null, IfModifiedSince = null, Retries = 0 }, ct);
        }
        catch (UpstreamException)
        {
            return null;
        }
        var range = response.Content.Headers.ContentRange;
        if (response.StatusCode == HttpStatusCode.PartialContent && range?.From == written && (range.Length is null || range.Length == length))
        {
            LogResumed(_logger, call.UpstreamName, UpstreamClient.Redact(call.Url), written);
            return response;
        }
        response.Dispose();
        return null;
    }

    private void Fail(Fill fill, string reason, string message)
    {
        _metrics.UpstreamError(fill.Request.UpstreamName, reason);
        LogVerificationFailed(_logger, message);
        fill.Complete(new FillResult(FillEnd.UpstreamFailed, fill.Written, null, new UpstreamException(reason, 502, message)));
    }

    private void UnCommit(string tempPath, string digest)
    {
        try
        {
            File.Move(_store.BlobPath(digest), tempPath);
        }
        catch (IOException)
        {
            _store.Delete(digest);
        }
    }

    private void StorageFailed(Fill fill, long written, Exception e)
    {
        _metrics.StoreWriteError();
        Interlocked.Exchange(ref _storageDegradedUntilMs, NowMs + 30_000);
        LogStorageFailed(_logger, e, fill.Request.Key, written);
        fill.SetStarted(new FillStart(FillStartKind.Failed, null, null, null, null, new UpstreamException("storage", 503, "the store could not write: " + e.Message)));
        fill.Complete(new FillResult(FillEnd.StorageFailed, written, null, new UpstreamException("storage", 503, "the store could not write: " + e.Message)));
    }

    /// <summary>
    /// Why a body that has reached <paramref name="size"/> bytes cannot be kept, or null. Index pages are read whole
    /// into memory to be parsed: the page cap (counted after decompression) is what stops a gzip bomb.
    /// </summary>
    private string? TooLarge(ArtifactRequest request, long size) =>
        request.Decompress && size > _options.MaxPageSizeBytes ? PageTooLarge(request)
        : size > _options.MaxSizeBytes ? StoreTooSmall(request, size)
        : null;

    private string PageTooLarge(ArtifactRequest request) =>
        $"upstream page larger than {ValueParsers.FormatSize(_options.MaxPageSizeBytes)} (--max-page-size) for {request.Key} from '{request.UpstreamName}'; not stored";

    private string StoreTooSmall(ArtifactRequest request, long size) =>
        $"upstream '{request.UpstreamName}' sends {size} bytes for {request.Key}, larger than the store ({ValueParsers.FormatSize(_options.MaxSizeBytes)}, --max-size); not stored";

    /// <summary>How often a download makes room in the store for the bytes it has written.</summary>
    private const long EvictionStep = 8L * 1024 * 1024;

    /// <summary>Evicts so the store plus the bytes a download has written stay under the limit.</summary>
    private void MakeRoom(long written) => Evict(Math.Max(0, _options.MaxSizeBytes - written));

    public void EvictIfNeeded() => Evict(_options.MaxSizeBytes);

    private void Evict(long target)
    {
        if (_index.TotalBytes <= target)
        {
            return;
        }
        foreach (var blob in _index.EvictTo(target))
        {
            _store.Delete(blob.Digest);
            Cluster?.Evicted(blob.Digest);
            _metrics.Evicted(blob.Size);
            LogEvicted(_logger, blob.Digest, blob.Size);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Stored {Key} as sha256:{Digest} ({Size} bytes)")]
    private static partial void LogCommitted(ILogger logger, string key, string digest, long size);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Serving stale {Protocol} {Key}: {Error}")]
    private static partial void LogServingStale(ILogger logger, string protocol, string key, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Not stored: {Message}")]
    private static partial void LogVerificationFailed(ILogger logger, string message);

    [LoggerMessage(Level = LogLevel.Error, Message = "Store write failed for {Key} after {Written} bytes; serving from upstream without storing for 30s")]
    private static partial void LogStorageFailed(ILogger logger, Exception e, string key, long written);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream} broke off {Key} after {Written} bytes: {Reason}")]
    private static partial void LogBodyBroken(ILogger logger, string upstream, string key, long written, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Upstream {Upstream}: resumed {Url} at byte {Offset}")]
    private static partial void LogResumed(ILogger logger, string upstream, string url, long offset);

    [LoggerMessage(Level = LogLevel.Information, Message = "Evicted sha256:{Digest} ({Size} bytes)")]
    private static partial void LogEvicted(ILogger logger, string digest, long size);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not record {Key} in the index: {Error}")]
    private static partial void LogAliasNotRecorded(ILogger logger, string key, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "Download of {Key} failed unexpectedly")]
    private static partial void LogFillCrashed(ILogger logger, Exception e, string key);
}
