using System.Globalization;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using SQLitePCL;

namespace Hoard.Core.Storage;

/// <summary>
/// The SQLite layout, its upgrade from older versions, and loading it into memory at start.
///
/// Version 2 (about 220 bytes a key on disk with short keys): digests as 32-byte blobs, not 64 hex characters; both
/// tables WITHOUT ROWID, so the primary key is the row and is not stored twice; an entry is found by its key's hash,
/// which is what memory holds, so eviction deletes a blob's keys without an index on the digest; Content-Types as
/// small numbers; Last-Modified as Unix seconds. Version 1 (text digests, an index on entries' digests, ~420 bytes a
/// key) is copied over once, in one transaction.
/// </summary>
public sealed partial class CacheIndex
{
    private const int SchemaVersion = 2;

    /// <summary>Distinct Content-Types recorded at most; past it a new one is not remembered (the blob is served as octet-stream).</summary>
    private const int MaxContentTypes = 4096;

    private readonly Dictionary<string, int> _contentTypeIds = new(StringComparer.Ordinal);
    private readonly List<string> _contentTypes = [];

    private void OpenSchema()
    {
        var version = Scalar("PRAGMA user_version");
        if (version == SchemaVersion)
        {
            LoadContentTypes();
            return;
        }
        if (version > SchemaVersion)
        {
            throw new UnreadableIndexException(
                $"{_db.DataSource} has index layout {version}, written by a newer Hoard; this one reads layout {SchemaVersion} and older. Run the newer version, or start with an empty data directory.");
        }
        var oldLayout = Scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'blobs'") > 0;
        using (var tx = _db.BeginTransaction())
        {
            if (oldLayout)
            {
                Execute("DROP INDEX IF EXISTS entries_digest; ALTER TABLE blobs RENAME TO blobs_v1; ALTER TABLE entries RENAME TO entries_v1;");
            }
            Execute("""
                CREATE TABLE blobs(
                    digest BLOB PRIMARY KEY, size INTEGER NOT NULL, created INTEGER NOT NULL, last_access INTEGER NOT NULL,
                    public INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
                CREATE TABLE entries(
                    hash BLOB PRIMARY KEY, key TEXT NOT NULL, digest BLOB NOT NULL, content_type INTEGER, etag TEXT,
                    last_modified INTEGER, fetched_at INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE content_types(id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
                """);
            if (oldLayout)
            {
                CopyVersion1();
                Execute("DROP TABLE blobs_v1; DROP TABLE entries_v1;");
            }
            Execute($"PRAGMA user_version = {SchemaVersion}");
            tx.Commit();
        }
        if (oldLayout)
        {
            try
            {
                Execute("VACUUM");
            }
            catch (SqliteException e)
            {
                // It needs about the database's size in free space; the upgrade itself is done either way.
                LogVacuumFailed(_logger, e.Message);
            }
            LogUpgraded(_logger, Scalar("SELECT COUNT(*) FROM blobs"), Scalar("SELECT COUNT(*) FROM entries"));
        }
    }

    private void CopyVersion1()
    {
        var hasPublic = Scalar("SELECT COUNT(*) FROM pragma_table_info('blobs_v1') WHERE name = 'public'") > 0;
        Execute($"""
            INSERT INTO blobs(digest, size, created, last_access, public)
            SELECT unhex(digest), size, created, last_access, {(hasPublic ? "public" : "0")} FROM blobs_v1
            WHERE length(digest) = 64 AND unhex(digest) IS NOT NULL
            """);
        using var read = _db.CreateCommand();
        read.CommandText = "SELECT key, digest, content_type, etag, last_modified, fetched_at FROM entries_v1";
        using var write = _db.CreateCommand();
        write.CommandText = """
            INSERT OR REPLACE INTO entries(hash, key, digest, content_type, etag, last_modified, fetched_at)
            SELECT $h, $k, digest, $t, $e, $l, $f FROM blobs WHERE digest = unhex($d)
            """;
        var (h, k, d, t, e, l, f) = (write.Parameters.Add("$h", SqliteType.Blob), write.Parameters.Add("$k", SqliteType.Text),
            write.Parameters.Add("$d", SqliteType.Text), write.Parameters.Add("$t", SqliteType.Integer), write.Parameters.Add("$e", SqliteType.Text),
            write.Parameters.Add("$l", SqliteType.Integer), write.Parameters.Add("$f", SqliteType.Integer));
        var rows = new List<(string Key, string Digest, string? Type, string? ETag, string? Modified, long FetchedAt)>();
        using (var r = read.ExecuteReader())
        {
            while (r.Read())
            {
                rows.Add((r.GetString(0), r.GetString(1), Str(r, 2), Str(r, 3), Str(r, 4), r.GetInt64(5)));
            }
        }
        foreach (var row in rows)
        {
            var modified = HttpDate.ToUnixSeconds(row.Modified);
            (h.Value, k.Value, d.Value) = (KeyHash.Of(row.Key).ToBytes(), row.Key, row.Digest);
            (t.Value, e.Value, l.Value, f.Value) = ((object?)ContentTypeId(row.Type) ?? DBNull.Value, (object?)row.ETag ?? DBNull.Value, modified == 0 ? DBNull.Value : modified, row.FetchedAt);
            write.ExecuteNonQuery();
        }
    }

