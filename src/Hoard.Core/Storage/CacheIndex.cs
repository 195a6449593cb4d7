using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Storage;

/// <summary>
/// The embedded index: which key maps to which blob, blob sizes and access times. SQLite is the durable copy;
/// reads are served from memory, loaded at start, so a cache hit never touches the database. Every write is one
/// transaction on one connection under one lock (SQLite has one writer anyway). Access times are flushed in batches.
///
/// In memory a key is its 128-bit hash (<see cref="KeyHash"/>) and a digest its 32 bytes; a blob is the record of its
/// first key (<see cref="BlobRecord"/> has the byte budget); two open-addressing tables find them (<see cref="RecordTable{TKey,TRecord}"/>).
/// What only a revalidation or a purge needs (key text, upstream ETag) stays in SQLite.
/// </summary>
public sealed partial class CacheIndex : IDisposable
{
    private readonly RecordTable<Sha256Digest, BlobRecord> _blobs = new(b => b.DigestValue);
    private readonly RecordTable<KeyHash, KeyedRecord> _keys = new(r => r.KeyHash);
    private readonly SqliteConnection _db;
    private readonly Lock _writeLock = new();
    private readonly ILogger _logger;
    private long _totalBytes;
    private long _hotBytes;

    /// <remarks>
    /// synchronous=NORMAL with WAL: a transaction is durable once written to the WAL, which survives a crash of the
    /// process (kill -9, OOM) whole; only a power loss or kernel crash can lose the last transactions before the next
    /// checkpoint's fsync. What that loses is safe for a cache: a blob whose row is lost is an unindexed file,
    /// deleted by the start-up reconciliation and fetched again; a lost eviction leaves a row whose file is gone,
    /// dropped the same way; a lost access time only changes eviction order. FULL would fsync on every commit and
    /// touch, on the request's path, to protect against nothing worse than a re-download.
    /// </remarks>
    public CacheIndex(string dataDir, ILogger logger)
    {
        _logger = logger;
        _db = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(dataDir, "index.db"),
            Pooling = false,
        }.ToString());
        _db.Open();
        try
        {
            Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;");
            OpenSchema();
            Load();
            OpenPins();
        }
        catch
        {
            _db.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One lock per digest (striped): held across a commit (file renamed in, then rows) and an eviction (rows out,
    /// then file deleted) of that digest, so the two never interleave. Striped, not per digest: 256 locks for any
    /// number of blobs; two digests sharing a stripe only wait for each other's few milliseconds.
    /// </summary>
    private readonly Lock[] _digestLocks = Enumerable.Range(0, 256).Select(_ => new Lock()).ToArray();

    public Lock LockFor(string digest) => _digestLocks[(HexValue(digest[0]) << 4) | HexValue(digest[1])];

    internal Lock LockFor(BlobRecord blob) => _digestLocks[blob.DigestValue.FirstByte];

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;

    /// <summary>Tests make the next commits fail as a full disk would (SQLITE_FULL), at exactly this step.</summary>
    internal Func<Exception?>? CommitFault { get; set; }

    public long TotalBytes => Interlocked.Read(ref _totalBytes);
    public int BlobCount => _blobs.Count;
    public int EntryCount => _keys.Count;

    /// <summary>Reserves memory for keeping a small blob's bytes; released when the blob is evicted.</summary>
    public bool TryReserveHot(long size, long budget)
    {
        if (Interlocked.Add(ref _hotBytes, size) <= budget)
        {
            return true;
        }
        Interlocked.Add(ref _hotBytes, -size);
        return false;
    }

    public bool TryGetEntry(string key, out EntryRecord entry)
    {
        var found = _keys.Get(KeyHash.Of(key));
        // A blob's own key slot is only ever its key's while HasKey (a key moved elsewhere replaces the slot first).
        entry = (found is null or BlobRecord { HasKey: false } ? null : new EntryRecord(found))!;
        return entry is not null;
    }

    public bool TryGetBlob(string digest, out BlobRecord blob)
    {
        blob = (ContentStore.IsDigest(digest) ? _blobs.Get(Sha256Digest.Parse(digest)) : null)!;
        return blob is not null;
    }

    /// <summary>Every blob (a snapshot as the table is read; a commit or eviction meanwhile may or may not show).</summary>
    public IEnumerable<BlobRecord> Blobs => _blobs.Records();

    /// <summary>
    /// Records a committed blob and the keys that map to it, durably, then makes them visible. <paramref name="isPublic"/>:
    /// upstream gave it without credentials, so anyone may be given it by digest (a blob once public stays so).
    /// </summary>
    public BlobRecord Commit(string digest, long size, long nowMs, IReadOnlyList<EntryTemplate> entries, bool isPublic = false)
    {
        if (CommitFault?.Invoke() is { } fault)
        {
            throw fault;
        }
        var value = Sha256Digest.Parse(digest);
        // Under the digest's lock (reentrant: the engine holds it across the file's rename too), so an eviction of
        // this digest is wholly before or after; then the one write lock.
        lock (LockFor(digest))
        lock (_writeLock)
        {
            var existing = _blobs.Get(value);
            var blob = existing is { IsEvicted: false } ? existing : new BlobRecord(value, size, nowMs / 1000, nowMs);
            var rows = entries.Select(e => (Template: e, Hash: KeyHash.Of(e.Key), Type: ContentTypeId(e.ContentType), Modified: HttpDate.ToUnixSeconds(e.UpstreamLastModified))).ToList();
            using (var tx = _db.BeginTransaction())
            {
                using (var cmd = _db.CreateCommand())
                {
                    cmd.Transaction = tx;
                    cmd.CommandText = """
                        INSERT INTO blobs(digest, size, created, last_access, public) VALUES ($d, $s, $c, $a, $p)
                        ON CONFLICT(digest) DO UPDATE SET public = MAX(public, excluded.public)
                        """;
                    cmd.Parameters.AddWithValue("$d", value.ToBytes());
                    cmd.Parameters.AddWithValue("$s", size);
                    cmd.Parameters.AddWithValue("$c", blob.CreatedUnixSeconds);
                    cmd.Parameters.AddWithValue("$a", nowMs);
                    cmd.Parameters.AddWithValue("$p", isPublic ? 1 : 0);
                    cmd.ExecuteNonQuery();
                }
                foreach (var row in rows)
                {
                    using var cmd = _db.CreateCommand();
                    cmd.Transaction = tx;
                    cmd.CommandText = """
                        INSERT OR REPLACE INTO entries(hash, key, digest, content_type, etag, last_modified, fetched_at)
                        VALUES ($h, $k, $d, $t, $e, $l, $f)
                        """;
                    cmd.Parameters.AddWithValue("$h", row.Hash.ToBytes());
                    cmd.Parameters.AddWithValue("$k", row.Template.Key);
                    cmd.Parameters.AddWithValue("$d", value.ToBytes());
                    cmd.Parameters.AddWithValue("$t", (object?)row.Type ?? DBNull.Value);
                    cmd.Parameters.AddWithValue("$e", (object?)row.Template.UpstreamETag ?? DBNull.Value);
                    cmd.Parameters.AddWithValue("$l", row.Modified == 0 ? DBNull.Value : row.Modified);
                    cmd.Parameters.AddWithValue("$f", nowMs);
                    cmd.ExecuteNonQuery();
                }
                tx.Commit();
            }
            blob.IsPublic |= isPublic;
            if (!ReferenceEquals(blob, existing))
            {
                if (existing is not null)
                {
                    _blobs.Remove(value, existing);
                }
                _blobs.Set(blob);
                Interlocked.Add(ref _totalBytes, size);
                blob.Pinned = IsPinnedDigest(value); // a pinned blob fetched again (it was missing): kept off the list
                LruAdd(blob);
            }
            foreach (var row in rows)
            {
                SetKey(row.Hash, blob, InternedContentType(row.Type, row.Template.ContentType), nowMs, row.Modified);
            }
            return blob;
        }
    }

    /// <summary>
    /// Write lock held. Points a key at a blob: as the blob's own key when it has none yet and the Content-Type is the
    /// blob's, else as an alias. The key's previous record is replaced in the table first, then detached.
    /// <paramref name="knownNew"/>: the key has no record (loading, each row's key once), so none is looked for.
    /// </summary>
    private void SetKey(KeyHash hash, BlobRecord blob, string? contentType, long fetchedAtMs, uint lastModified, bool knownNew = false)
    {
        var previous = knownNew ? null : _keys.Get(hash);
        if (previous is BlobRecord { HasKey: false })
        {
            previous = null;
        }
        if (ReferenceEquals(previous, blob) && contentType == blob.ContentType)
        {
            blob.FetchedAtMs = fetchedAtMs;
            blob.LastModifiedSeconds = lastModified;
            return;
        }
        KeyedRecord record;
        // The blob's own key takes the blob's Content-Type (the first key's, set once): a key with another one is an
        // alias, so adding a key never changes what an existing key is served as.
        if (!blob.HasKey && (blob.ContentType is null || contentType == blob.ContentType))
        {
            blob.ContentType ??= contentType;
            blob.KeyHash = hash;
            blob.FetchedAtMs = fetchedAtMs;
            blob.LastModifiedSeconds = lastModified;
            blob.HasKey = true;
            record = blob;
        }
        else
        {
            var alias = new AliasRecord(hash, blob, contentType) { FetchedAtMs = fetchedAtMs, LastModifiedSeconds = lastModified };
            blob.SetAliases([.. blob.Aliases ?? [], alias]);
            record = alias;
        }
        if (_keys.Set(record) is { } replaced && !ReferenceEquals(replaced, record))
        {
            Detach(replaced);
            // A pinned blob's key moved to new content (a project page or a tag revalidated): the pin follows it,
            // once the locks held here are released (FollowMovedPins takes the pins' lock first).
            if ((replaced as BlobRecord ?? (replaced as AliasRecord)?.Blob) is { Pinned: true } moved && !ReferenceEquals(moved, blob))
            {
                _movedPins.Enqueue((moved.DigestValue, blob.DigestValue));
            }
        }
    }

    /// <summary>Write lock held. A key record no longer in the table: forgotten by its blob.</summary>
    private static void Detach(KeyedRecord record)
    {
        switch (record)
        {
            case BlobRecord blob:
                blob.HasKey = false;
                break;
            case AliasRecord alias:
                var rest = alias.Blob.Aliases?.Where(a => !ReferenceEquals(a, alias)).ToList();
                alias.Blob.SetAliases(rest);
                break;
        }
    }

    /// <summary>Tests make the next evictions' transactions fail as a full disk would.</summary>
    internal Func<Exception?>? RemoveFault { get; set; }

    /// <summary>Deletes blobs' rows (and their keys' rows) in one transaction, then forgets them and their keys in memory.</summary>
    private void RemoveBlobs(List<BlobRecord> blobs)
    {
        if (blobs.Count == 0)
        {
            return;
        }
        if (RemoveFault?.Invoke() is { } fault)
        {
            throw fault;
        }
        lock (_writeLock)
        {
            using (var tx = _db.BeginTransaction())
            {
                using var keys = _db.CreateCommand();
                keys.Transaction = tx;
                keys.CommandText = "DELETE FROM entries WHERE hash = $h AND digest = $d";
                var h = keys.Parameters.Add("$h", SqliteType.Blob);
                var kd = keys.Parameters.Add("$d", SqliteType.Blob);
                using var rows = _db.CreateCommand();
                rows.Transaction = tx;
                rows.CommandText = "DELETE FROM blobs WHERE digest = $d";
                var d = rows.Parameters.Add("$d", SqliteType.Blob);
                foreach (var blob in blobs)
                {
                    kd.Value = d.Value = blob.DigestValue.ToBytes();
                    foreach (var key in KeysOf(blob))
                    {
                        h.Value = key.KeyHash.ToBytes();
                        keys.ExecuteNonQuery();
                    }
                    rows.ExecuteNonQuery();
                }
                tx.Commit();
            }
            foreach (var blob in blobs)
            {
                if (_blobs.Remove(blob.DigestValue, blob))
                {
                    Interlocked.Add(ref _totalBytes, -blob.Size);
                    if (blob.TakeHot() is { } hot)
                    {
                        Interlocked.Add(ref _hotBytes, -hot.Length);
                    }
                }
                foreach (var key in KeysOf(blob))
                {
                    _keys.Remove(key.KeyHash, key);
                }
                blob.HasKey = false;
                blob.SetAliases(null);
                lock (_lruLock)
                {
                    LruRemoveLocked(blob);
                }
            }
        }
    }

    private static IEnumerable<KeyedRecord> KeysOf(BlobRecord blob) =>
        (blob.HasKey ? [blob] : Enumerable.Empty<KeyedRecord>()).Concat(blob.Aliases ?? []);

    /// <summary>
    /// Writes access times that changed since the last flush, in one transaction. Finding them reads a flag on every
    /// blob (a few milliseconds at a million blobs, every 30 s); only changed ones are written.
    /// </summary>
    public int FlushAccessTimes()
    {
        var dirty = new List<BlobRecord>();
        foreach (var blob in _blobs.Records())
        {
            if (blob.TakeDirty())
            {
                dirty.Add(blob);
            }
        }
        if (dirty.Count == 0)
        {
            return 0;
        }
        lock (_writeLock)
        {
            using var tx = _db.BeginTransaction();
            using var cmd = _db.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = "UPDATE blobs SET last_access = $a WHERE digest = $d";
            var a = cmd.Parameters.Add("$a", SqliteType.Integer);
            var d = cmd.Parameters.Add("$d", SqliteType.Blob);
            foreach (var blob in dirty)
            {
                a.Value = blob.LastAccessMs;
                d.Value = blob.DigestValue.ToBytes();
                cmd.ExecuteNonQuery();
            }
            tx.Commit();
        }
        LogFlushed(_logger, dirty.Count);
        return dirty.Count;
    }

    private void Execute(string sql)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    public void Dispose()
    {
        FlushAccessTimes();
        lock (_writeLock)
        {
            // Under the write lock, so a commit still running elsewhere finishes first (or fails cleanly after).
            _db.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Flushed access times of {Count} blobs")]
    private static partial void LogFlushed(ILogger logger, int count);
}

/// <summary>What to record for one key when a blob is committed.</summary>
public sealed record EntryTemplate(string Key, string? ContentType, string? UpstreamETag, string? UpstreamLastModified);
