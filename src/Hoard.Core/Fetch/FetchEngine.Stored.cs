using System.Diagnostics.CodeAnalysis;
using Hoard.Core.Metrics;
using Hoard.Core.Storage;
using Microsoft.Win32.SafeHandles;

namespace Hoard.Core.Fetch;

/// <summary>What is stored: read-only views of keys, a stored key's content as a hit, and reading a pinned blob.</summary>
public sealed partial class FetchEngine
{
    /// <summary>Whether <paramref name="s"/> names a blob as the engine does: a sha256 in 64 lower-case hex digits.</summary>
    public static bool IsDigest(string s) => ContentStore.IsDigest(s);

    /// <summary>
    /// What <paramref name="key"/> stores, as the index records it: no pin, no freshness check, no upstream request
    /// (a blob whose file turns out to be missing is dropped when it is read).
    /// </summary>
    public bool TryGetStored(string key, out StoredEntry stored)
    {
        if (_index.TryGetEntry(key, out var entry))
        {
            stored = new StoredEntry(entry.Blob.Digest, entry.Blob.Size, entry.ContentType, entry.FetchedAtMs);
            return true;
        }
        stored = default;
        return false;
    }

    /// <summary>
    /// The content stored under <paramref name="key"/>, pinned, as a hit, without asking upstream (immutable content
    /// only: no freshness check; a PyPI file found by its key before its page is read). The caller releases it
    /// (<see cref="Http.ArtifactResponder.ServeHitAsync"/> does).
    /// </summary>
    public bool TryGetHit(string key, [NotNullWhen(true)] out CacheLookup? hit)
    {
        if (_index.TryGetEntry(key, out var entry) && _index.HasFile(entry.Blob, _store) && entry.Blob.TryAcquire(NowMs))
        {
            hit = CacheLookup.Stored(CacheOutcome.Hit, entry.Blob, entry);
            return true;
        }
        hit = null;
        return false;
    }

    /// <summary>The digests of every stored blob (a cluster node announces them).</summary>
    public IEnumerable<string> StoredDigests() => _index.Blobs.Select(b => b.Digest);

    /// <summary>
    /// A small stored blob's bytes from memory (read from disk once, then kept while the hot cache's budget lasts), or
    /// null: read it with <see cref="OpenBlob"/>. The caller holds the blob's pin.
    /// </summary>
    public byte[]? HotBytes(BlobRecord blob) => blob.Hot ?? LoadHot(blob);

    /// <summary>Opens a stored blob's file for reading at any offset. The caller holds the blob's pin.</summary>
    public SafeFileHandle OpenBlob(BlobRecord blob) =>
        File.OpenHandle(_store.BlobPath(blob.Digest), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);

    private byte[]? LoadHot(BlobRecord blob)
    {
        if (blob.Size > _options.HotBlobMaxBytes || !_index.TryReserveHot(blob.Size, _options.HotCacheBytes))
        {
            return null;
        }
        var bytes = File.ReadAllBytes(_store.BlobPath(blob.Digest));
        if (bytes.Length != blob.Size)
        {
            _index.TryReserveHot(-blob.Size, long.MaxValue);
            return null;
        }
        if (!blob.TrySetHot(bytes))
        {
            _index.TryReserveHot(-blob.Size, long.MaxValue);
        }
        return blob.Hot;
    }

    /// <summary>Downloads running now, with their progress (the dashboard and `hoard status`).</summary>
    public List<DownloadProgress> Downloads() => _flights.Values
        .Select(f => new DownloadProgress(f.Request.Key, f.Request.Protocol, f.Request.UpstreamName, f.Written,
            f.Started.IsCompletedSuccessfully ? f.Started.Result.Length : null, f.Clients, f.Elapsed.TotalSeconds, f.FromPeer))
        .OrderByDescending(d => d.Bytes).ToList();

    /// <summary>The last answer and when it was read: one reference, so a reader never sees half of an update.</summary>
    private sealed record TopArtifactsRead(long AtMs, StoredArtifacts Artifacts);

    private TopArtifactsRead? _topArtifacts;

    /// <summary>
    /// Requests per key, for the most requested artifacts: a few hundred slots whatever the traffic (see
    /// <see cref="RequestSketch"/>); enough to rank a top ten, with room for keys on their way up.
    /// </summary>
    private readonly RequestSketch _requested = new(256);

    /// <summary>A client was served <paramref name="key"/> (counted for <see cref="TopArtifacts"/>'s most requested).</summary>
    public void Requested(string key) => _requested.Record(key, NowMs);

    /// <summary>
    /// The most requested (counted in memory, current), the largest and the most recently used stored artifacts, by
    /// key. Keys are in SQLite only: the largest and most recent are read there (on a connection of its own, not
    /// blocking commits), at most every 30 seconds.
    /// </summary>
    public StoredArtifacts TopArtifacts(int count)
    {
        var now = NowMs;
        var requested = MostRequested(count);
        if (Volatile.Read(ref _topArtifacts) is { } cached && now - cached.AtMs < 30_000)
        {
            return cached.Artifacts with { MostRequested = requested };
        }
        var (largest, recent) = _index.TopKeys(count);
        var artifacts = new StoredArtifacts(
            requested,
            largest.Select(k => new StoredArtifact(k.Key, k.Size, k.LastAccessMs)).ToList(),
            recent.Select(k => new StoredArtifact(k.Key, k.Size, k.LastAccessMs)).ToList());
        Volatile.Write(ref _topArtifacts, new TopArtifactsRead(now, artifacts));
        return artifacts;
    }

    /// <summary>The sketch's top keys, with the size each stores now (none: not stored, e.g. evicted or passed through).</summary>
    private List<RequestedArtifact> MostRequested(int count) => _requested.Top(count)
        .Select(k => new RequestedArtifact(k.Key, k.Requests, TryGetStored(k.Key, out var stored) ? stored.Size : null, k.LastMs))
        .ToList();
}

/// <summary>A download running now: how far it is, how many clients it serves.</summary>
public sealed record DownloadProgress(string Key, string Protocol, string Upstream, long Bytes, long? Length, int Clients, double Seconds, bool FromPeer);

public sealed record StoredArtifact(string Key, long Size, long LastUsedMs);

public sealed record StoredArtifacts(List<RequestedArtifact> MostRequested, List<StoredArtifact> Largest, List<StoredArtifact> RecentlyUsed);

/// <summary>A key clients asked for: requests it certainly had since start (<see cref="RequestSketch"/>), its size if stored, its last request.</summary>
public sealed record RequestedArtifact(string Key, long Requests, long? Size, long LastUsedMs);
