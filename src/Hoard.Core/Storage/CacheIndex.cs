using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Storage;

/// <summary>
/// The embedded index: which key maps to which blob, blob sizes and access times. SQLite is the durable copy;
/// reads are served from memory, loaded at start, so a cache hit never touches the database. Every write is one
/// transaction on one connection under one lock (SQLite has one writer anyway). Access times are flushed in batches.
/// </summary>
public sealed partial class CacheIndex : IDisposable
{
    private readonly ConcurrentDictionary<string, EntryRecord> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, BlobRecord> _blobs = new(StringComparer.Ordinal);
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
        Execute("""
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=NORMAL;
            PRAGMA busy_timeout=5000;
            CREATE TABLE IF NOT EXISTS blobs(
                digest TEXT PRIMARY KEY, size INTEGER NOT NULL, created INTEGER NOT NULL, last_access INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS entries(
                key TEXT PRIMARY KEY, digest TEXT NOT NULL, content_type TEXT, etag TEXT, last_modified TEXT, fetched_at INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS entries_digest ON entries(digest);
            """);
        AddColumnIfMissing("blobs", "public", "INTEGER NOT NULL DEFAULT 0");
        Load();
    }

    /// <summary>
    /// One lock per digest (striped): held across a commit (file renamed in, then rows) and an eviction (rows out,
    /// then file deleted) of that digest, so the two never interleave. Striped, not per digest: 256 locks for any
    /// number of blobs; two digests sharing a stripe only wait for each other's few milliseconds.
    /// </summary>
    private readonly Lock[] _digestLocks = Enumerable.Range(0, 256).Select(_ => new Lock()).ToArray();

    public Lock LockFor(string digest) => _digestLocks[Convert.ToInt32(digest[..2], 16)];

    /// <summary>Tests make the next commits fail as a full disk would (SQLITE_FULL), at exactly this step.</summary>
    internal Func<Exception?>? CommitFault { get; set; }

    public long TotalBytes => Interlocked.Read(ref _totalBytes);
    public int BlobCount => _blobs.Count;
    public int EntryCount => _entries.Count;

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

    public bool TryGetEntry(string key, out EntryRecord entry) => _entries.TryGetValue(key, out entry!);

    public bool TryGetBlob(string digest, out BlobRecord blob) => _blobs.TryGetValue(digest, out blob!);

    public IEnumerable<BlobRecord> Blobs => _blobs.Values;

    private void Load()
    {
        using (var cmd = _db.CreateCommand())
        {
            cmd.CommandText = "SELECT digest, size, created, last_access, public FROM blobs";
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                var blob = new BlobRecord(r.GetString(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3)) { IsPublic = r.GetInt64(4) != 0 };
                _blobs[blob.Digest] = blob;
                _totalBytes += blob.Size;
            }
        }
        using (var cmd = _db.CreateCommand())
        {
            cmd.CommandText = "SELECT key, digest, content_type, etag, last_modified, fetched_at FROM entries";
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                if (_blobs.TryGetValue(r.GetString(1), out var blob))
                {
                    var key = r.GetString(0);
                    _entries[key] = new EntryRecord(key, blob, Str(r, 2), Str(r, 3), Str(r, 4), r.GetInt64(5));
                    blob.AddKey(key);
                    blob.ContentType = Str(r, 2);
                }
            }
        }
        // Oldest first, each put at the head: the most recently used ends at the head.
        foreach (var blob in _blobs.Values.OrderBy(b => b.LastAccessMs))
        {
            LruAdd(blob);
        }
    }

    private static string? Str(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    /// <summary>True once <see cref="Reconcile"/> has checked every row and file since start.</summary>
    public bool Reconciled => Volatile.Read(ref _reconciled);

    private bool _reconciled;

    /// <summary>
    /// Makes the index agree with the files: deletes blob files no row names (a crash between rename and insert
    /// leaves those), drops rows whose blob file is missing or has the wrong size. Runs in the background after start
    /// while requests are served: each digest is decided under its lock, so a commit or an eviction of it in the
    /// meantime is never undone; a request meeting a missing file first is a miss (<see cref="HasFile"/>).
    /// </summary>
    public (int DroppedRows, int DeletedFiles) Reconcile(ContentStore store, CancellationToken ct = default)
    {
        var onDisk = new Dictionary<string, long>(StringComparer.Ordinal);
        var deleted = 0;
        foreach (var (digest, size) in store.Scan())
        {
            ct.ThrowIfCancellationRequested();
            lock (LockFor(digest))
            {
                if (_blobs.ContainsKey(digest))
                {
                    onDisk[digest] = size;
                }
                else if (File.Exists(store.BlobPath(digest)))
                {
                    File.Delete(store.BlobPath(digest));
                    deleted++;
                }
            }
        }
        var dropped = 0;
        foreach (var blob in _blobs.Values.ToList())
        {
            ct.ThrowIfCancellationRequested();
            if (onDisk.TryGetValue(blob.Digest, out var size) && size == blob.Size)
            {
                continue;
            }
            // Not seen by the scan, or another size: looked at again under the lock (it may be new since the scan).
            dropped += DropIfFileMissing(blob, store) ? 1 : 0;
        }
        Volatile.Write(ref _reconciled, true);
        return (dropped, deleted);
    }

    /// <summary>
    /// Whether the blob's file is there, as the index says. Until the start-up reconciliation is done, checked on
    /// disk (one stat per hit, for those seconds only): a blob whose file is gone is dropped, and the request is a miss.
    /// </summary>
    public bool HasFile(BlobRecord blob, ContentStore store) =>
        Reconciled || File.Exists(store.BlobPath(blob.Digest)) || !DropIfFileMissing(blob, store); // the lock only when it looks missing

    private bool DropIfFileMissing(BlobRecord blob, ContentStore store)
    {
        lock (LockFor(blob.Digest))
        {
            if (!_blobs.TryGetValue(blob.Digest, out var current) || !ReferenceEquals(current, blob))
            {
                return false;
            }
            var file = new FileInfo(store.BlobPath(blob.Digest));
            if (file.Exists && file.Length == blob.Size)
            {
                return false;
            }
            RemoveBlobs([blob]);
            store.Delete(blob.Digest);
            return true;
        }
    }

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
        // Under the digest's lock (reentrant: the engine holds it across the file's rename too), so an eviction of
        // this digest is wholly before or after; then the one write lock.
        lock (LockFor(digest))
        lock (_writeLock)
        {
            var blob = _blobs.TryGetValue(digest, out var existing) && !existing.IsEvicted
                ? existing
                : new BlobRecord(digest, size, nowMs / 1000, nowMs);
            using var tx = _db.BeginTransaction();
            using (var cmd = _db.CreateCommand())
            {
                cmd.Transaction = tx;
                cmd.CommandText = """
                    INSERT INTO blobs(digest, size, created, last_access, public) VALUES ($d, $s, $c, $a, $p)
                    ON CONFLICT(digest) DO UPDATE SET public = MAX(public, excluded.public)
                    """;
                cmd.Parameters.AddWithValue("$d", digest);
                cmd.Parameters.AddWithValue("$s", size);
                cmd.Parameters.AddWithValue("$c", blob.CreatedUnixSeconds);
                cmd.Parameters.AddWithValue("$a", nowMs);
                cmd.Parameters.AddWithValue("$p", isPublic ? 1 : 0);
                cmd.ExecuteNonQuery();
            }
            foreach (var e in entries)
            {
                using var cmd = _db.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = """
                    INSERT OR REPLACE INTO entries(key, digest, content_type, etag, last_modified, fetched_at)
                    VALUES ($k, $d, $t, $e, $l, $f)
                    """;
                cmd.Parameters.AddWithValue("$k", e.Key);
                cmd.Parameters.AddWithValue("$d", digest);
                cmd.Parameters.AddWithValue("$t", (object?)e.ContentType ?? DBNull.Value);
                cmd.Parameters.AddWithValue("$e", (object?)e.UpstreamETag ?? DBNull.Value);
                cmd.Parameters.AddWithValue("$l", (object?)e.UpstreamLastModified ?? DBNull.Value);
                cmd.Parameters.AddWithValue("$f", nowMs);
                cmd.ExecuteNonQuery();
            }
            tx.Commit();
            blob.IsPublic |= isPublic;
            if (!ReferenceEquals(blob, existing))
            {
                _blobs[digest] = blob;
                Interlocked.Add(ref _totalBytes, size);
                LruAdd(blob);
            }
            foreach (var e in entries)
            {
                if (_entries.TryGetValue(e.Key, out var previous) && !ReferenceEquals(previous.Blob, blob))
                {
                    previous.Blob.RemoveKey(e.Key);
                }
                _entries[e.Key] = new EntryRecord(e.Key, blob, e.ContentType, e.UpstreamETag, e.UpstreamLastModified, nowMs);
                blob.AddKey(e.Key);
                blob.ContentType = e.ContentType;
            }
            return blob;
        }
    }

    /// <summary>Upstream confirmed the entry is unchanged (304): restart its TTL.</summary>
    public void Touch(EntryRecord entry, long nowMs)
    {
        lock (_writeLock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "UPDATE entries SET fetched_at = $f WHERE key = $k";
            cmd.Parameters.AddWithValue("$f", nowMs);
            cmd.Parameters.AddWithValue("$k", entry.Key);
            cmd.ExecuteNonQuery();
            entry.FetchedAtMs = nowMs;
        }
    }

    public bool RemoveEntry(string key)
    {
        lock (_writeLock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "DELETE FROM entries WHERE key = $k";
            cmd.Parameters.AddWithValue("$k", key);
            cmd.ExecuteNonQuery();
            if (_entries.TryRemove(key, out var removed))
            {
                removed.Blob.RemoveKey(key);
                return true;
            }
            return false;
        }
    }

    /// <summary>Removes keys starting with a prefix (a project's pages in every format).</summary>
    public int RemoveEntriesWithPrefix(string prefix)
    {
        var n = 0;
        foreach (var key in _entries.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal)).ToList())
        {
            n += RemoveEntry(key) ? 1 : 0;
        }
        return n;
    }

    /// <summary>Deletes blobs' rows (and their keys' rows) in one transaction, then forgets them and their keys in memory.</summary>
    private void RemoveBlobs(List<BlobRecord> blobs)
    {
        if (blobs.Count == 0)
        {
            return;
        }
        lock (_writeLock)
        {
            using (var tx = _db.BeginTransaction())
            {
                using var cmd = _db.CreateCommand();
                cmd.Transaction = tx;
                cmd.CommandText = "DELETE FROM entries WHERE digest = $d; DELETE FROM blobs WHERE digest = $d;";
                var d = cmd.Parameters.Add("$d", SqliteType.Text);
                foreach (var blob in blobs)
                {
                    d.Value = blob.Digest;
                    cmd.ExecuteNonQuery();
                }
                tx.Commit();
            }
            foreach (var blob in blobs)
            {
                if (_blobs.TryRemove(new KeyValuePair<string, BlobRecord>(blob.Digest, blob)))
                {
                    Interlocked.Add(ref _totalBytes, -blob.Size);
                    if (blob.Hot is { } hot)
                    {
                        blob.Hot = null;
                        Interlocked.Add(ref _hotBytes, -hot.Length);
                    }
                }
                foreach (var key in blob.TakeKeys())
                {
                    if (_entries.TryGetValue(key, out var entry) && ReferenceEquals(entry.Blob, blob))
                    {
                        _entries.TryRemove(new KeyValuePair<string, EntryRecord>(key, entry));
                    }
                }
                lock (_lruLock)
                {
                    LruRemoveLocked(blob);
                }
            }
        }
    }

    /// <summary>Writes access times that changed since the last flush, in one transaction.</summary>
    public int FlushAccessTimes()
    {
        var dirty = _blobs.Values.Where(b => b.LastAccessMs != b.PersistedAccessMs).ToList();
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
            var d = cmd.Parameters.Add("$d", SqliteType.Text);
            foreach (var blob in dirty)
            {
                var at = blob.LastAccessMs;
                a.Value = at;
                d.Value = blob.Digest;
                cmd.ExecuteNonQuery();
                blob.PersistedAccessMs = at;
            }
            tx.Commit();
        }
        LogFlushed(_logger, dirty.Count);
        return dirty.Count;
    }

    /// <summary>Schema upgrade in place: a data dir written by an older Hoard gains the column (rows get the default).</summary>
    private void AddColumnIfMissing(string table, string column, string definition)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = $"SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'";
        if ((long)cmd.ExecuteScalar()! == 0)
        {
            Execute($"ALTER TABLE {table} ADD COLUMN {column} {definition}");
        }
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
