using System.Net;
using Hoard.Core.Fetch;

namespace Hoard.Core.Cluster;

/// <summary>
/// What this node asks of the others: who has an artifact, the cluster-wide download lock, streaming from a peer and
/// resuming from another one, and what it tells Redis when its own download ends.
///
/// An artifact is shared under a subject: its digest when the request names one, else <c>key:{KeyId}</c>
/// (<see cref="ArtifactRequest.SharedByKey"/>). Locks and fetcher records are kept per subject; holders per digest.
/// For a key, a node first asks for the digest the cluster published for it (a node committed it already) and streams
/// that blob from a holder, verified against the digest; otherwise it streams from the node downloading the key.
/// </summary>
public sealed partial class ClusterNode
{
    private const string BlobPath = "/_hoard/peer/blob/";
    private const string KeyPath = "/_hoard/peer/key/";

    public async Task<PeerStream?> TryPeersAsync(ArtifactRequest request, CancellationToken ct)
    {
        var subject = request.ExpectedSha256 ?? ClusterRecords.KeySubject(request.Key);
        if (_locks.ContainsKey(subject))
        {
            // This node is downloading it already, for requests that may not share this one's bytes (another access
            // class): this one goes upstream too, without waiting on a lock that is its own node's.
            return null;
        }
        for (var attempt = 0; attempt < 40; attempt++)
        {
            // 1. Nodes that hold it, then nodes that are streaming it themselves, then the lock holder (a tree, not
            //    a star: a node at its fan-out limit answers 503 and the next one is asked).
            var (answer, alone) = await AskPeersAsync(request, request.ExpectedSha256, 0, null, ct);
            if (answer is not null || alone)
            {
                return answer; // alone: upstream
            }
            // 2. Nobody has it: take the cluster-wide lock and go upstream; if another node holds the lock, it will
            //    be asked on the next round (and released here if it turns out to be gone).
            if (await Redis(db => _records.TakeLockAsync(db, subject, Id)))
            {
                await Redis(db => _records.AddFetcherAsync(db, subject, Id));
                var timer = _time.CreateTimer(_ => _ = ExtendLockAsync(subject), null, LockTtl / 3, LockTtl / 3);
                if (!_locks.TryAdd(subject, (timer, request)))
                {
                    timer.Dispose();
                }
                return null;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(150), _time, ct);
        }
        return null;
    }

    /// <summary>
    /// One round of asking: the digest's holders, fetchers and lock holder (the request's digest, or the one
    /// published for its key), then for a key the nodes fetching it and its lock holder. Alone: Redis is unreachable.
    /// </summary>
    private async Task<(PeerStream? Answer, bool Alone)> AskPeersAsync(ArtifactRequest request, string? digest, long offset, Uri? skip, CancellationToken ct)
    {
        var byKey = request.ExpectedSha256 is null;
        if (digest is null && byKey)
        {
            digest = await Redis(db => ClusterRecords.KeyDigestAsync(db, ClusterRecords.KeyId(request.Key)));
        }
        if (digest is not null)
        {
            if (await CandidatesAsync(digest) is not { } candidates)
            {
                return (null, true);
            }
            if (await FirstAnswerAsync(candidates, request, digest, BlobPath + digest, offset, skip, ct) is { } response)
            {
                await Redis(db => _records.AddFetcherAsync(db, digest, Id));
                return (new PeerStream(response, digest), false);
            }
            if (!byKey)
            {
                return (null, false);
            }
        }
        // A key nobody holds (or whose holders are gone, or refused): the node downloading it, or one streaming it.
        var subject = ClusterRecords.KeySubject(request.Key);
        if (await CandidatesAsync(subject) is not { } keyed)
        {
            return (null, true);
        }
        if (await FirstAnswerAsync(keyed, request, subject, KeyPath + subject["key:".Length..], offset, skip, ct) is { } streamed)
        {
            await Redis(db => _records.AddFetcherAsync(db, subject, Id));
            return (new PeerStream(streamed, null), false);
        }
        return (null, false);
    }

    /// <summary>Keeps the lock (and this node's fetcher record) while the download runs; stops if the lock is no longer ours.</summary>
    private async Task ExtendLockAsync(string subject)
    {
        var extended = await Redis(async db =>
        {
            await _records.AddFetcherAsync(db, subject, Id);
            return await _records.ExtendLockAsync(db, subject, Id);
        });
        if (!extended && Volatile.Read(ref _redisDown) == 0 && _locks.TryRemove(subject, out var held))
        {
            held.Timer.Dispose();
            LogLockLost(_logger, subject);
        }
    }

    public async Task<PeerStream?> ResumeAsync(ArtifactRequest request, string? digest, long offset, Uri? failed, CancellationToken ct)
    {
        var (answer, _) = await AskPeersAsync(request, digest, offset, failed, ct);
        if (answer is not null)
        {
            _metrics.PeerResumed();
        }
        return answer;
    }

