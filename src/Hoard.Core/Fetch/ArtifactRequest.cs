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
    /// Serve stored content only through this key's own entry, never by digest alone: the entry carries the
    /// Content-Type, and a blob cached for one repository must not answer for another without upstream's say.
    /// </summary>
    public bool RequireKeyEntry { get; init; }

    /// <summary>
    /// Produces the bytes locally instead of fetching UpstreamUrl (a git pack from `upload-pack`). The response is
    /// treated as an upstream's: streamed to every waiter, verified, committed only when complete.
    /// </summary>
    public Func<CancellationToken, Task<HttpResponseMessage>>? Producer { get; init; }

    /// <summary>Single-flight key: content named by digest is shared across keys and indexes.</summary>
    public string FlightKey => ExpectedSha256 is { } sha ? "sha256:" + sha : Key;
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
