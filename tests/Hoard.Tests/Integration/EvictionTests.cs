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

    [Fact]
    public async Task After_kill_9_the_port_opens_before_the_files_are_checked_and_a_missing_or_extra_file_is_handled_safely()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var files = Enumerable.Range(0, 3).Select(i => RandomNumberGenerator.GetBytes(64 * 1024 + i)).ToArray();
        for (var i = 0; i < files.Length; i++)
        {
            File.WriteAllBytes(Path.Combine(root, $"f{i}.bin"), files[i]);
        }
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        var data = temp.Sub("data");
        var port = Ports.Free();
        string[] args = ["serve", "--listen", $"http://127.0.0.1:{port}", "--data", data, "--files", $"up={nginx.BaseUrl}/"];
        using var http = new HttpClient();
        var first = HoardProcess.Start(args);
        await using (first)
        {
            await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
            for (var i = 0; i < files.Length; i++)
            {
                Assert.Equal(files[i], await http.GetByteArrayAsync($"http://127.0.0.1:{port}/files/up/f{i}.bin"));
            }
            await first.KillAsync();
        }
        // While it was down: f1's blob file is lost, and a file no row names appears (a crash between rename and row).
        var store = new ContentStore(data);
        File.Delete(store.BlobPath(Convert.ToHexStringLower(SHA256.HashData(files[1]))));
        var stray = Convert.ToHexStringLower(SHA256.HashData("stray"u8));
        Directory.CreateDirectory(Path.GetDirectoryName(store.BlobPath(stray))!);
        File.WriteAllText(store.BlobPath(stray), "stray");

        await using var second = HoardProcess.Start(args);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        // The lost file is a miss, fetched again; the others are hits; nothing answers 500.
        for (var i = 0; i < files.Length; i++)
        {
            using var response = await http.GetAsync($"http://127.0.0.1:{port}/files/up/f{i}.bin");
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal(files[i], await response.Content.ReadAsByteArrayAsync());
            Assert.Equal(i == 1 ? "MISS" : "HIT", response.Headers.GetValues("X-Hoard-Cache").Single());
        }
        await FetchEngineTests.WaitUntil(() => second.Output.Contains("Index and files agree", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        Assert.False(File.Exists(store.BlobPath(stray)), "a file no row names must be deleted by the background check");
        // f1, fetched again, is committed as its response ends (a moment after the client has it all).
        await FetchEngineTests.WaitUntil(() => store.Scan().Count() == 3, TimeSpan.FromSeconds(10));
    }
}