    /// <summary>Asks the candidates in turn; the first that streams it wins, the unreachable ones are forgotten.</summary>
    private async Task<HttpResponseMessage?> FirstAnswerAsync(List<string> candidates, ArtifactRequest request, string subject, string path, long offset, Uri? skip, CancellationToken ct)
    {
        foreach (var node in candidates)
        {
            var (response, dead) = await FromPeerAsync(node, request, path, offset, skip, ct);
            if (response is not null)
            {
                return response;
            }
            if (dead)
            {
                await ForgetAsync(node, subject);
            }
        }
        return null;
    }

    /// <summary>Other nodes that hold it, fetch it or hold its lock, in that order; null when Redis is unreachable.</summary>
    private async Task<List<string>?> CandidatesAsync(string subject)
    {
        // Only blobs are held; a key's content is held as its digest's blob.
        var holders = ClusterRecords.IsKeySubject(subject) ? [] : await Redis(db => _records.LiveAsync(db, ClusterRecords.Holders(subject))) ?? [];
        var fetching = await Redis(db => _records.LiveAsync(db, ClusterRecords.Fetchers(subject))) ?? [];
        var locker = await Redis(db => _records.LockOwnerAsync(db, subject));
        if (_redis is null || Volatile.Read(ref _redisDown) == 1)
        {
            return null;
        }
        return [.. holders.Concat(fetching).Append(locker).OfType<string>().Where(n => n != Id).Distinct()];
    }

    /// <summary>
    /// A node that cannot be reached (or whose heartbeat expired) serves nothing to anyone: drop it from the subject's
    /// holders and fetchers (a node that comes back announces its store again) and, if the subject's lock is still
    /// that node's, release it, so a live node takes over now instead of after the lock expires.
    /// </summary>
    private async Task ForgetAsync(string node, string subject)
    {
        await Redis(db => _records.RemoveFetcherAsync(db, subject, node));
        await Redis(db => _records.RemoveHolderAsync(db, subject, node));
        if (await Redis(db => _records.ReleaseLockAsync(db, subject, node)))
        {
            _metrics.LockTakenOver();
            LogLockReleased(_logger, node, subject);
        }
    }

    /// <summary>
    /// What a peer request is for, as signed and sent in <see cref="PeerSignature.ForHeader"/>. A request known only by
    /// its key asks as that key whatever its access: locally it is given its own key's entry and public blobs, and
    /// "key K" gives exactly that.
    /// </summary>
    internal static string Purpose(ArtifactRequest request) => request.ExpectedSha256 is null ? KeyPurpose(request.Key) : request.Access switch
    {
        ContentAccess.Authorised => "authorised",
        ContentAccess.Public => "public",
        _ => KeyPurpose(request.Key),
    };

    private static string KeyPurpose(string key) => "key " + Uri.EscapeDataString(key);

    /// <summary>Asks one node for the blob or key at <paramref name="path"/> from <paramref name="offset"/>. Dead: it could not be reached at all.</summary>
    private async Task<(HttpResponseMessage? Response, bool Dead)> FromPeerAsync(string node, ArtifactRequest artifact, string path, long offset, Uri? skip, CancellationToken ct)
    {
        var url = (await Redis(db => db.StringGetAsync($"hoard:node:{node}"))).ToString();
        if (string.IsNullOrEmpty(url) || !Uri.TryCreate(url + "/", UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
        {
            return (null, true); // heartbeat expired (or nonsense in Redis): the node is gone
        }
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
                // Counted per peer as the body is read, so the dashboard's traffic is what came, not what was promised.
                response.Content = new CountedContent(response.Content, n => CountTraffic(node, 0, n));
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

    public void Finished(ArtifactRequest request, string? digest, bool committed)
    {
        var subject = request.ExpectedSha256 ?? ClusterRecords.KeySubject(request.Key);
        // Only the download that took the lock releases it (another download of the same subject on this node may end first).
        var owned = _locks.TryGetValue(subject, out var held) && ReferenceEquals(held.Owner, request)
            && _locks.TryRemove(new KeyValuePair<string, (ITimer, ArtifactRequest)>(subject, held));
        if (owned)
        {
            held.Timer.Dispose();
        }
        if (committed && digest is not null && request.ExpectedSha256 is null)
        {
            _keyDigests[request.Key] = digest;
        }
        _ = FinishAsync(request, subject, digest, committed, owned);
    }

    /// <summary>
    /// Announces first and releases the lock after: a node that finds the lock free must find the blob held (and a
    /// key's digest published), or it would go upstream for it again.
    /// </summary>
    private async Task FinishAsync(ArtifactRequest request, string subject, string? digest, bool committed, bool owned)
    {
        if (committed && digest is not null)
        {
            await Redis(db => _records.AddHolderAsync(db, digest, Id));
            if (request.ExpectedSha256 is null)
            {
                await Redis(db => _records.PublishKeyDigestAsync(db, ClusterRecords.KeyId(request.Key), digest));
            }
        }
        if (digest is not null)
        {
            await Redis(db => _records.RemoveFetcherAsync(db, digest, Id));
        }
        if (subject != digest)
        {
            await Redis(db => _records.RemoveFetcherAsync(db, subject, Id));
        }
        if (owned)
        {
            await Redis(db => _records.ReleaseLockAsync(db, subject, Id));
        }
    }
}
