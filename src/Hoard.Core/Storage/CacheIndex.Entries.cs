using Microsoft.Data.Sqlite;

namespace Hoard.Core.Storage;

/// <summary>Entries by key: revalidation (touch, the upstream ETag), removal and purges, and the top keys by size and use.</summary>
public sealed partial class CacheIndex
{
    /// <summary>Upstream confirmed the entry is unchanged (304): restart its TTL.</summary>
    public void Touch(EntryRecord entry, long nowMs)
    {
        lock (_writeLock)
        {
            var record = entry.Record;
            if (!ReferenceEquals(_keys.Get(record.KeyHash), record) || record is BlobRecord { HasKey: false })
            {
                // The key was re-pointed (or its blob took another key) since the lookup: the 304 was about content
                // the key no longer names, so nothing is confirmed.
                return;
            }
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "UPDATE entries SET fetched_at = $f WHERE hash = $h AND digest = $d";
            cmd.Parameters.AddWithValue("$f", nowMs);
            cmd.Parameters.AddWithValue("$h", record.KeyHash.ToBytes());
            cmd.Parameters.AddWithValue("$d", entry.Blob.DigestValue.ToBytes());
            cmd.ExecuteNonQuery();
            record.FetchedAtMs = nowMs;
        }
    }

    /// <summary>Upstream's ETag for a key, for a conditional revalidation (kept in SQLite only: off the hit path).</summary>
    public string? LoadUpstreamETag(string key)
    {
        lock (_writeLock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT etag FROM entries WHERE hash = $h";
            cmd.Parameters.AddWithValue("$h", KeyHash.Of(key).ToBytes());
            return cmd.ExecuteScalar() as string;
        }
    }

    public bool RemoveEntry(string key)
    {
        var hash = KeyHash.Of(key);
        lock (_writeLock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "DELETE FROM entries WHERE hash = $h";
            cmd.Parameters.AddWithValue("$h", hash.ToBytes());
            cmd.ExecuteNonQuery();
            if (_keys.Get(hash) is { } record && record is not BlobRecord { HasKey: false } && _keys.Remove(hash, record))
            {
                Detach(record);
                return true;
            }
            return false;
        }
    }

    /// <summary>
    /// The largest and the most recently used keys with their blobs' sizes and access times (as last flushed), read
    /// on a connection of its own: WAL readers do not wait for the writer, nor it for them.
    /// </summary>
    public (List<(string Key, long Size, long LastAccessMs)> Largest, List<(string Key, long Size, long LastAccessMs)> Recent) TopKeys(int count)
    {
        using var db = new SqliteConnection(_db.ConnectionString);
        db.Open();
        List<(string, long, long)> Query(string order)
        {
            using var cmd = db.CreateCommand();
            cmd.CommandText = $"SELECT e.key, b.size, b.last_access FROM entries e JOIN blobs b ON b.digest = e.digest ORDER BY {order} LIMIT $n";
            cmd.Parameters.AddWithValue("$n", count);
            using var r = cmd.ExecuteReader();
            var rows = new List<(string, long, long)>();
            while (r.Read())
            {
                rows.Add((r.GetString(0), r.GetInt64(1), r.GetInt64(2)));
            }
            return rows;
        }
        return (Query("b.size DESC"), Query("b.last_access DESC"));
    }

    /// <summary>Removes keys starting with a prefix (a project's pages in every format). Reads every key's row: rare, admin only.</summary>
    public int RemoveEntriesWithPrefix(string prefix)
    {
        var keys = new List<string>();
        lock (_writeLock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT key FROM entries WHERE substr(key, 1, length($p)) = $p";
            cmd.Parameters.AddWithValue("$p", prefix);
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                keys.Add(r.GetString(0));
            }
        }
        return keys.Count(RemoveEntry);
    }
}
