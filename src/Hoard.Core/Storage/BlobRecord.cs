using System.Globalization;

namespace Hoard.Core.Storage;

/// <summary>
/// What the in-memory index holds for one cache key: the key's hash (its text stays in SQLite), when upstream last
/// confirmed it, and upstream's Last-Modified. A blob is the record of its first key itself (most blobs have exactly
/// one key: no second object); other keys of the blob are <see cref="AliasRecord"/>s.
/// </summary>
public abstract class KeyedRecord
{
    private long _fetchedAtMs;

    internal KeyHash KeyHash;

    /// <summary>When upstream last confirmed this content (fetch or 304), in Unix ms.</summary>
    public long FetchedAtMs
    {
        get => Volatile.Read(ref _fetchedAtMs);
        internal set => Volatile.Write(ref _fetchedAtMs, value);
    }

    /// <summary>
    /// Upstream's Last-Modified in Unix seconds (0: none), kept as a number instead of a 29-character string. Declared
    /// by each record type, not here: a 4-byte field in this class would be padded to 8.
    /// </summary>
    internal abstract uint LastModifiedSeconds { get; set; }
}

/// <summary>
/// A committed blob: immutable content named by its sha256, shared by every key that maps to it.
/// Memory layout (64-bit, per blob with one key; the budget the index is built to):
///   object header 16 | key hash 16 | fetched-at 8 | LRU neighbours 16 | aliases or kept bytes 8 | last access 8 |
///   size 8 | digest 32 | created, last-modified, readers 12 | content type (a number) 2 | flags 2   = 128 bytes,
/// plus one slot in the digest table and one in the key table (8 bytes each at a load of 1/2 to 3/4): ~155 bytes a key.
/// A small blob's bytes kept in memory share a field with its aliases (few blobs have either).
/// </summary>
public sealed class BlobRecord : KeyedRecord
{
    private const int EvictedMark = int.MinValue / 2;
    private const ushort ReferencedFlag = 1, InLruFlag = 2, HasKeyFlag = 4, PublicFlag = 8, DirtyFlag = 16, PinnedFlag = 32;
    private readonly uint _createdUnixSeconds;
    private uint _lastModifiedSeconds;
    private long _lastAccessMs;
    private int _readers;
    private ushort _contentTypeId;
    private ushort _flags;

    internal BlobRecord(Sha256Digest digest, long size, long createdUnixSeconds, long lastAccessMs)
    {
        DigestValue = digest;
        Size = size;
        _createdUnixSeconds = (uint)Math.Clamp(createdUnixSeconds, 0, uint.MaxValue);
        _lastAccessMs = lastAccessMs;
    }

    internal readonly Sha256Digest DigestValue;

    internal override uint LastModifiedSeconds
    {
        get => _lastModifiedSeconds;
        set => _lastModifiedSeconds = value;
    }

    /// <summary>Lower-case hex sha256 (made on each call: the record holds the 32 bytes).</summary>
    public string Digest => DigestValue.ToString();

    /// <summary>The digest in double quotes, an ETag, in one string (made per response: not kept per blob).</summary>
    public string QuotedDigest() => string.Create(66, DigestValue, static (chars, digest) =>
    {
        Span<byte> bytes = stackalloc byte[32];
        digest.WriteTo(bytes);
        chars[0] = chars[65] = '"';
        Convert.TryToHexStringLower(bytes, chars[1..65], out _);
    });

    public long Size { get; }
    public long CreatedUnixSeconds => _createdUnixSeconds;
    public long LastAccessMs => Volatile.Read(ref _lastAccessMs);

    /// <summary>
    /// The Content-Type recorded with the first key that named this blob: what it is served as to a peer node, which
    /// asks by digest alone (an image manifest must keep its media type on every node).
    /// </summary>
    public string? ContentType
    {
        get => ContentTypeNames.Get(Volatile.Read(ref _contentTypeId));
        internal set => Interlocked.CompareExchange(ref _contentTypeId, ContentTypeNames.IdOf(value), (ushort)0);
    }

