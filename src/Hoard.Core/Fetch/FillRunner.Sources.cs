using System.Net;
using Hoard.Core.Upstream;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Fetch;

/// <summary>
/// Where a download's bytes come from: a peer node that holds or is fetching the blob (cluster mode), a producer
/// (bytes made here, a git pack or bundle), or upstream; and where the rest comes from when a body breaks off.
/// </summary>
internal sealed partial class FillRunner
{
    private const int MaxResumes = 3;

    /// <summary>
    /// Whether the cluster is asked first: for a digest fetched from upstream, or an immutable key a node may hold
    /// (<see cref="ArtifactRequest.SharedByKey"/>); never for a revalidation.
    /// </summary>
    private bool AsksPeers(Fill fill) =>
        host.Cluster is not null && fill.Stale is null
        && ((fill.Request.ExpectedSha256 is not null && fill.Request.Producer is null) || fill.Request.SharedByKey);

    /// <summary>Opens the body: a peer's when one has it, else the producer's or upstream's. Upstream errors throw.</summary>
    private async Task<HttpResponseMessage> OpenAsync(Fill fill, UpstreamCall call, bool askPeers, CancellationToken ct)
    {
        var request = fill.Request;
        if (askPeers && host.Cluster is { } cluster)
        {
            // Another node may hold it or be fetching it: stream from there, verified here as always (against
            // the digest the cluster published for the key, when a key's blob comes from a node holding it).
            var peer = await cluster.TryPeersAsync(request, ct);
            fill.FromPeer = peer is not null;
            fill.ExpectedSha256 ??= peer?.Digest;
            if (peer is not null)
            {
                return peer.Response;
            }
        }
        return request.Producer is { } produce ? await produce(ct) : await upstream.SendAsync(call, ct);
    }

    /// <summary>
    /// The rest of a body that broke off after <paramref name="written"/> bytes: from another peer when a peer's
    /// went away, else from upstream with a Range request (after a back-off, at most <see cref="MaxResumes"/> times
    /// in all). Null when nothing can resume it; with the count of upstream resumes so far.
    /// </summary>
    private async Task<(HttpResponseMessage? Response, bool FromAnotherPeer, int Resumes)> ResumeAsync(
        Fill fill, UpstreamCall call, long written, Uri? brokenFrom, string? validator, long? length, int resumes, CancellationToken ct)
    {
        var request = fill.Request;
        if (fill.FromPeer && host.Cluster is { } cluster && written > 0
            && await cluster.ResumeAsync(request, fill.ExpectedSha256, written, brokenFrom, ct) is { } peer)
        {
            fill.ExpectedSha256 ??= peer.Digest;
            return (peer.Response, true, resumes);
        }
        // Only a body of known length from a real upstream can be resumed (not a git pack being produced).
        while (resumes < MaxResumes && written > 0 && !request.Decompress && length is not null && request.Producer is null)
        {
            // Back off before each try: a restarting upstream needs a moment.
            await Task.Delay(TimeSpan.FromMilliseconds(500 << resumes), time, ct);
            resumes++;
            if (await TryResumeAsync(call, written, validator, length, ct) is { } resumed)
            {
                return (resumed, false, resumes);
            }
        }
        return (null, false, resumes);
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
            response = await upstream.SendAsync(call with { RangeStart = written, IfRange = validator, IfNoneMatch = null, IfModifiedSince = null, Retries = 0 }, ct);
        }
        catch (UpstreamException)
        {
            return null;
        }
        var range = response.Content.Headers.ContentRange;
        if (response.StatusCode == HttpStatusCode.PartialContent && range?.From == written && (range.Length is null || range.Length == length))
        {
            LogResumed(logger, call.UpstreamName, UpstreamClient.Redact(call.Url), written);
            return response;
        }
        response.Dispose();
        return null;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Upstream {Upstream}: resumed {Url} at byte {Offset}")]
    private static partial void LogResumed(ILogger logger, string upstream, string url, long offset);
}
