using System.Net;
using Hoard.Core.Fetch;

namespace Hoard.Core.Cluster;

/// <summary>
/// What this node asks of the others: who has a blob, the cluster-wide download lock, streaming from a peer and
/// resuming from another one, and what it tells Redis when its own download ends.
/// </summary>
public sealed partial class ClusterNode
{
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
}