    /// <summary>Upstream gave these bytes without credentials: anyone may be given them by digest.</summary>
    public bool IsPublic
    {
        get => Has(PublicFlag);
        internal set => SetFlags(PublicFlag, value);
    }

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
        // Only a later time is a use since the blob was queued in the LRU list (it was queued with its access time then).
        if (nowMs > Volatile.Read(ref _lastAccessMs))
        {
            Volatile.Write(ref _lastAccessMs, nowMs);
            SetFlags(ReferencedFlag | DirtyFlag, true);
        }
        return true;
    }

    public void Release() => Interlocked.Decrement(ref _readers);

    internal bool TryMarkEvicted() => Interlocked.CompareExchange(ref _readers, EvictedMark, 0) == 0;

    /// <summary>Undoes <see cref="TryMarkEvicted"/> when the eviction could not be recorded (readers that tried meanwhile failed, harmlessly).</summary>
    internal void UnmarkEvicted() => Interlocked.Add(ref _readers, -EvictedMark);

    /// <summary>Whether its access time changed since the last flush to SQLite; clears the mark.</summary>
    internal bool TakeDirty() => Has(DirtyFlag) && SetFlags(DirtyFlag, false);

    // The LRU list (CacheIndex.Lru): neighbours, and whether the blob was used since it was put at the head.
    internal BlobRecord? LruPrev;
    internal BlobRecord? LruNext;

    internal bool Referenced
    {
        get => Has(ReferencedFlag);
        set => SetFlags(ReferencedFlag, value);
    }

    internal bool InLru
    {
        get => Has(InLruFlag);
        set => SetFlags(InLruFlag, value);
    }

    /// <summary>An operator pinned it (`hoard pin`): kept off the LRU list, so eviction never takes it.</summary>
    public bool Pinned
    {
        get => Has(PinnedFlag);
        internal set => SetFlags(PinnedFlag, value);
    }

    /// <summary>Whether <see cref="KeyedRecord.KeyHash"/> is a key of this blob (its first key; others are aliases).</summary>
    internal bool HasKey
    {
        get => Has(HasKeyFlag);
        set => SetFlags(HasKeyFlag, value);
    }

    // Six flags in two bytes (one bool each would cost a word of padding per blob). Each is written under a different
    // lock or none (a hit sets Referenced and Dirty), so every change is a compare-exchange of the whole set.
    private bool Has(ushort flag) => (Volatile.Read(ref _flags) & flag) != 0;

    /// <summary>Sets or clears flags; true when that changed anything.</summary>
    private bool SetFlags(ushort flags, bool on)
    {
        while (true)
        {
            var current = Volatile.Read(ref _flags);
            var next = (ushort)(on ? current | flags : current & ~flags);
            if (next == current)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref _flags, next, current) == current)
            {
                return true;
            }
        }
    }

    // Two things few blobs have share one field: keys beyond the first (a digest also named by a tag, a file under
    // two names) and the bytes of a small blob kept in memory. It holds a List<AliasRecord>, a byte[], both (Extras)
    // or null, and is swapped whole (compare-exchange), since readers publish bytes while the writer adds aliases.
    private object? _extra;

    private sealed record Extras(List<AliasRecord> Aliases, byte[] Hot);

    /// <summary>Keys beyond the first; changed under the index's write lock only (the list itself is never shared).</summary>
    internal List<AliasRecord>? Aliases => Volatile.Read(ref _extra) switch
    {
        List<AliasRecord> aliases => aliases,
        Extras extras => extras.Aliases,
        _ => null,
    };

    internal void SetAliases(List<AliasRecord>? aliases) => Swap(extra => With(aliases, HotOf(extra)));

    /// <summary>The blob's bytes, for small blobs that have been read once (see HotCacheBytes).</summary>
    internal byte[]? Hot => HotOf(Volatile.Read(ref _extra));

    /// <summary>Publishes the bytes unless another reader already did; false means the caller's copy is surplus.</summary>
    internal bool TrySetHot(byte[] bytes)
    {
        var published = false;
        Swap(extra =>
        {
            published = HotOf(extra) is null;
            return published ? With(AliasesOf(extra), bytes) : extra;
        });
        return published;
    }

    /// <summary>Drops the bytes kept in memory; returns them (for the budget) or null.</summary>
    internal byte[]? TakeHot()
    {
        byte[]? taken = null;
        Swap(extra =>
        {
            taken = HotOf(extra);
            return With(AliasesOf(extra), null);
        });
        return taken;
    }

    private static byte[]? HotOf(object? extra) => extra switch
    {
        byte[] hot => hot,
        Extras extras => extras.Hot,
        _ => null,
    };

    private static List<AliasRecord>? AliasesOf(object? extra) => extra switch
    {
        List<AliasRecord> aliases => aliases,
        Extras extras => extras.Aliases,
        _ => null,
    };

    private static object? With(List<AliasRecord>? aliases, byte[]? hot) => (aliases is { Count: > 0 }, hot) switch
    {
        (true, { } bytes) => new Extras(aliases!, bytes),
        (true, null) => aliases,
        (false, { } bytes) => bytes,
        _ => null,
    };

    private void Swap(Func<object?, object?> change)
    {
        while (true)
        {
            var current = Volatile.Read(ref _extra);
            var next = change(current);
            if (ReferenceEquals(next, current) || ReferenceEquals(Interlocked.CompareExchange(ref _extra, next, current), current))
            {
                return;
            }
        }
    }
}

