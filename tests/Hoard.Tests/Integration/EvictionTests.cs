using System.Security.Cryptography;
using Hoard.Core.Fetch;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Eviction against everything else that happens to the same blobs at the same time.</summary>
public sealed class EvictionTests
{
    [Fact]
    public async Task A_key_fetched_again_while_its_blob_is_being_evicted_is_served_afterwards_not_lost()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var a = RandomNumberGenerator.GetBytes(1024 * 1024);
        File.WriteAllBytes(Path.Combine(root, "a.bin"), a);
        File.WriteAllBytes(Path.Combine(root, "b.bin"), RandomNumberGenerator.GetBytes(1024 * 1024));
        var shaA = Convert.ToHexStringLower(SHA256.HashData(a));
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        // Room for one of the two files: storing b evicts a.
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
            o.MaxSizeBytes = 1_500_000;
        });
        using var http = new HttpClient();
        Assert.Equal(a, await http.GetByteArrayAsync(hoard.BaseUrl + "/files/up/a.bin"));
        var index = hoard.Service<CacheIndex>();

        // While a's eviction is under way (its row gone, its file not yet deleted), a client asks for a again: it is
        // a miss, fetched and committed under the same digest.
        Task<byte[]>? refetch = null;
        hoard.Service<FetchEngine>().EvictionStep_ForTests = digest =>
        {
            if (digest != shaA || refetch is not null)
            {
                return;
            }
            refetch = http.GetByteArrayAsync(hoard.BaseUrl + "/files/up/a.bin");
            var deadline = DateTime.UtcNow.AddSeconds(3);
            while (!(index.TryGetBlob(shaA, out var blob) && !blob.IsEvicted) && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        };
        Assert.Equal(1024 * 1024, (await http.GetByteArrayAsync(hoard.BaseUrl + "/files/up/b.bin")).Length);
        // The background evictor takes a (the least recently used) once b's commit passes the high-water mark.
        await FetchEngineTests.WaitUntil(() => refetch is not null, TimeSpan.FromSeconds(10));
        Assert.Equal(a, await refetch!);
        await hoard.SettledAsync();
        hoard.Service<FetchEngine>().EvictionStep_ForTests = null;

        // Whatever the index says, the file agrees: a is served (from the store or upstream), never a 500.
        using var response = await http.GetAsync(hoard.BaseUrl + "/files/up/a.bin");
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(a, await response.Content.ReadAsByteArrayAsync());
        foreach (var blob in index.Blobs)
        {
            Assert.True(File.Exists(hoard.Service<ContentStore>().BlobPath(blob.Digest)), $"indexed blob {blob.Digest} has no file");
        }
    }
}