    private static string? Str(SqliteDataReader r, int i) => r.IsDBNull(i) ? null : r.GetString(i);

    private long Scalar(string sql)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private void LoadContentTypes()
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = "SELECT id, value FROM content_types ORDER BY id";
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            RememberContentType((int)r.GetInt64(0), r.GetString(1));
        }
    }

    private void RememberContentType(int id, string value)
    {
        while (_contentTypes.Count <= id)
        {
            _contentTypes.Add("");
        }
        _contentTypes[id] = value;
        _contentTypeIds[value] = id;
    }

    /// <summary>Write lock held. The Content-Type's number, recorded on first sight; null for none (or past the cap).</summary>
    private int? ContentTypeId(string? contentType)
    {
        if (contentType is null)
        {
            return null;
        }
        if (_contentTypeIds.TryGetValue(contentType, out var id))
        {
            return id;
        }
        if (_contentTypeIds.Count >= MaxContentTypes)
        {
            return null;
        }
        using var cmd = _db.CreateCommand();
        cmd.CommandText = "INSERT OR IGNORE INTO content_types(value) VALUES ($v); SELECT id FROM content_types WHERE value = $v";
        cmd.Parameters.AddWithValue("$v", contentType);
        id = (int)Convert.ToInt64(cmd.ExecuteScalar(), CultureInfo.InvariantCulture);
        RememberContentType(id, contentType);
        return id;
    }

    /// <summary>One string object per Content-Type for all records, not one per key.</summary>
    private string? InternedContentType(int? id, string? asGiven) => id is { } n ? _contentTypes[n] : asGiven;

    /// <summary>
    /// Reads every row into memory: blobs (then ordered by last access for the LRU), then keys. A key row naming a blob that is gone is deleted.
    /// </summary>
    private void Load()
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        // Keys are read on a second connection while blobs are read and ordered on this one (two cores, two
        // halves of the work); then each key is linked to its blob.
        var keyRows = Task.Run(ReadKeyRows);
        var blobs = new List<BlobRecord>();
        ReadRows(_db, "SELECT digest, size, created, last_access, public FROM blobs", row =>
        {
            if (raw.sqlite3_column_blob(row, 0) is { Length: 32 } digest)
            {
                blobs.Add(new BlobRecord(Sha256Digest.FromBytes(digest), raw.sqlite3_column_int64(row, 1), raw.sqlite3_column_int64(row, 2), raw.sqlite3_column_int64(row, 3))
                {
                    IsPublic = raw.sqlite3_column_int64(row, 4) != 0,
                });
            }
        });
        _blobs.EnsureCapacity(blobs.Count);
        var order = new long[blobs.Count];
        var records = blobs.ToArray();
        for (var i = 0; i < records.Length; i++)
        {
            _blobs.Set(records[i]);
            _totalBytes += records[i].Size;
            order[i] = records[i].LastAccessMs;
        }
        // Oldest first, each put at the head: the most recently used ends at the head.
        Array.Sort(order, records);
        lock (_lruLock)
        {
            foreach (var blob in records)
            {
                LruAddLocked(blob);
            }
        }
        var blobsMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        var rows = keyRows.GetAwaiter().GetResult();
        _keys.EnsureCapacity(rows.Count);
        var orphans = new List<byte[]>();
        foreach (var row in rows)
        {
            if (_blobs.Get(row.Digest) is not { } blob)
            {
                orphans.Add(row.Hash.ToBytes());
                continue;
            }
            var type = row.ContentType >= 0 && row.ContentType < _contentTypes.Count ? _contentTypes[row.ContentType] : null;
            SetKey(row.Hash, blob, type, row.FetchedAtMs, row.LastModified, knownNew: true);
        }
        foreach (var orphan in orphans)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "DELETE FROM entries WHERE hash = $h";
            cmd.Parameters.AddWithValue("$h", orphan);
            cmd.ExecuteNonQuery();
        }
        LogLoaded(_logger, records.Length, _keys.Count, blobsMs, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private readonly record struct KeyRow(KeyHash Hash, Sha256Digest Digest, int ContentType, uint LastModified, long FetchedAtMs);

    private List<KeyRow> ReadKeyRows()
    {
        var rows = new List<KeyRow>();
        using var db = new SqliteConnection(_db.ConnectionString);
        db.Open();
        ReadRows(db, "SELECT hash, digest, content_type, last_modified, fetched_at FROM entries", row =>
        {
            var hash = raw.sqlite3_column_blob(row, 0);
            var digest = raw.sqlite3_column_blob(row, 1);
            if (hash.Length == 16 && digest.Length == 32)
            {
                rows.Add(new KeyRow(KeyHash.FromBytes(hash), Sha256Digest.FromBytes(digest),
                    raw.sqlite3_column_type(row, 2) == raw.SQLITE_NULL ? -1 : (int)raw.sqlite3_column_int64(row, 2),
                    (uint)Math.Clamp(raw.sqlite3_column_int64(row, 3), 0, uint.MaxValue), raw.sqlite3_column_int64(row, 4)));
            }
        });
        return rows;
    }

    /// <summary>
    /// Steps through a query's rows with SQLite's own calls: a row's blob columns are read as spans of SQLite's
    /// memory, not copied into a new array each (three arrays a key at start, millions of them, were a third of the
    /// load time with the ADO.NET reader).
    /// </summary>
    private static void ReadRows(SqliteConnection db, string sql, Action<sqlite3_stmt> read)
    {
        Check(db, raw.sqlite3_prepare_v2(db.Handle, sql, out var statement));
        using (statement)
        {
            int rc;
            while ((rc = raw.sqlite3_step(statement)) == raw.SQLITE_ROW)
            {
                read(statement);
            }
            if (rc != raw.SQLITE_DONE)
            {
                Check(db, rc);
            }
        }
    }

    private static void Check(SqliteConnection db, int rc)
    {
        if (rc != raw.SQLITE_OK)
        {
            throw new SqliteException(raw.sqlite3_errmsg(db.Handle).utf8_to_string(), rc);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded the index: {Blobs} blobs ({BlobsMs:0} ms) and {Keys} keys, {Ms:0} ms in all")]
    private static partial void LogLoaded(ILogger logger, int blobs, int keys, double blobsMs, double ms);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Index upgraded, but VACUUM failed ({Error}): the old layout's pages stay free in index.db until a VACUUM succeeds")]
    private static partial void LogVacuumFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Upgraded the index to the compact layout: {Blobs} blobs, {Keys} keys")]
    private static partial void LogUpgraded(ILogger logger, long blobs, long keys);
}

/// <summary>HTTP dates as Unix seconds (0: none or unreadable), so a record keeps 4 bytes, not a 29-character string.</summary>
internal static class HttpDate
{
    public static uint ToUnixSeconds(string? value) =>
        value is not null && DateTimeOffset.TryParseExact(value, "r", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            && at.ToUnixTimeSeconds() is > 0 and <= uint.MaxValue
            ? (uint)at.ToUnixTimeSeconds()
            : 0;
}

/// <summary>The data directory's index cannot be used by this version (written by a newer one): Hoard does not start.</summary>
public sealed class UnreadableIndexException(string message) : Exception(message);
