using System.Security.Cryptography;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hoard.Tests.Unit;

/// <summary>The compact index: keys held as hashes, a blob as its first key's record, the version-2 layout and the upgrade to it.</summary>
public sealed class CompactIndexTests
{
    private static string DigestOf(int i) => Convert.ToHexStringLower(SHA256.HashData(BitConverter.GetBytes(i)));

    [Fact]
    public void A_data_dir_written_by_the_previous_layout_is_upgraded_with_every_key_and_validator()
    {
        using var temp = new TempDir();
        var (a, b) = (DigestOf(1), DigestOf(2));
        using (var db = new SqliteConnection($"Data Source={Path.Combine(temp.Path, "index.db")};Pooling=False"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            // Version 1 exactly as it was created, with the column added later by an in-place upgrade.
            cmd.CommandText = $"""
                CREATE TABLE blobs(digest TEXT PRIMARY KEY, size INTEGER NOT NULL, created INTEGER NOT NULL, last_access INTEGER NOT NULL);
                CREATE TABLE entries(key TEXT PRIMARY KEY, digest TEXT NOT NULL, content_type TEXT, etag TEXT, last_modified TEXT, fetched_at INTEGER NOT NULL);
                CREATE INDEX entries_digest ON entries(digest);
                ALTER TABLE blobs ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
                INSERT INTO blobs VALUES ('{a}', 10, 100, 5000, 1), ('{b}', 20, 200, 4000, 0);
                INSERT INTO entries VALUES ('files/x/a', '{a}', 'text/plain', '"etag-a"', 'Wed, 21 Oct 2015 07:28:00 GMT', 111),
                                           ('oci/r/tag/1', '{b}', 'application/vnd.oci.image.manifest.v1+json', NULL, NULL, 222),
                                           ('oci/r/sha256', '{b}', 'application/vnd.oci.image.manifest.v1+json', NULL, NULL, 333),
                                           ('gone', '{new string('0', 64)}', NULL, NULL, NULL, 1);
                """;
            cmd.ExecuteNonQuery();
        }
        for (var open = 0; open < 2; open++)
        {
            using var index = new CacheIndex(temp.Path, NullLogger.Instance);
            Assert.Equal(30, index.TotalBytes);
            Assert.Equal(3, index.EntryCount);
            Assert.True(index.TryGetEntry("files/x/a", out var fileEntry));
            Assert.Equal(a, fileEntry.Blob.Digest);
            Assert.True(fileEntry.Blob.IsPublic);
            Assert.Equal("text/plain", fileEntry.ContentType);
            Assert.Equal("Wed, 21 Oct 2015 07:28:00 GMT", fileEntry.UpstreamLastModified);
            Assert.Equal(111, fileEntry.FetchedAtMs);
            Assert.Equal("\"etag-a\"", index.LoadUpstreamETag("files/x/a"));
            Assert.True(index.TryGetEntry("oci/r/tag/1", out var tag));
            Assert.True(index.TryGetEntry("oci/r/sha256", out var byDigest));
            Assert.Same(tag.Blob, byDigest.Blob);
            Assert.False(tag.Blob.IsPublic);
            Assert.Equal("application/vnd.oci.image.manifest.v1+json", byDigest.ContentType);
            Assert.False(index.TryGetEntry("gone", out _));
            // Least recently used first, as the access times said.
            Assert.Equal([b], index.EvictTo(10, long.MaxValue).Select(x => x.Digest));
            const string manifest = "application/vnd.oci.image.manifest.v1+json";
            index.Commit(b, 20, 4000, [new EntryTemplate("oci/r/tag/1", manifest, null, null), new EntryTemplate("oci/r/sha256", manifest, null, null)]);
            Assert.True(index.TryGetEntry("oci/r/tag/1", out var recommitted));
            Assert.True(index.RemoveEntry("oci/r/tag/1"));
            index.Commit(b, 20, 4000, [new EntryTemplate("oci/r/tag/1", manifest, null, null)]);
            Assert.Same(recommitted.Blob, index.TryGetEntry("oci/r/tag/1", out var back) ? back.Blob : null);
            // The second open sees what the first one wrote, with the same figures.
            index.Commit(b, 20, 4000, []);
        }
    }

    [Fact]
    public void A_key_moves_between_blobs_and_aliases_keep_their_own_content_type_across_a_reopen()
    {
        using var temp = new TempDir();
        var (a, b) = (DigestOf(1), DigestOf(2));
        using (var index = new CacheIndex(temp.Path, NullLogger.Instance))
        {
            index.Commit(a, 1, 1000, [new EntryTemplate("page", "text/html", "\"1\"", null)]);
            index.Commit(a, 1, 1001, [new EntryTemplate("other-name", "text/html", null, null), new EntryTemplate("as-json", "application/json", null, null)]);
            // The page changed upstream: the key now names another blob; the old blob keeps its other names.
            index.Commit(b, 2, 1002, [new EntryTemplate("page", "text/html", "\"2\"", null)]);
            Assert.True(index.TryGetEntry("page", out var page));
            Assert.Equal(b, page.Blob.Digest);
            Assert.Equal("\"2\"", index.LoadUpstreamETag("page"));
            Assert.Equal("application/json", index.TryGetEntry("as-json", out var json) ? json.ContentType : null);
            Assert.Equal(a, json.Blob.Digest);
            // Evicting the old blob takes exactly its keys.
            Assert.Equal([a], index.EvictTo(2, long.MaxValue).Select(x => x.Digest));
            Assert.False(index.TryGetEntry("other-name", out _));
            Assert.False(index.TryGetEntry("as-json", out _));
            Assert.True(index.TryGetEntry("page", out _));
            index.Commit(a, 1, 1003, [new EntryTemplate("first", "text/plain", null, null), new EntryTemplate("second", "text/csv", null, null)]);
            Assert.True(index.RemoveEntry("first"));
            Assert.False(index.RemoveEntry("first"));
        }
        using var reopened = new CacheIndex(temp.Path, NullLogger.Instance);
        Assert.Equal(2, reopened.EntryCount);
        Assert.False(reopened.TryGetEntry("first", out _));
        Assert.True(reopened.TryGetEntry("second", out var second));
        Assert.Equal("text/csv", second.ContentType);
        Assert.True(reopened.TryGetEntry("page", out var again));
        Assert.Equal(b, again.Blob.Digest);
        Assert.Equal(1, reopened.RemoveEntriesWithPrefix("pa"));
        Assert.Equal(1, reopened.EntryCount);
    }

    [Fact]
    public void An_index_written_by_a_newer_layout_is_refused_with_a_clear_message_and_left_as_it_is()
    {
        using var temp = new TempDir();
        using (var index = new CacheIndex(temp.Path, NullLogger.Instance))
        {
            index.Commit(DigestOf(1), 1, 1000, [new EntryTemplate("k", null, null, null)]);
        }
        using (var db = new SqliteConnection($"Data Source={Path.Combine(temp.Path, "index.db")};Pooling=False"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            cmd.CommandText = "PRAGMA user_version = 9";
            cmd.ExecuteNonQuery();
        }
        var refused = Assert.Throws<UnreadableIndexException>(() => new CacheIndex(temp.Path, NullLogger.Instance));
        Assert.Contains("layout 9, written by a newer Hoard", refused.Message, StringComparison.Ordinal);
        using (var db = new SqliteConnection($"Data Source={Path.Combine(temp.Path, "index.db")};Pooling=False"))
        {
            db.Open();
            using var cmd = db.CreateCommand();
            cmd.CommandText = "SELECT COUNT(*) FROM entries";
            Assert.Equal(1L, cmd.ExecuteScalar());
        }
    }

    [Fact]
    public void An_eviction_whose_transaction_fails_leaves_every_blob_usable_counted_once_and_in_its_place()
    {
        using var temp = new TempDir();
        using var index = new CacheIndex(temp.Path, NullLogger.Instance);
        var digests = Enumerable.Range(0, 4).Select(DigestOf).ToArray();
        for (var i = 0; i < digests.Length; i++)
        {
            index.Commit(digests[i], 100, 1000 + i, [new EntryTemplate("k" + i, null, null, null)]);
        }
        index.RemoveFault = () => new Microsoft.Data.Sqlite.SqliteException("database or disk is full", 13);
        Assert.Throws<Microsoft.Data.Sqlite.SqliteException>(() => index.EvictTo(200));
        index.RemoveFault = null;

        Assert.Equal(400, index.TotalBytes);
        Assert.All(digests, (d, i) =>
        {
            Assert.True(index.TryGetEntry("k" + i, out var entry));
            Assert.True(entry.Blob.TryAcquire(1000 + i), "a blob whose eviction failed is still served");
            entry.Blob.Release();
        });
        // Still in least-recently-used order: the two oldest go when the disk has room again.
        Assert.Equal(digests[..2], index.EvictTo(200).Select(b => b.Digest));
        Assert.Equal(200, index.TotalBytes);
    }

    [Fact]
    public void Adding_a_key_with_a_content_type_does_not_change_what_an_existing_key_is_served_as()
    {
        using var temp = new TempDir();
        using var index = new CacheIndex(temp.Path, NullLogger.Instance);
        index.Commit(DigestOf(1), 10, 1000, [new EntryTemplate("untyped", null, null, null)]);
        index.Commit(DigestOf(1), 10, 1001, [new EntryTemplate("typed", "application/json", null, null)]);
        Assert.True(index.TryGetEntry("untyped", out var untyped));
        Assert.Null(untyped.ContentType);
        Assert.True(index.TryGetEntry("typed", out var typed));
        Assert.Equal("application/json", typed.ContentType);
    }

    [Fact]
    public void The_record_table_agrees_with_a_dictionary_through_inserts_replacements_and_removals()
    {
        var table = new RecordTable<int, Box>(b => b.Key);
        var model = new Dictionary<int, Box>();
        var random = new Random(7);
        for (var step = 0; step < 200_000; step++)
        {
            var key = random.Next(5_000);
            if (random.Next(3) == 0)
            {
                var removed = model.Remove(key, out var existing) && table.Remove(key, existing);
                Assert.Equal(removed, existing is not null);
            }
            else
            {
                var box = new Box(key);
                Assert.Same(model.GetValueOrDefault(key), table.Set(box));
                model[key] = box;
            }
        }
        Assert.Equal(model.Count, table.Count);
        Assert.All(Enumerable.Range(0, 5_000), k => Assert.Same(model.GetValueOrDefault(k), table.Get(k)));
        Assert.True(model.Values.ToHashSet().SetEquals(table.Records()));
    }

    [Fact]
    public async Task Readers_without_a_lock_always_find_records_that_stay_while_the_writer_churns_others()
    {
        var table = new RecordTable<int, Box>(b => b.Key);
        var stable = Enumerable.Range(0, 1_000).Select(i => new Box(i * 2)).ToList();
        stable.ForEach(b => table.Set(b));
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(() =>
        {
            var churned = new List<Box>();
            for (var round = 0; !stop.IsCancellationRequested; round++)
            {
                // Odd keys come and go (growing and shrinking the table: resizes and tombstones while readers read).
                for (var i = 0; i < 5_000; i++)
                {
                    var box = new Box(i * 2 + 1);
                    table.Set(box);
                    churned.Add(box);
                }
                churned.ForEach(b => table.Remove(b.Key, b));
                churned.Clear();
            }
        });
        var misses = 0;
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (DateTime.UtcNow < deadline)
        {
            foreach (var box in stable)
            {
                misses += ReferenceEquals(table.Get(box.Key), box) ? 0 : 1;
            }
        }
        await stop.CancelAsync();
        await writer;
        Assert.Equal(0, misses);
    }

    private sealed record Box(int Key);
}

/// <summary>Pins in the index: eviction passes them over, they survive a restart, and an unpin puts them back in line.</summary>
public sealed class PinIndexTests
{
    private static string Digest(int i) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)));

    [Fact]
    public void Pinned_blobs_are_never_evicted_survive_a_restart_and_return_to_the_lru_when_unpinned()
    {
        using var temp = new TempDir();
        using (var index = new CacheIndex(temp.Path, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            for (var i = 0; i < 10; i++)
            {
                index.Commit(Digest(i), 100, 1000 + i, [new EntryTemplate("k" + i, null, null, null)]);
            }
            // The two oldest are pinned: eviction down to 300 bytes takes the next oldest instead.
            Assert.True(index.TryPin("keep", "package", [Digest(0), Digest(1)], [], 1000, 5000, out var refusal, out var bytes), refusal);
            Assert.Equal(200, bytes);
            Assert.Equal(200, index.PinnedBytes);
            var evicted = index.EvictTo(300);
            Assert.Equal(7, evicted.Count);
            Assert.Equal(3, index.BlobCount);
            Assert.DoesNotContain(evicted, b => b.Digest == Digest(0) || b.Digest == Digest(1));
            Assert.Contains(index.Blobs, b => b.Digest == Digest(0) && b.Pinned);

            // A pin past the allowance is refused with the reason; one naming a blob not stored too.
            Assert.False(index.TryPin("big", "image", [Digest(9)], [], 250, 5000, out refusal, out _));
            Assert.Contains("may hold at most", refusal, StringComparison.Ordinal);
            Assert.False(index.TryPin("gone", "image", [Digest(2)], [], 1000, 5000, out refusal, out _));
            Assert.Contains("not stored", refusal, StringComparison.Ordinal);
        }
        using (var index = new CacheIndex(temp.Path, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance))
        {
            var pin = Assert.Single(index.Pins());
            Assert.Equal(new PinRecord("keep", "package", 5, 2, 0, 200), pin);
            Assert.DoesNotContain(index.EvictTo(0), b => b.Pinned);
            Assert.Equal(200, index.TotalBytes);
            Assert.True(index.Unpin("keep"));
            Assert.False(index.Unpin("keep"));
            Assert.Equal(2, index.EvictTo(0).Count);
            Assert.Equal(0, index.TotalBytes);
        }
    }
}
