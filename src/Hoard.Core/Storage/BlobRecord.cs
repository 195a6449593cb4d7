namespace Hoard.Core.Storage;

/// <summary>A committed blob: immutable content named by its sha256. Shared by every key that maps to it.</summary>
public sealed class BlobRecord(string digest, long size, long createdUnixSeconds, long lastAccessMs)
{
    private const int EvictedMark = int.MinValue / 2;
    private int _readers;
    private long _lastAccessMs = lastAccessMs;

    /// <summary>Lower-case hex sha256.</summary>
    public string Digest { get; } = digest;
    public long Size { get; } = size;
    public long CreatedUnixSeconds { get; } = createdUnixSeconds;
    public long LastAccessMs => Volatile.Read(ref _lastAccessMs);
    internal long PersistedAccessMs { get; set; } = lastAccessMs;

    /// <summary>The blob's bytes, for small blobs that have been read once (see HotCacheBytes).</summary>
    internal byte[]? Hot
    {
        get => Volatile.Read(ref _hot);
        set => Volatile.Write(ref _hot, value);
    }

    private byte[]? _hot;

    /// <summary>Publishes the bytes unless another reader already did; false means the caller's copy is surplus.</summary>
    internal bool TrySetHot(byte[] bytes) => Interlocked.CompareExchange(ref _hot, bytes, null) is null;

    /// <summary>
    /// The Content-Type recorded with the first key that named this blob: what it is served as to a peer node, which
    /// asks by digest alone (an image manifest must keep its media type on every node).
    /// </summary>
    public string? ContentType
    {
        get => Volatile.Read(ref _contentType);
        internal set => Interlocked.CompareExchange(ref _contentType, value, null);
    }

    private string? _contentType;

    /// <summary>Header values computed once per blob rather than once per response.</summary>
    internal string? ETagHeader { get; set; }
    internal string? LastModifiedHeader { get; set; }

    /// <summary>Upstream gave these bytes without credentials: anyone may be given them by digest.</summary>
    public bool IsPublic
    {
        get => Volatile.Read(ref _isPublic);
        internal set => Volatile.Write(ref _isPublic, value);
    }

    private bool _isPublic;

    public bool IsEvicted => Volatile.Read(ref _readers) < 0;

    /// <summary>
    /// Pins the blob against eviction for one reader. Fails once the blob has been evicted.
    /// The evictor swaps 0 readers for a large negative mark, so a reader and the evictor can never both win.
    /// </summary>
    public bool TryAcquire(long nowMs)
    {
        if (Interlocked.Increment(ref _readers) <= 0)
        {
            Interlocked.Decrement(ref _readers);
            return false;
        }
        Volatile.Write(ref _lastAccessMs, nowMs);
        return true;
    }

    public void Release() => Interlocked.Decrement(ref _readers);

    internal bool TryMarkEvicted() => Interlocked.CompareExchange(ref _readers, EvictedMark, 0) == 0;

    // The LRU list (CacheIndex.Lru): neighbours, and the access time the blob had when it was put at the head.
    internal BlobRecord? LruPrev;
    internal BlobRecord? LruNext;
    internal long QueuedAccessMs;
    internal bool InLru;

    // The keys that map to this blob: evicting it removes exactly these, no scan of all keys. Usually one, held
    // inline (a list per blob would cost ~64 bytes per key); aliases, rare, in a list. Changed under the index's
    // write lock only.
    private string? _key;
    private List<string>? _moreKeys;

    internal void AddKey(string key)
    {
        if (_key == key || (_moreKeys?.Contains(key) ?? false))
        {
            return;
        }
        if (_key is null)
        {
            _key = key;
        }
        else
        {
            (_moreKeys ??= []).Add(key);
        }
    }

    internal void RemoveKey(string key)
    {
        if (_key == key)
        {
            _key = null;
            if (_moreKeys is { Count: > 0 } more)
            {
                _key = more[^1];
                more.RemoveAt(more.Count - 1);
            }
        }
        else
        {
            _moreKeys?.Remove(key);
        }
    }

    /// <summary>The keys, detached from the blob (which then has none).</summary>
    internal List<string> TakeKeys()
    {
        List<string> keys = _key is null ? [] : [_key];
        keys.AddRange(_moreKeys ?? []);
        (_key, _moreKeys) = (null, null);
        return keys;
    }
}

/// <summary>A cache key's current mapping to a blob, with what upstream said about it.</summary>
public sealed class EntryRecord(string key, BlobRecord blob, string? contentType, string? upstreamETag, string? upstreamLastModified, long fetchedAtMs)
{
    private long _fetchedAtMs = fetchedAtMs;

    public string Key { get; } = key;
    public BlobRecord Blob { get; } = blob;
    public string? ContentType { get; } = contentType;
    public string? UpstreamETag { get; } = upstreamETag;
    public string? UpstreamLastModified { get; } = upstreamLastModified;

    /// <summary>When upstream last confirmed this content (fetch or 304), in Unix ms.</summary>
    public long FetchedAtMs
    {
        get => Volatile.Read(ref _fetchedAtMs);
        internal set => Volatile.Write(ref _fetchedAtMs, value);
    }
}
