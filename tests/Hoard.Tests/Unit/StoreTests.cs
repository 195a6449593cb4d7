using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hoard.Tests.Unit;

public sealed class StoreTests
{
    private static string Put(ContentStore store, byte[] data)
    {
        var digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
        var (path, handle) = store.CreateTemp();
        using (handle)
        {
            RandomAccess.Write(handle, data, 0);
        }
        store.Commit(path, digest);
        return digest;
    }

    [Fact]
    public void Committed_entries_survive_a_reopen_and_reconcile_removes_orphans_and_temp_files()
    {
        using var temp = new TempDir();
        var store = new ContentStore(temp.Path);
        var digest = Put(store, [1, 2, 3]);
        using (var index = new CacheIndex(temp.Path, NullLogger.Instance))
        {
            index.Commit(digest, 3, 1000, [new EntryTemplate("k", "text/plain", "\"e\"", null)]);
        }
        var orphan = Put(store, [9, 9]);          // renamed in, never indexed: a crash between the two steps
        File.WriteAllText(Path.Combine(store.TempDir, "x.part"), "partial");

        var reopened = new ContentStore(temp.Path);
        Assert.Equal(1, reopened.CleanTemp());
        using var again = new CacheIndex(temp.Path, NullLogger.Instance);
        Assert.Equal((0, 1), again.Reconcile(reopened));
        Assert.False(File.Exists(reopened.BlobPath(orphan)));
        Assert.True(again.TryGetEntry("k", out var entry));
        Assert.Equal(digest, entry.Blob.Digest);
        Assert.Equal("\"e\"", again.LoadUpstreamETag("k"));
        Assert.Equal("text/plain", entry.ContentType);
        Assert.Equal(3, again.TotalBytes);
    }

    [Fact]
    public void Eviction_takes_least_recently_used_first_and_never_a_blob_being_read()
    {
        using var temp = new TempDir();
        var store = new ContentStore(temp.Path);
        using var index = new CacheIndex(temp.Path, NullLogger.Instance);
        var digests = Enumerable.Range(0, 4).Select(i => Put(store, Enumerable.Repeat((byte)i, 100).ToArray())).ToArray();
        for (var i = 0; i < 4; i++)
        {
            index.Commit(digests[i], 100, 1000 + i, [new EntryTemplate("k" + i, null, null, null)]);
        }
        index.TryGetBlob(digests[0], out var oldestButPinned);
        Assert.True(oldestButPinned.TryAcquire(1000));
        var evicted = index.EvictTo(200);
        Assert.Equal([digests[1], digests[2]], evicted.Select(b => b.Digest));
        Assert.True(index.TryGetEntry("k0", out _));
        oldestButPinned.Release();
        Assert.Equal([digests[0]], index.EvictTo(100).Select(b => b.Digest));
        Assert.False(index.TryGetEntry("k0", out _));
        Assert.False(oldestButPinned.TryAcquire(2000));
    }

    [Fact]
    public void Eviction_in_batches_keeps_every_blob_used_since_and_removes_each_evicted_blobs_keys()
    {
        using var temp = new TempDir();
        using var index = new CacheIndex(temp.Path, NullLogger.Instance);
        var digests = Enumerable.Range(0, 2000).Select(i => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i)))).ToArray();
        for (var i = 0; i < digests.Length; i++)
        {
            // Two keys for some blobs (an alias), as a tag and a digest name one manifest.
            List<EntryTemplate> keys = i % 10 == 0 ? [new("k" + i, null, null, null), new("alias" + i, null, null, null)] : [new("k" + i, null, null, null)];
            index.Commit(digests[i], 100, 1000 + i, keys);
        }
        // Every third blob, oldest included, is read after all were stored: it must outlive every blob not read.
        for (var i = 0; i < digests.Length; i += 3)
        {
            index.TryGetBlob(digests[i], out var blob);
            Assert.True(blob.TryAcquire(10_000 + i));
            blob.Release();
        }
        var evicted = index.EvictTo(100 * 1000);
        Assert.Equal(1000, evicted.Count);
        Assert.All(evicted, b => Assert.NotEqual(0, Array.IndexOf(digests, b.Digest) % 3));
        // Least recently used first: the evicted are the 1,000 oldest of the blobs not read.
        var notRead = Enumerable.Range(0, digests.Length).Where(i => i % 3 != 0).Take(1000).Select(i => digests[i]).ToHashSet();
        Assert.True(notRead.SetEquals(evicted.Select(b => b.Digest)));
        Assert.Equal(1000, index.BlobCount);
        Assert.All(evicted, b => Assert.False(index.TryGetEntry("k" + Array.IndexOf(digests, b.Digest), out _)));
        Assert.Equal(1000 + Enumerable.Range(0, digests.Length).Count(i => i % 10 == 0 && !notRead.Contains(digests[i])), index.EntryCount);
    }
}