/// <summary>A blob's second or later key, or a key whose Content-Type differs from the blob's.</summary>
public sealed class AliasRecord : KeyedRecord
{
    internal AliasRecord(KeyHash key, BlobRecord blob, string? contentType)
    {
        KeyHash = key;
        Blob = blob;
        ContentType = contentType;
    }

    public BlobRecord Blob { get; }
    public string? ContentType { get; }

    internal override uint LastModifiedSeconds { get; set; }
}

/// <summary>
/// A cache key's current mapping to a blob, with what upstream said about it: a small view made per lookup (24 bytes,
/// gone with the request), so the index itself keeps no object per key beyond its records.
/// </summary>
public sealed class EntryRecord(KeyedRecord record)
{
    internal KeyedRecord Record => record;

    public BlobRecord Blob => record as BlobRecord ?? ((AliasRecord)record).Blob;

    public string? ContentType => record is AliasRecord alias ? alias.ContentType : ((BlobRecord)record).ContentType;

    /// <summary>When upstream last confirmed this content (fetch or 304), in Unix ms.</summary>
    public long FetchedAtMs => record.FetchedAtMs;

    /// <summary>Upstream's Last-Modified, as an HTTP date; null when upstream sent none.</summary>
    public string? UpstreamLastModified => record.LastModifiedSeconds == 0
        ? null
        : DateTimeOffset.FromUnixTimeSeconds(record.LastModifiedSeconds).ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>
/// Content-Types by a two-byte number, for every index in the process: a blob keeps the number, not a reference.
/// Bounded: past 65,535 distinct types (each index remembers at most 4,096 in SQLite) a new one is not kept.
/// </summary>
internal static class ContentTypeNames
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, ushort> Ids = new(StringComparer.Ordinal);
    private static string?[] _names = new string?[64];

    public static string? Get(ushort id) => Volatile.Read(ref _names)[id];

    public static ushort IdOf(string? name)
    {
        if (name is null)
        {
            return 0;
        }
        lock (Gate)
        {
            if (Ids.TryGetValue(name, out var id))
            {
                return id;
            }
            var next = Ids.Count + 1;
            if (next > ushort.MaxValue)
            {
                return 0;
            }
            var names = _names;
            if (next == names.Length)
            {
                Array.Resize(ref names, Math.Min(names.Length * 2, ushort.MaxValue + 1));
            }
            // The name is in the array before the array and the number are published: a reader with the number finds it.
            names[next] = name;
            Volatile.Write(ref _names, names);
            Ids[name] = (ushort)next;
            return (ushort)next;
        }
    }
}
