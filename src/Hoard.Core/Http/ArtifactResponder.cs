using System.Globalization;
using Hoard.Core.Fetch;
using Hoard.Core.Metrics;
using Hoard.Core.Storage;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Http;

/// <summary>How a front-end wants an artifact presented.</summary>
public sealed record ResponseShape(string? ContentType, string CacheControl)
{
    public static readonly ResponseShape Immutable = new(null, "public, max-age=31536000, immutable");

    /// <summary>Headers every successful response carries (Docker-Content-Digest).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    /// <summary>Reported instead of a plain hit (a tag served from its last known digest is STALE).</summary>
    public CacheOutcome? HitOutcome { get; init; }

    /// <summary>How errors are written; null: text/plain (see <see cref="HttpErrors"/>).</summary>
    public Func<HttpContext, int, string, Task>? WriteError { get; init; }

    public void ApplyHeaders(HttpResponse response)
    {
        foreach (var (name, value) in Headers)
        {
            response.Headers[name] = value;
        }
    }

    public Task Error(HttpContext ctx, int status, string message) =>
        WriteError is { } write ? write(ctx, status, message) : HttpErrors.WriteAsync(ctx, status, message);
}

/// <summary>
/// Writes a cache answer to a client: committed blobs with ETag, Range and HEAD; downloads in progress as they grow;
/// upstream straight through when the store cannot write. A body that cannot be completed is aborted, never cut short
/// with a success status.
/// </summary>
public sealed partial class ArtifactResponder(FetchEngine engine, HoardMetrics metrics, ILogger<ArtifactResponder> logger)
{
    /// <summary>
    /// A download with a known digest and a Content-Length up to this is verified before the status line goes out, so
    /// a mismatch reaches the client as a 502 with its reason instead of a connection cut off mid-body (which pip
    /// reports as a broken connection or as its own hash error, with nothing about why). Most wheels, sdists, metadata
    /// files, LFS objects and image configs are well under it, and at LAN or data-centre speeds it arrives in a second
    /// or two, so holding it back costs little: the client waits for the last byte anyway, and that byte is held back
    /// until the check passes in every case. Above it the first byte goes out as it arrives, as before: holding a
    /// 2 GB wheel or a large layer back would delay the start of a download clients stream (and show progress for) by
    /// the whole transfer, and a mismatch still cuts that body off before its last byte.
    /// </summary>
    public const long MaxVerifiedFirstBytes = 16L * 1024 * 1024;

    /// <summary>
    /// How long a response is held back waiting for that check at most: a slow upstream must not make the client's
    /// own read timeout fire (pip gives up after 15 s without a byte by default). Past it the body streams as a larger
    /// one does.
    /// </summary>
    public static readonly TimeSpan MaxVerifyFirstWait = TimeSpan.FromSeconds(5);

