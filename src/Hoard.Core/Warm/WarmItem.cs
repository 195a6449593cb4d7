namespace Hoard.Core.Warm;

/// <summary>
/// One warm item's running tally (a package version, an image, a repository), updated by the warmer as its artifacts
/// come back and read by the progress writer. Artifacts are counted once each: fetched (brought in now, from upstream
/// or a peer), cached (already held) or failed.
/// </summary>
public sealed class WarmItem(int id, WarmKind kind, string name)
{
    private long _bytes;
    private long _total;
    private long _fetchedBytes;
    private int _fetched;
    private int _cached;
    private int _failed;
    private string? _error;

    public int Id { get; } = id;
    public WarmKind Kind { get; } = kind;
    public string Name { get; } = name;
    public long Bytes => Interlocked.Read(ref _bytes);
    public bool Failed => Volatile.Read(ref _failed) > 0;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _planned = new(StringComparer.Ordinal);

    /// <summary>
    /// For a pin: whether blobs of these digests and sizes (what the item is about to fetch, as upstream described
    /// them) would still fit the pins' allowance; null when there is no such limit (a plain warm). The reason when not.
    /// </summary>
    public Func<IReadOnlyDictionary<string, long>, string?>? RoomCheck { get; set; }

    /// <summary>
    /// What the item is about to fetch (sha256 when known, and size): adds to the total the progress is drawn
    /// against, and, for a pin, refuses before any byte is fetched when it cannot fit (false: the item failed).
    /// </summary>
    public bool Plan(IEnumerable<(string? Sha256, long Size)> artifacts)
    {
        foreach (var (sha, size) in artifacts)
        {
            Interlocked.Add(ref _total, size);
            if (sha is { Length: 64 } && sha.All(char.IsAsciiHexDigit) && size > 0)
            {
                _planned[sha.ToLowerInvariant()] = size;
            }
        }
        if (RoomCheck?.Invoke(_planned) is { } refusal)
        {
            Fail("not pinned: " + refusal);
            return false;
        }
        return true;
    }

    /// <summary>Bytes of an artifact as they arrive.</summary>
    public void Received(long bytes) => Interlocked.Add(ref _bytes, bytes);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _digests = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentQueue<(string Path, string? Accept)> _paths = new();

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _mirrors = new(StringComparer.Ordinal);

    /// <summary>Git mirrors this item made or refreshed (by their id in the mirror space): a pin keeps them too.</summary>
    public IReadOnlyCollection<string> Mirrors => _mirrors.Keys.ToList();

    public void AddMirror(string id) => _mirrors.TryAdd(id, true);

    /// <summary>The stored digests of everything this item warmed (what a pin keeps).</summary>
    public IReadOnlyCollection<string> Digests => _digests.Keys.ToList();

    /// <summary>Notes an answer's path (a page, a metadata file, an artifact) for a pin, without counting it.</summary>
    public void Keep(SelfAnswer answer, string path, string? accept = null)
    {
        if (answer.Ok)
        {
            _paths.Enqueue((path, accept));
        }
    }

    /// <summary>
    /// For a pin: the digest each warmed path is stored as now, asked again until the answer is a hit (a download's
    /// last byte reaches its client before its commit, and an answer's ETag is no proof it was stored).
    /// </summary>
    public async Task<bool> NameDigestsAsync(SelfClient self, CancellationToken ct)
    {
        while (_paths.TryDequeue(out var kept))
        {
            if (await self.StoredDigestAsync(kept.Path, kept.Accept, ct) is not { } digest)
            {
                Fail($"{kept.Path}: not stored after it was fetched (is --max-size large enough?)");
                return false;
            }
            _digests.TryAdd(digest, true);
        }
        return true;
    }

    /// <summary>The pin this item became, or why it was refused (set by the warm after the item's artifacts are in).</summary>
    public bool Pinned { get; set; }

    /// <summary>An artifact's answer: counted as fetched, cached or failed (and noted for a pin).</summary>
    public void Count(SelfAnswer answer, string what, string path, string? accept = null)
    {
        Keep(answer, path, accept);
        if (!answer.Ok)
        {
            Fail($"{what}: {answer.Error}");
        }
        else if (answer.WasCached)
        {
            Interlocked.Increment(ref _cached);
            if (answer.Outcome == "HIT")
            {
                Interlocked.Add(ref _bytes, answer.Bytes); // a hit's body is not read: its size is all there is to count
            }
        }
        else
        {
            Interlocked.Increment(ref _fetched);
            Interlocked.Add(ref _fetchedBytes, answer.Bytes);
        }
    }

    /// <summary>Something of this item could not be warmed; the first reason is the one shown.</summary>
    public void Fail(string error)
    {
        Interlocked.Increment(ref _failed);
        Interlocked.CompareExchange(ref _error, error, null);
    }

    public WarmEvent Started() => new("item") { Id = Id, Kind = Kind, Name = Name };

    public WarmEvent Progress() => new("progress") { Id = Id, Bytes = Bytes, Total = NullIfZero(Interlocked.Read(ref _total)) };

    public WarmEvent Done() => new("done")
    {
        Id = Id,
        Kind = Kind,
        Name = Name,
        Bytes = Bytes,
        Total = NullIfZero(Interlocked.Read(ref _total)),
        Fetched = _fetched,
        Cached = _cached,
        Failed = _failed,
        FetchedBytes = Interlocked.Read(ref _fetchedBytes),
        Error = _error,
        Pinned = Pinned ? true : null,
    };

    private static long? NullIfZero(long n) => n == 0 ? null : n;
}
