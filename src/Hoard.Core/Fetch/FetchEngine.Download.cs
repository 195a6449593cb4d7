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
/// A download (<see cref="FetchEngine.RunFillAsync"/>), the steps listed on <see cref="FetchEngine"/>: upstream request,
/// body into a temp file with resumes, verification, commit (eviction: FetchEngine.Eviction.cs).
/// </summary>
public sealed partial class FetchEngine
{
    private async Task RunFillAsync(Fill fill)
    {
        var request = fill.Request;
        var ct = _shutdown.Token;
        HttpResponseMessage? response = null;
        Microsoft.Win32.SafeHandles.SafeFileHandle? handle = null;
        var committed = false;
        var clustered = false;
        string? committedDigest = null;
        try
        {
            // :: Step 1 — the upstream request, conditional when revalidating (the ETag is kept in SQLite only).
            var staleETag = fill.Stale is null ? null : _index.LoadUpstreamETag(request.Key);
            var call = new UpstreamCall(request.UpstreamName, request.UpstreamUrl)
            {
                Decompress = request.Decompress,
                Accept = request.Accept,
                Retries = request.Retries,
                Auth = request.Auth,
                Headers = request.Headers,
                IfNoneMatch = staleETag,
                IfModifiedSince = staleETag is null ? fill.Stale?.UpstreamLastModified : null,
            };
            try
            {
                if (Cluster is { } cluster && fill.Stale is null && ((request.ExpectedSha256 is not null && request.Producer is null) || request.SharedByKey))
                {
                    // Another node may hold it or be fetching it: stream from there, verified here as always (against
                    // the digest the cluster published for the key, when a key's blob comes from a node holding it).
                    clustered = true;
                    var peer = await cluster.TryPeersAsync(request, ct);
                    response = peer?.Response;
                    fill.FromPeer = peer is not null;
                    fill.ExpectedSha256 ??= peer?.Digest;
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
            // A peer's body resumes from upstream with no validator when the digest check pins it; a key's body
            // streamed from the node downloading it is pinned by upstream's Last-Modified, which that node passes on.
            var validator = !fill.FromPeer ? etag ?? lastModified : fill.ExpectedSha256 is null ? lastModified : null;
            var (end, written, digest) = await DownloadAsync(fill, response, handle, call, validator, length, ct);
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
            if (fill.ExpectedSha256 is { } sha && !string.Equals(sha, digest, StringComparison.Ordinal))
            {
                _metrics.DigestMismatch(request.Protocol);
                var message = request.ExpectedSha256 is null
                    ? $"sha256 of {request.Key} from a peer node is {digest}, the cluster recorded {sha} for it; not stored"
                    : $"sha256 of {request.Key} from upstream '{request.UpstreamName}' is {digest}, the index says {sha}; not stored";
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
            var (blob, failure) = CommitBlob(fill.TempPath, digest, written, aliases, request.Anonymous);
            if (failure is not null)
            {
                StorageFailed(fill, written, failure);
                return;
            }
            committed = true;
            committedDigest = digest;
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
            // A 404 is remembered before the flight ends, so no request can slip in between and ask upstream again.
            if (fill.Completed is { IsCompletedSuccessfully: true, Result: { End: FillEnd.UpstreamFailed, Error.ClientStatus: 404 } notFound })
            {
                RememberFailure(request.FlightKey, 404, notFound.Error!.Message, NotFoundTtl);
            }
            _flights.TryRemove(new KeyValuePair<string, Fill>(request.FlightKey, fill));
            if (clustered)
            {
                Cluster?.Finished(request, committedDigest ?? fill.ExpectedSha256, committed);
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
        // Per download, not per chunk: one idle timeout pushed back before each read, one counter handle (looked up
        // with the first chunk, so an upstream that sent nothing has no series yet, as before).
        using var idle = _idleTimeouts.Start(_options.IdleTimeout, ct);
        HoardMetrics.Counter? upstreamBytes = null;
        try
        {
            var body = await current.Content.ReadAsStreamAsync(ct);
            while (true)
            {
                int n;
                idle.Reset();
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
                    if (fill.FromPeer && Cluster is { } cluster && written > 0)
                    {
                        // A peer went away: another node that holds or fetches the blob has the rest at once.
                        if (await cluster.ResumeAsync(request, fill.ExpectedSha256, written, brokenFrom, ct) is { } peer)
                        {
                            resumed = peer.Response;
                            fill.ExpectedSha256 ??= peer.Digest;
                        }
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
                (upstreamBytes ??= _metrics.UpstreamBytes(request.UpstreamName)).Add(n);
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

    /// <summary>
    /// Renames the verified file in and records it, under the digest's lock: an eviction of the same digest (row out,
    /// then file deleted) happens wholly before or wholly after, never between, so it can never delete the file of a
    /// blob committed again meanwhile.
    /// </summary>
    private (BlobRecord? Blob, Exception? Failure) CommitBlob(string tempPath, string digest, long size, List<EntryTemplate> aliases, bool anonymous)
    {
        lock (_index.LockFor(digest))
        {
            try
            {
                _store.Commit(tempPath, digest);
            }
            catch (IOException e)
            {
                return (null, e);
            }
            try
            {
                return (_index.Commit(digest, size, NowMs, aliases, anonymous), null);
            }
            catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
            {
                // The index could not record it (the disk filled up at this very step): like any other write failure,
                // the clients keep their bytes and nothing unindexed stays in the store. The renamed file goes back to
                // its temp name, where late readers still find it until the temp file is cleaned up.
                if (!_index.TryGetBlob(digest, out _))
                {
                    UnCommit(tempPath, digest);
                }
                return (null, e);
            }
        }
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Stored {Key} as sha256:{Digest} ({Size} bytes)")]
    private static partial void LogCommitted(ILogger logger, string key, string digest, long size);

    [LoggerMessage(Level = LogLevel.Error, Message = "Not stored: {Message}")]
    private static partial void LogVerificationFailed(ILogger logger, string message);

    [LoggerMessage(Level = LogLevel.Error, Message = "Store write failed for {Key} after {Written} bytes; serving from upstream without storing for 30s")]
    private static partial void LogStorageFailed(ILogger logger, Exception e, string key, long written);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream} broke off {Key} after {Written} bytes: {Reason}")]
    private static partial void LogBodyBroken(ILogger logger, string upstream, string key, long written, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Upstream {Upstream}: resumed {Url} at byte {Offset}")]
    private static partial void LogResumed(ILogger logger, string upstream, string url, long offset);

    [LoggerMessage(Level = LogLevel.Error, Message = "Download of {Key} failed unexpectedly")]
    private static partial void LogFillCrashed(ILogger logger, Exception e, string key);
}
