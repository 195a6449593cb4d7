using Microsoft.Extensions.Caching.Memory;

namespace Hoard.Core.Access;

/// <summary>
/// What a client asks to read: something in one repository of one upstream of one protocol (a registry and a git
/// server may share a name, as Gitea's do: their decisions never answer for each other), with one credential (never
/// the credential itself: <see cref="CredentialIds.Of"/>). <see cref="Item"/> names one object (a digest); null asks
/// about the repository as a whole (git, and an OCI object already stored under this repository's own key).
/// </summary>
public readonly record struct AccessScope(string Protocol, string Upstream, string Repository, string CredentialId, string? Item = null)
{
    public AccessScope Repo => this with { Item = null };

    public override string ToString() => $"{Protocol}|{Upstream}|{Repository}|{CredentialId}|{Item}";
}

/// <summary>How an access check ended. <see cref="Status"/> is what the client should see when it is not allowed.</summary>
public readonly record struct AccessDecision(bool Allowed, int Status, string Reason, bool Stale = false)
{
    public static readonly AccessDecision Granted = new(true, 200, "");
}

/// <summary>
/// The one authorisation rule for content upstream gave Hoard only with credentials (OCI, git, LFS): a client is
/// served it only after upstream accepted that client for that repository (or that object). Only a 2xx counts as
/// accepted; 401, 403, 404, 429, 5xx and timeouts all deny. Decisions are remembered briefly (<see cref="FreshFor"/>)
/// in a bounded cache keyed by upstream, repository, credential id and object. When upstream cannot be reached,
/// a client it accepted within <see cref="StaleFor"/> is still served (Hoard keeps serving what it has during an
/// outage); a client never confirmed is refused, and nothing survives a restart.
/// </summary>
public sealed class AccessGate : IDisposable
{
    public static readonly TimeSpan FreshFor = TimeSpan.FromMinutes(1);
    public static readonly TimeSpan StaleFor = TimeSpan.FromHours(12);

    /// <summary>
    /// At most this many decisions are remembered. One entry is a few hundred bytes, so the cache stays under
    /// ~10 MB whatever clients send; when it is full, new decisions are not remembered (the next request asks again).
    /// </summary>
    public const int MaxDecisions = 20_000;

    private readonly MemoryCache _decisions;
    private readonly TimeProvider _time;

    private sealed record Memo(bool Allowed, int Status, long AtMs);

    public AccessGate(TimeProvider time)
    {
        _time = time;
        _decisions = new MemoryCache(new MemoryCacheOptions { SizeLimit = MaxDecisions, CompactionPercentage = 0.25 });
    }

    private long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Upstream accepted this client for this scope less than <see cref="FreshFor"/> ago.</summary>
    public bool IsFresh(AccessScope scope) =>
        _decisions.TryGetValue(scope.ToString(), out Memo? memo) && memo!.Allowed && NowMs - memo.AtMs < FreshFor.TotalMilliseconds;

    /// <summary>Upstream accepted this client for this scope at some point within <see cref="StaleFor"/>.</summary>
    public bool WasGranted(AccessScope scope) => _decisions.TryGetValue(scope.ToString(), out Memo? memo) && memo!.Allowed;

    /// <summary>
    /// Records what upstream answered this client for this scope (a status of 0: it could not be reached, nothing is
    /// recorded). A 2xx for an object also confirms the client for its repository.
    /// </summary>
    public void Record(AccessScope scope, int status)
    {
        if (status is >= 200 and < 300)
        {
            Remember(scope, new Memo(true, status, NowMs));
            if (scope.Item is not null)
            {
                Remember(scope.Repo, new Memo(true, status, NowMs));
            }
        }
        else if (status is 401 or 403)
        {
            // Credentials refused for one object are refused for the repository: one entry, however many objects,
            // and no earlier grant of that object is left to serve the client from during an outage.
            _decisions.Remove(scope.ToString());
            Remember(scope.Repo, new Memo(false, status, NowMs));
        }
        else if (status is >= 400 and < 500 and not 429)
        {
            // A 404 is how some upstreams (GitHub) refuse: whatever was granted before no longer holds.
            _decisions.Remove(scope.ToString());
        }
    }

    // Freshness is judged by the memo's own time (the app's TimeProvider); the cache's expiry only frees memory.
    private void Remember(AccessScope scope, Memo memo) =>
        _decisions.Set(scope.ToString(), memo, new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = memo.Allowed ? StaleFor : FreshFor });

    /// <summary>
    /// Is this client allowed to read this scope? A fresh remembered answer stands; otherwise <paramref name="probe"/>
    /// asks upstream with the client's credentials (its status, or 0 when upstream could not be reached). When
    /// upstream cannot answer (0, 5xx), an earlier grant for <paramref name="scope"/> or for
    /// <paramref name="staleFallback"/> lets the client through, marked stale.
    /// </summary>
    public async ValueTask<AccessDecision> CheckAsync(AccessScope scope, Func<CancellationToken, Task<int>> probe, CancellationToken ct, AccessScope? staleFallback = null)
    {
        var key = scope.ToString();
        if (_decisions.TryGetValue(key, out Memo? memo) && NowMs - memo!.AtMs < FreshFor.TotalMilliseconds)
        {
            return memo.Allowed ? AccessDecision.Granted : Refused(scope, memo.Status);
        }
        if (scope.Item is not null && _decisions.TryGetValue(scope.Repo.ToString(), out Memo? repo) && !repo!.Allowed && NowMs - repo.AtMs < FreshFor.TotalMilliseconds)
        {
            return Refused(scope, repo.Status);
        }
        var status = await probe(ct);
        Record(scope, status);
        if (status is >= 200 and < 300)
        {
            return AccessDecision.Granted;
        }
        if (status is 0 or >= 500)
        {
            if (WasGranted(scope) || (staleFallback is { } fallback && WasGranted(fallback)))
            {
                return new AccessDecision(true, 200, "", Stale: true);
            }
            return new AccessDecision(false, 502,
                $"upstream '{scope.Upstream}' cannot confirm access to {scope.Repository} now ({(status == 0 ? "unreachable" : "answered " + status)}), and never confirmed it for these credentials");
        }
        return Refused(scope, status);
    }

    private static AccessDecision Refused(AccessScope scope, int status) => status switch
    {
        401 or 403 => new AccessDecision(false, status, $"upstream '{scope.Upstream}' refused these credentials for {scope.Repository}: log in to this mirror with credentials the upstream accepts"),
        404 => new AccessDecision(false, 404, $"upstream '{scope.Upstream}' has no {(scope.Item is null ? scope.Repository : scope.Item + " in " + scope.Repository)} for these credentials"),
        429 => new AccessDecision(false, 429, $"upstream '{scope.Upstream}' is rate-limiting these credentials; try again later"),
        _ => new AccessDecision(false, 502, $"upstream '{scope.Upstream}' answered {status} when asked about {scope.Repository}"),
    };

    public int Count => _decisions.Count;

    public void Dispose() => _decisions.Dispose();
}

/// <summary>Short, non-reversible names for credentials, for cache keys and logs: never the credential itself.</summary>
public static class CredentialIds
{
    public const string Anonymous = "anonymous";

    public static string Of(string? credential) =>
        string.IsNullOrEmpty(credential)
            ? Anonymous
            : Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(credential)))[..24];
}