    public async Task RespondAsync(HttpContext ctx, ArtifactRequest request, ResponseShape shape)
    {
        var info = RequestInfo.For(ctx);
        CacheLookup lookup;
        try
        {
            lookup = await engine.GetAsync(request, ctx.RequestAborted, ctx.Connection.RemoteIpAddress);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        info.Outcome = lookup.Outcome;
        if (lookup.Outcome is not (CacheOutcome.None or CacheOutcome.Error))
        {
            engine.Requested(request.Key);
        }
        switch (lookup.Outcome)
        {
            case CacheOutcome.Hit or CacheOutcome.Revalidated or CacheOutcome.Stale:
                await ServeStoredAsync(ctx, lookup, shape);
                break;
            case CacheOutcome.Miss or CacheOutcome.Coalesced or CacheOutcome.Peer:
                await ServeFillAsync(ctx, request, lookup.Fill!, shape, lookup.Outcome, verifyFirst: true);
                break;
            case CacheOutcome.Bypass:
                await ServePassthroughAsync(ctx, request, shape);
                break;
            default:
                // Also the answer for a minute after a download failed its check (remembered, not fetched again).
                await RefuseAsync(ctx, shape, lookup.ErrorStatus, lookup.ErrorMessage ?? "upstream failed");
                break;
        }
    }

    /// <summary>Serves a hit the front-end found by its <paramref name="key"/> (<see cref="FetchEngine.TryGetHit"/>), and releases it.</summary>
    public Task ServeHitAsync(HttpContext ctx, string key, CacheLookup hit, ResponseShape shape)
    {
        RequestInfo.For(ctx).Outcome = hit.Outcome;
        engine.Requested(key);
        return ServeStoredAsync(ctx, hit, shape);
    }

    private async Task ServeStoredAsync(HttpContext ctx, CacheLookup lookup, ResponseShape shape)
    {
        try
        {
            await ServeBlobAsync(ctx, lookup.Blob!, lookup.Entry, shape, lookup.Outcome);
        }
        finally
        {
            lookup.Release();
        }
    }

    /// <summary>Serves a committed blob. The caller holds the blob's pin.</summary>
    public async Task ServeBlobAsync(HttpContext ctx, BlobRecord blob, EntryRecord? entry, ResponseShape shape, CacheOutcome outcome)
    {
        var response = ctx.Response;
        var headers = response.Headers;
        var etag = blob.QuotedDigest();
        if (outcome == CacheOutcome.Hit && shape.HitOutcome is { } hitOutcome)
        {
            outcome = hitOutcome;
            RequestInfo.For(ctx).Outcome = outcome;
        }
        CacheStatusHeader.Apply(response, outcome);
        shape.ApplyHeaders(response);
        headers.ETag = etag;
        headers.LastModified = entry?.UpstreamLastModified ?? DateTimeOffset.FromUnixTimeSeconds(blob.CreatedUnixSeconds).ToString("R", CultureInfo.InvariantCulture);
        headers.AcceptRanges = "bytes";
        headers.CacheControl = shape.CacheControl;
        response.ContentType = shape.ContentType ?? entry?.ContentType ?? blob.ContentType ?? "application/octet-stream";

        var inm = ctx.Request.Headers.IfNoneMatch;
        if (inm.Count > 0 && Matches(inm.ToString(), etag))
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return;
        }
        long start = 0, end = blob.Size;
        var range = ctx.Request.Headers.Range;
        if (range.Count > 0 && IfRangeHolds(ctx, etag))
        {
            switch (ByteRange.Parse(range.ToString(), blob.Size, out start, out end))
            {
                case RangeKind.Satisfiable:
                    response.StatusCode = StatusCodes.Status206PartialContent;
                    headers.ContentRange = $"bytes {start}-{end - 1}/{blob.Size}";
                    break;
                case RangeKind.Unsatisfiable:
                    response.StatusCode = StatusCodes.Status416RangeNotSatisfiable;
                    headers.ContentRange = $"bytes */{blob.Size}";
                    return;
            }
        }
        response.ContentLength = end - start;
        if (HttpMethods.IsHead(ctx.Request.Method) || end == start)
        {
            return;
        }

        var hot = engine.HotBytes(blob);
        if (hot is not null)
        {
            await response.BodyWriter.WriteAsync(hot.AsMemory((int)start, (int)(end - start)), ctx.RequestAborted);
            metrics.ServedFromCache(end - start);
            return;
        }
        await CopyFileAsync(ctx, blob, start, end);
    }

