using System.Buffers;
using System.Net;
using System.Security.Cryptography;
using Hoard.Core.Configuration;
using Hoard.Core.Metrics;
using Hoard.Core.Storage;
using Hoard.Core.Upstream;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Fetch;

/// <summary>
/// Runs one download (a <see cref="Fill"/>) over its sources, in the steps listed on <see cref="FetchEngine"/>: a peer
/// node, a producer (bytes made here, such as a git pack) or upstream opens the body; the body goes into a temp file
/// with an idle timeout, resuming from another peer or with a Range request to upstream when it breaks; the result is
/// verified and handed to the engine to commit (<see cref="IFillHost"/>: the engine owns the index and the flights).
/// </summary>
internal sealed partial class FillRunner(
    IFillHost host, ContentStore store, UpstreamClient upstream, HoardOptions options, HoardMetrics metrics, TimeProvider time,
    IdleTimeoutPool idleTimeouts, ILogger logger, CancellationToken shutdown)
{
    /// <summary>How often a download makes room in the store for the bytes it has written.</summary>
    private const long EvictionStep = 8L * 1024 * 1024;

    public async Task RunAsync(Fill fill)
    {
        var request = fill.Request;
        var ct = shutdown;
        HttpResponseMessage? response = null;
        Microsoft.Win32.SafeHandles.SafeFileHandle? handle = null;
        var committed = false;
        var clustered = false;
        string? committedDigest = null;
        try
        {
            // :: Step 1 — the upstream request, conditional when revalidating (the ETag is kept in SQLite only).
            var staleETag = fill.Stale is null ? null : host.StaleETag(request.Key);
            var call = new UpstreamCall(request.Protocol, request.UpstreamName, request.UpstreamUrl)
            {
                Decompress = request.Decompress,
                Accept = request.Accept,
                Retries = request.Retries,
                Auth = request.Auth,
                Headers = request.Headers,
                IfNoneMatch = staleETag,
                IfModifiedSince = staleETag is null ? fill.Stale?.UpstreamLastModified : null,
            };
            clustered = AsksPeers(fill);
            try
            {
                response = await OpenAsync(fill, call, clustered, ct);
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
                    host.Revalidated(stale);
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
            if (length > options.MaxSizeBytes)
            {
                Fail(fill, "too_large", StoreTooSmall(request, length.Value, options));
                return;
            }
            var etag = response.Headers.ETag?.ToString();
            var lastModified = response.Content.Headers.LastModified?.ToString("R");
            var contentType = response.Content.Headers.ContentType?.ToString();

            // :: Step 3 — a temp file clients can read while it grows.
            try
            {
                (fill.TempPath, handle) = store.CreateTemp();
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
                metrics.DigestMismatch(request.Protocol);
                var message = request.ExpectedSha256 is null
                    ? $"sha256 of {request.Key} from a peer node is {digest}, the cluster recorded {sha} for it; not stored"
                    : $"sha256 of {request.Key} from upstream '{request.UpstreamName}' is {digest}, {(request.Protocol == "pypi" ? "the index says" : "it was asked for as")} {sha}; not stored";
                host.RememberFailure(request.FlightKey, 502, message, TimeSpan.FromMinutes(1));
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
            var (blob, failure) = host.Commit(fill.TempPath, digest, written, aliases, request.Anonymous);
            if (failure is not null)
            {
                StorageFailed(fill, written, failure);
                return;
            }
            committed = true;
            committedDigest = digest;
            LogCommitted(logger, request.Key, digest, written);
            fill.Complete(new FillResult(FillEnd.Committed, written, blob, null));
            host.Committed();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            fill.Complete(new FillResult(FillEnd.UpstreamFailed, fill.Written, null, new UpstreamException("shutdown", 503, "Hoard is shutting down")));
        }
        catch (Exception e)
        {
            LogFillCrashed(logger, e, request.Key);
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
                    _ = Task.Delay(TimeSpan.FromMinutes(1), time, CancellationToken.None).ContinueWith(_ => TryDelete(temp), TaskScheduler.Default);
                }
                else
                {
                    TryDelete(temp);
                }
            }
            // A 404 is remembered before the flight ends, so no request can slip in between and ask upstream again.
            if (fill.Completed is { IsCompletedSuccessfully: true, Result: { End: FillEnd.UpstreamFailed, Error.ClientStatus: 404 } notFound })
            {
                host.RememberFailure(request.FlightKey, 404, notFound.Error!.Message, FetchEngine.NotFoundTtl);
            }
            host.Finished(fill);
            if (clustered)
            {
                host.Cluster?.Finished(request, committedDigest ?? fill.ExpectedSha256, committed);
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
        using var idle = idleTimeouts.Start(options.IdleTimeout, ct);
        HoardMetrics.Counter? upstreamBytes = null;
        // hoard_upstream_bytes_total counts what upstream sent: not a peer's copy (counted per peer by the cluster),
        // nor bytes made here (a git bundle), so "fetched from upstream" is what upstream really served.
        var fromUpstream = !fill.FromPeer && request.Producer is null;
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
                    var reason = e is OperationCanceledException ? $"no data for {options.IdleTimeout.TotalSeconds:0.#}s" : e.Message;
                    metrics.UpstreamError(request.Protocol, request.UpstreamName, "body");
                    LogBodyBroken(logger, request.UpstreamName, request.Key, written, reason);
                    var brokenFrom = current.RequestMessage?.RequestUri;
                    current.Dispose();
                    (var resumed, var fromAnotherPeer, resumes) = await ResumeAsync(fill, call, written, brokenFrom, validator, length, resumes, ct);
                    if (resumed is null)
                    {
                        return (new FillResult(FillEnd.UpstreamFailed, written, null,
                            new UpstreamException("body", 502, $"upstream '{request.UpstreamName}' broke off after {written} bytes ({reason}) and could not be resumed")), written, "");
                    }
                    if (!fromAnotherPeer)
                    {
                        metrics.Resumed(request.Protocol, request.UpstreamName);
                    }
                    fromUpstream = !fromAnotherPeer && request.Producer is null;
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
                    metrics.UpstreamError(request.Protocol, request.UpstreamName, "too_large");
                    LogVerificationFailed(logger, tooLarge);
                    return (new FillResult(FillEnd.UpstreamFailed, written, null, new UpstreamException("too_large", 502, tooLarge)), written, "");
                }
                if (written + n - roomMadeFor >= EvictionStep)
                {
                    // Room for what has arrived, never for what upstream declared: a lying Content-Length
                    // must not empty the store.
                    roomMadeFor = written + n;
                    host.MakeRoom(roomMadeFor);
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
                if (fromUpstream)
                {
                    (upstreamBytes ??= metrics.UpstreamBytes(request.Protocol, request.UpstreamName)).Add(n);
                }
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

    private void Fail(Fill fill, string reason, string message)
    {
        metrics.UpstreamError(fill.Request.Protocol, fill.Request.UpstreamName, reason);
        LogVerificationFailed(logger, message);
        fill.Complete(new FillResult(FillEnd.UpstreamFailed, fill.Written, null, new UpstreamException(reason, 502, message)));
    }

    private void StorageFailed(Fill fill, long written, Exception e)
    {
        metrics.StoreWriteError();
        host.StorageDegraded();
        LogStorageFailed(logger, e, fill.Request.Key, written);
        fill.SetStarted(new FillStart(FillStartKind.Failed, null, null, null, null, new UpstreamException("storage", 503, "the store could not write: " + e.Message)));
        fill.Complete(new FillResult(FillEnd.StorageFailed, written, null, new UpstreamException("storage", 503, "the store could not write: " + e.Message)));
    }

    /// <summary>
    /// Why a body that has reached <paramref name="size"/> bytes cannot be kept, or null. Index pages are read whole
    /// into memory to be parsed: the page cap (counted after decompression) is what stops a gzip bomb.
    /// </summary>
    private string? TooLarge(ArtifactRequest request, long size) =>
        request.Decompress && size > options.MaxPageSizeBytes ? PageTooLarge(request, options)
        : size > options.MaxSizeBytes ? StoreTooSmall(request, size, options)
        : null;

    internal static string PageTooLarge(ArtifactRequest request, HoardOptions options) =>
        $"upstream page larger than {ValueParsers.FormatSize(options.MaxPageSizeBytes)} (--max-page-size) for {request.Key} from '{request.UpstreamName}'; not stored";

    internal static string StoreTooSmall(ArtifactRequest request, long size, HoardOptions options) =>
        $"upstream '{request.UpstreamName}' sends {size} bytes for {request.Key}, larger than the store ({ValueParsers.FormatSize(options.MaxSizeBytes)}, --max-size); not stored";

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


    [LoggerMessage(Level = LogLevel.Error, Message = "Download of {Key} failed unexpectedly")]
    private static partial void LogFillCrashed(ILogger logger, Exception e, string key);
}
