using System.Security.Cryptography;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>A full disk at every step of a commit is one case: clients get their bytes, the store keeps nothing half-done.</summary>
public sealed class StoreFailureTests
{
    [Fact]
    public async Task A_full_disk_at_the_index_commit_still_serves_the_client_and_leaves_no_unindexed_blob()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var data = RandomNumberGenerator.GetBytes(3 * 1024 * 1024);
        File.WriteAllBytes(Path.Combine(root, "wheel.bin"), data);
        var sha = Convert.ToHexStringLower(SHA256.HashData(data));
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));
        // SQLite's answer when the disk fills up as the index row is written, after the blob file was renamed in.
        hoard.Service<CacheIndex>().CommitFault = () => new Microsoft.Data.Sqlite.SqliteException("database or disk is full", 13);

        using var http = new HttpClient();
        using (var response = await http.GetAsync(hoard.BaseUrl + "/files/up/wheel.bin"))
        {
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal(data, await response.Content.ReadAsByteArrayAsync());
        }
        await hoard.SettledAsync();
        var store = hoard.Service<ContentStore>();
        Assert.False(File.Exists(store.BlobPath(sha)), "a blob the index does not name must not stay in the store");
        Assert.False(hoard.Service<CacheIndex>().TryGetBlob(sha, out _));
        Assert.Empty(store.Scan());
        Assert.True(hoard.Metrics.Get("hoard_store_write_errors_total") >= 1);

        // The store rests for a while, as after any write error: clients are served straight from upstream meanwhile.
        hoard.Service<CacheIndex>().CommitFault = null;
        using var again = await http.GetAsync(hoard.BaseUrl + "/files/up/wheel.bin");
        Assert.Equal("BYPASS", again.Headers.GetValues("X-Hoard-Cache").Single());
        Assert.Equal(data, await again.Content.ReadAsByteArrayAsync());
    }
}