    /// <summary>Reads the file straight into the response pipe's buffers: no intermediate copy, no stream wrapper.</summary>
    private async Task CopyFileAsync(HttpContext ctx, BlobRecord blob, long start, long end)
    {
        var writer = ctx.Response.BodyWriter;
        var ct = ctx.RequestAborted;
        using var handle = engine.OpenBlob(blob);
        var pos = start;
        try
        {
            while (pos < end)
            {
                var memory = writer.GetMemory(StreamCopy.BufferSize);
                var want = (int)Math.Min(memory.Length, end - pos);
                var n = RandomAccess.Read(handle, memory.Span[..want], pos);
                if (n <= 0)
                {
                    ctx.Abort();
                    return;
                }
                writer.Advance(n);
                pos += n;
                var flush = await writer.FlushAsync(ct);
                if (flush.IsCanceled || flush.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client left; nothing to report.
        }
        metrics.ServedFromCache(pos - start);
    }

    /// <param name="verifyFirst">
    /// Hold a small download with a known digest back until it is verified (<see cref="MaxVerifiedFirstBytes"/>); not
    /// for a peer node streaming this node's download, which verifies it itself and wants the bytes as they come.
    /// </param>
    private async Task ServeFillAsync(HttpContext ctx, ArtifactRequest request, Fill fill, ResponseShape shape, CacheOutcome outcome, bool verifyFirst)
    {
        var start = fill.Started.Result;
        if (verifyFirst && fill.ExpectedSha256 is not null && start.Length is <= MaxVerifiedFirstBytes && !HttpMethods.IsHead(ctx.Request.Method))
        {
            FillResult? unverified;
            try
            {
                unverified = await fill.Checked.WaitAsync(MaxVerifyFirstWait, ctx.RequestAborted);
            }
            catch (TimeoutException)
            {
                unverified = null; // still arriving: streamed as it comes, and cut off if it fails its check
            }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
            {
                return;
            }
            if (unverified is { End: FillEnd.UpstreamFailed })
            {
                var error = unverified.Error;
                LogRefused(logger, error?.ClientStatus ?? 502, request.Key, error?.Message ?? "upstream failed");
                await RefuseAsync(ctx, shape, error?.ClientStatus ?? 502, error?.Message ?? "upstream failed");
                return;
            }
            // Verified, or the store failed and the rest passes through from upstream as before.
        }
        var response = ctx.Response;
        CacheStatusHeader.Apply(response, outcome);
        shape.ApplyHeaders(response);
        response.ContentType = shape.ContentType ?? start.ContentType ?? "application/octet-stream";
        response.Headers.CacheControl = shape.CacheControl;
        if (request.ExpectedSha256 is { } sha)
        {
            response.Headers.ETag = "\"" + sha + "\"";
        }
        if (start.LastModified is { } lm)
        {
            response.Headers.LastModified = lm;
        }
        long from = 0, to = -1;
        if (start.Length is { } length)
        {
            response.Headers.AcceptRanges = "bytes";
            to = length;
            var range = ctx.Request.Headers.Range;
            if (range.Count > 0)
            {
                switch (ByteRange.Parse(range.ToString(), length, out from, out to))
                {
                    case RangeKind.Satisfiable:
                        response.StatusCode = StatusCodes.Status206PartialContent;
                        response.Headers.ContentRange = $"bytes {from}-{to - 1}/{length}";
                        break;
                    case RangeKind.Unsatisfiable:
                        response.StatusCode = StatusCodes.Status416RangeNotSatisfiable;
                        response.Headers.ContentRange = $"bytes */{length}";
                        return;
                }
            }
            response.ContentLength = to - from;
        }
        if (HttpMethods.IsHead(ctx.Request.Method))
        {
            return;
        }
        await response.StartAsync(ctx.RequestAborted);
        var result = await fill.CopyToAsync(response.BodyWriter, from, to, (pos, ct) => OpenPassthroughBodyAsync(request, pos, ct), ctx.RequestAborted);
        if (outcome == CacheOutcome.Coalesced)
        {
            metrics.ServedCoalesced(result.Bytes);
        }
        else if (fill.FromPeer)
        {
            metrics.ServedFromPeer(result.Bytes);
        }
        else
        {
            metrics.ServedFromUpstream(result.Bytes);
        }
        Finish(ctx, request, result);
    }

    /// <summary>Streams a download in progress to a peer node, as it grows (cluster mode).</summary>
    public async Task ServeInFlightAsync(HttpContext ctx, Fill fill)
    {
        var start = await fill.Started.WaitAsync(ctx.RequestAborted);
        if (start.Kind != FillStartKind.Streaming)
        {
            await HttpErrors.WriteAsync(ctx, 404, "this node's download of that blob failed");
            return;
        }
        await ServeFillAsync(ctx, fill.Request, fill, ResponseShape.Immutable, CacheOutcome.Coalesced, verifyFirst: false);
    }

    private async Task<Stream> OpenPassthroughBodyAsync(ArtifactRequest request, long pos, CancellationToken ct)
    {
        var (_, body) = await engine.OpenPassthroughAsync(request, pos, ct);
        return body;
    }

    private async Task ServePassthroughAsync(HttpContext ctx, ArtifactRequest request, ResponseShape shape)
    {
        HttpResponseMessage upstream;
        Stream body;
        try
        {
            (upstream, body) = await engine.OpenPassthroughAsync(request, 0, ctx.RequestAborted);
        }
        catch (Upstream.UpstreamException e)
        {
            await shape.Error(ctx, e.ClientStatus, e.Message);
            return;
        }
        using (upstream)
        await using (body)
        {
            var response = ctx.Response;
            CacheStatusHeader.Apply(response, CacheOutcome.Bypass);
            shape.ApplyHeaders(response);
            response.ContentType = shape.ContentType ?? upstream.Content.Headers.ContentType?.ToString() ?? "application/octet-stream";
            response.Headers.CacheControl = "no-store";
            var length = request.Decompress ? null : upstream.Content.Headers.ContentLength;
            response.ContentLength = length;
            if (HttpMethods.IsHead(ctx.Request.Method))
            {
                return;
            }
            var result = await StreamCopy.CopyAsync(body, response.BodyWriter, length ?? long.MaxValue, ctx.RequestAborted);
            metrics.ServedFromUpstream(result.Bytes);
            Finish(ctx, request, result);
        }
    }

    /// <summary>
    /// An artifact that cannot be served, said before any byte went out: its status, and its reason both in the body
    /// (plain text, or the front-end's error format) and in the HTTP/1.x reason phrase, which is what pip shows of a
    /// failed download ("502 Server Error: REASON for url: ...").
    /// </summary>
    private static Task RefuseAsync(HttpContext ctx, ResponseShape shape, int status, string message)
    {
        if (ctx.Request.Protocol is "HTTP/1.1" or "HTTP/1.0" && ctx.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseFeature>() is { } feature)
        {
            feature.ReasonPhrase = ReasonPhrase(status, message);
        }
        return shape.Error(ctx, status, message);
    }

    /// <summary>
    /// The status's usual phrase and the reason, printable ASCII only (the message names a key and an upstream, and a
    /// control character there must not split the status line), and short enough for one line of a client's output.
    /// </summary>
    internal static string ReasonPhrase(int status, string message)
    {
        var text = $"{Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status)}: {message}";
        var chars = text.Select(c => c is >= ' ' and <= '~' ? c : '?').Take(400).ToArray();
        return new string(chars);
    }

    private void Finish(HttpContext ctx, ArtifactRequest request, CopyOutcome result)
    {
        if (result.Kind == CopyKind.UpstreamFailed)
        {
            // Headers (and maybe a Content-Length) are out: aborting is the only way to say "this body is not whole".
            // The status logged is the 200 that went out; the outcome says the transfer failed.
            var info = RequestInfo.For(ctx);
            info.Error = result.Error;
            info.Outcome = CacheOutcome.Error;
            LogAborted(logger, request.Key, result.Error ?? "");
            ctx.Abort();
        }
    }

    private static bool Matches(string ifNoneMatch, string etag) =>
        ifNoneMatch.Trim() == "*" || ifNoneMatch.Contains(etag, StringComparison.Ordinal);

    private static bool IfRangeHolds(HttpContext ctx, string etag)
    {
        var ifRange = ctx.Request.Headers.IfRange;
        return ifRange.Count == 0 || ifRange.ToString() == etag || !ifRange.ToString().StartsWith('"');
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Answered {Status} for {Key} before its first byte: {Error}")]
    private static partial void LogRefused(ILogger logger, int status, string key, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Aborted the response for {Key}: {Error}")]
    private static partial void LogAborted(ILogger logger, string key, string error);
}
