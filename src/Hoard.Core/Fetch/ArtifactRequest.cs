using Hoard.Core.Metrics;
using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>
/// What a protocol front-end asks the cache for: the key it is known by, where upstream has it,
/// what it must hash to if that is known, and how long it stays fresh (null: immutable, kept until evicted).
/// </summary>
public sealed record ArtifactRequest(string Protocol, string Key, string UpstreamName, Uri UpstreamUrl)
{
    public string? ExpectedSha256 { get; init; }
    public long? ExpectedSize { get; init; }
    public TimeSpan? Ttl { get; init; }
    public bool Decompress { get; init; }
    public string? Accept { get; init; }
    public int Retries { get; init; }

    /// <summary>Extra headers for the upstream request (an LFS action's header).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    /// <summary>Upstream authentication (a registry's token flow with the client's or the configured credentials).</summary>
    public Upstream.IUpstreamAuth? Auth { get; init; }

    /// <summary>
    /// What this client may be given besides what is stored under its own key: see <see cref="ContentAccess"/>.
    /// Keyed unless a front-end says otherwise: failing closed.
    /// </summary>
    public ContentAccess Access { get; init; } = ContentAccess.Keyed;

    /// <summary>
    /// Upstream is asked without any credential (neither the client's nor configured ones): what it gives is public,
    /// and the blob is marked so, for anyone to be given by digest.
    /// </summary>
    public bool Anonymous { get; init; }

    /// <summary>
    /// Produces the bytes locally instead of fetching UpstreamUrl (a git pack from `upload-pack`). The response is
    /// treated as an upstream's: streamed to every waiter, verified, committed only when complete.
    /// </summary>
    public Func<CancellationToken, Task<HttpResponseMessage>>? Producer { get; init; }

    /// <summary>
    /// An immutable artifact fetched from upstream whose digest is unknown until it has arrived (a /files/ download,
    /// a PyPI file whose link carries no hash): a cluster shares it by its key, as it shares a digest's blob. Not
    /// pages that revalidate (a TTL), nor bytes produced here (a git pack: no upstream download to save) unless
    /// <see cref="ShareProduced"/> says a peer's copy is worth asking for first.
    /// </summary>
    public bool SharedByKey => ExpectedSha256 is null && Ttl is null && (Producer is null || ShareProduced) && !Decompress;

    /// <summary>
    /// Produced bytes a peer may already hold under the same key (a clone bundle: its key names the refs it was made
    /// from): asked of the cluster first, produced here only when no node has it.
    /// </summary>
    public bool ShareProduced { get; init; }

    /// <summary>
    /// Single-flight key. Only requests that may share each other's bytes share a download: any two clients upstream
    /// confirmed for the digest, any two public requests for it, or two requests for the same key.
    /// </summary>
    public string FlightKey => ExpectedSha256 is not { } sha ? Key : Access switch
    {
        ContentAccess.Authorised => "sha256:" + sha,
        ContentAccess.Public => "public:sha256:" + sha,
        _ => Key,
    };
}

/// <summary>
/// Which stored or in-flight bytes a request may be given, beyond its own key's. A digest is a name, not a
/// credential: knowing one must never be enough to read what upstream gave someone else.
/// </summary>
public enum ContentAccess
{
    /// <summary>Its own key's entry and download, and public blobs (ones upstream gave without credentials).</summary>
    Keyed,

    /// <summary>Asked of upstream without credentials: public blobs and other public downloads of the digest.</summary>
    Public,

    /// <summary>Upstream just accepted this client for this very object (registry HEAD, LFS batch): any copy of the digest.</summary>
    Authorised,
}

/// <summary>The cache's answer, final as far as the outcome goes: for a miss the upstream headers have arrived.</summary>
public sealed class CacheLookup
{
    public CacheOutcome Outcome { get; private init; }

    /// <summary>Committed content (hit, revalidated, stale). The blob is pinned until <see cref="Release"/>.</summary>
    public BlobRecord? Blob { get; private init; }
    public EntryRecord? Entry { get; private init; }

    /// <summary>The download being streamed (miss, coalesced).</summary>
    public Fill? Fill { get; private init; }

    public int ErrorStatus { get; private init; }
    public string? ErrorMessage { get; private init; }

    public static CacheLookup Stored(CacheOutcome outcome, BlobRecord blob, EntryRecord? entry) => new() { Outcome = outcome, Blob = blob, Entry = entry };

    public static CacheLookup Streaming(CacheOutcome outcome, Fill fill) => new() { Outcome = outcome, Fill = fill };

    public static CacheLookup Bypass() => new() { Outcome = CacheOutcome.Bypass };

    public static CacheLookup Failed(int status, string message) => new() { Outcome = CacheOutcome.Error, ErrorStatus = status, ErrorMessage = message };

    public void Release() => Blob?.Release();
}
