using System.Security.Cryptography;
using Hoard.Core.Cluster;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// Cluster sharing of artifacts whose digest is unknown until downloaded (/files/): by key, with the key's lock, and
/// after the commit through the digest the cluster published for the key. Nodes as in <see cref="ClusterTests"/>.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class ClusterKeyedTests
{
    private static string WriteRandom(string path, int bytes)
    {
        var data = new byte[bytes];
        RandomNumberGenerator.Fill(data);
        File.WriteAllBytes(path, data);
        return Convert.ToHexStringLower(SHA256.HashData(data));
    }

    private static async Task<string> Sha256Async(HttpClient http, string url)
    {
        await using var body = await http.GetStreamAsync(url);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(body));
    }

    [Fact]
    public async Task A_files_download_asked_of_two_nodes_at_once_comes_from_upstream_once_and_a_later_node_takes_it_from_a_peer()
    {
        using var temp = new TempDir();
        const int size = 100 * 1024 * 1024;
        var sha = WriteRandom(Path.Combine(temp.Sub("upstream"), "big.bin"), size);
        // 40 MB/s: the two downloads overlap for seconds, the second node's request arriving well inside the first's.
        await using var nginx = new Nginx(Path.Combine(temp.Path, "upstream"), "limit_rate 40m;");
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        void Files(HoardOptions o) => PipTests.SetFiles(o, "dl=" + nginx.BaseUrl + "/");
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 2, redis, Files);
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };

        var responses = await Task.WhenAll(nodes.Select(n => http.GetAsync(n.BaseUrl + "/files/dl/big.bin", HttpCompletionOption.ResponseHeadersRead)));
        try
        {
            // Both are answering while the one upstream GET is still running (nginx logs a request when it ends): the
            // second node streams the first one's download, it does not wait for its commit.
            Assert.Equal(0, nginx.Count("/big.bin"));
            var results = await Task.WhenAll(responses.Select(async r =>
            {
                await using var body = await r.Content.ReadAsStreamAsync();
                return Convert.ToHexStringLower(await SHA256.HashDataAsync(body));
            }));
            Assert.All(results, r => Assert.Equal(sha, r));
        }
        finally
        {
            foreach (var response in responses)
            {
                response.Dispose();
            }
        }
        Assert.Equal(1, nginx.Count("/big.bin"));
        // One client's bytes came from the other node's download in progress.
        await FetchEngineTests.WaitUntil(() => nodes.Sum(n => n.Metrics.ServedFromPeerBytes) >= size, TimeSpan.FromSeconds(10));

        // Both committed it; the key's digest is published, with an expiry, and the key's lock is released.
        var keyId = ClusterRecords.KeyId("files/dl/big.bin");
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("GET", "hoard:keydigest:" + keyId).Result == sha, TimeSpan.FromSeconds(10));
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("ZCARD", "hoard:holders:" + sha).Result == "2", TimeSpan.FromSeconds(10));
        Assert.InRange(int.Parse(await redis.CliAsync("TTL", "hoard:keydigest:" + keyId), System.Globalization.CultureInfo.InvariantCulture), 1, 30 * 60);
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("EXISTS", "hoard:lock:key:" + keyId).Result == "0", TimeSpan.FromSeconds(10));

        // A node that joins later takes it from a holder (checked against the published digest): upstream is not asked.
        await using var late = await ClusterTests.StartNodeAsync(temp.Sub("late"), redis, Files);
        Assert.Equal(sha, await Sha256Async(http, late.BaseUrl + "/files/dl/big.bin"));
        Assert.Equal(1, nginx.Count("/big.bin"));
        await FetchEngineTests.WaitUntil(() => late.Metrics.ServedFromPeerBytes >= size, TimeSpan.FromSeconds(10));
        await late.SettledAsync();
        Assert.True(late.Service<Hoard.Core.Storage.CacheIndex>().TryGetEntry("files/dl/big.bin", out var entry) && entry.Blob.Digest == sha);
    }

    /// <summary>
    /// Node A (a process, to be killed -9) downloads /files/dl/fragile.bin from a slow nginx; node B (in-process)
    /// streams that download from A. Returns once B's peer request to A is answered.
    /// </summary>
    private static async Task<(HoardProcess A, ClusterTests.Nodes B, Task<byte[]> FromB, HttpResponseMessage FromA)> StreamFromADownloadAsync(
        TempDir temp, Nginx nginx, RedisServer redis, HttpClient http)
    {
        var port = Ports.Free();
        var a = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--advertise", $"http://127.0.0.1:{port}", "--data", temp.Sub("a"),
            "--cluster-redis", redis.Url, "--cluster-secret", ClusterTests.Secret, "--files", "dl=" + nginx.BaseUrl + "/"]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        var fromA = await http.GetAsync($"http://127.0.0.1:{port}/files/dl/fragile.bin", HttpCompletionOption.ResponseHeadersRead);
        await (await fromA.Content.ReadAsStreamAsync()).ReadExactlyAsync(new byte[64 * 1024]);
        var b = await ClusterTests.StartNodesAsync(temp, 1, redis, o => PipTests.SetFiles(o, "dl=" + nginx.BaseUrl + "/"));
        var fromB = http.GetByteArrayAsync(b[0].BaseUrl + "/files/dl/fragile.bin");
        await FetchEngineTests.WaitUntil(() => b[0].Metrics.Get($"hoard_peer_requests_total{{node=\"{ClusterTests.NodeId(temp, "a")[..8]}\",result=\"ok\"}}") == 1, TimeSpan.FromSeconds(10));
        return (a, b, fromB, fromA);
    }

    [Fact]
    public async Task A_node_killed_while_a_peer_streams_its_key_download_leaves_the_peer_to_finish_from_upstream_with_range()
    {
        using var temp = new TempDir();
        var sha = WriteRandom(Path.Combine(temp.Sub("upstream"), "fragile.bin"), 16 * 1024 * 1024);
        await using var nginx = new Nginx(Path.Combine(temp.Path, "upstream"), "limit_rate 4m;");
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        using var http = new HttpClient();
        var (a, b, fromB, fromA) = await StreamFromADownloadAsync(temp, nginx, redis, http);
        await using var _a = a;
        await using var _b = b;
        using var _fromA = fromA;

        await a.KillAsync();
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(await fromB)));
        Assert.Equal(1, b[0].Metrics.Get("hoard_upstream_resumes_total{protocol=\"files\",upstream=\"dl\"}"));
        Assert.Contains(nginx.Lines, l => l.Contains("/fragile.bin", StringComparison.Ordinal) && l.Contains("\"bytes=", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_key_streamed_from_a_peer_that_died_is_not_spliced_with_a_changed_upstream_file()
    {
        using var temp = new TempDir();
        var path = Path.Combine(temp.Sub("upstream"), "fragile.bin");
        WriteRandom(path, 16 * 1024 * 1024);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddDays(-1));
        await using var nginx = new Nginx(Path.Combine(temp.Path, "upstream"), "limit_rate 4m;");
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        using var http = new HttpClient();
        var (a, b, fromB, fromA) = await StreamFromADownloadAsync(temp, nginx, redis, http);
        await using var _a = a;
        await using var _b = b;
        using var _fromA = fromA;

        // Replaced upstream (same size, new Last-Modified) while B has only part of the old one: no digest pins the
        // key, so the resume is pinned by upstream's Last-Modified, which A passed on, and refused.
        WriteRandom(path, 16 * 1024 * 1024);
        await a.KillAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => fromB);
        await b[0].SettledAsync();
        Assert.False(b[0].Service<Hoard.Core.Storage.CacheIndex>().TryGetEntry("files/dl/fragile.bin", out _));
        Assert.Equal(0, b[0].Metrics.Get("hoard_upstream_resumes_total{protocol=\"files\",upstream=\"dl\"}"));
    }

    [Fact]
    public async Task Content_fetched_with_credentials_goes_to_a_peer_only_for_its_own_key_and_mutable_files_are_not_shared_by_key()
    {
        using var temp = new TempDir();
        var root = temp.Sub("upstream");
        var sha = WriteRandom(Path.Combine(root, "secret.bin"), 1024 * 1024);
        File.WriteAllText(Path.Combine(root, "latest.txt"), "v1");
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 2, redis, o =>
        {
            // Credentials in the URL: what it gives is this key's alone (not public, not shared by digest).
            PipTests.SetFiles(o, $"sec=http://user:pass@127.0.0.1:{nginx.Port}/");
            PipTests.SetFiles(o, "open=" + nginx.BaseUrl + "/");
            o.FilesTtl["open"] = TimeSpan.FromHours(1);
        });
        using var http = new HttpClient();

        Assert.Equal(sha, await Sha256Async(http, nodes[0].BaseUrl + "/files/sec/secret.bin"));
        const string key = "files/sec/secret.bin";
        var keyId = ClusterRecords.KeyId(key);
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("GET", "hoard:keydigest:" + keyId).Result == sha, TimeSpan.FromSeconds(10));

        // Signed as a cluster node would: the key's content for that key, nothing for another key or another purpose.
        var id0 = ClusterTests.NodeId(temp, "node0");
        var signer = new PeerSignature(System.Text.Encoding.UTF8.GetBytes(ClusterTests.Secret), TimeProvider.System);
        async Task<int> Ask(string path, string purpose) =>
            await ClusterTests.PeerStatusAsync(http, nodes[0].BaseUrl + path, signer.Sign("GET", path, null, purpose, "node-x", id0), purpose);
        var byKey = "/_hoard/peer/key/" + keyId;
        var byDigest = "/_hoard/peer/blob/" + sha;
        Assert.Equal(200, await Ask(byKey, "key " + Uri.EscapeDataString(key)));
        Assert.Equal(200, await Ask(byDigest, "key " + Uri.EscapeDataString(key)));
        Assert.Equal(400, await Ask(byKey, "key " + Uri.EscapeDataString("files/sec/other.bin")));
        Assert.Equal(400, await Ask(byKey, "public"));
        Assert.Equal(400, await Ask(byKey, "authorised"));
        Assert.Equal(404, await Ask(byDigest, "key " + Uri.EscapeDataString("files/sec/other.bin")));
        Assert.Equal(404, await Ask(byDigest, "public"));
        Assert.Equal(404, await Ask("/_hoard/peer/key/" + ClusterRecords.KeyId("files/sec/other.bin"), "key " + Uri.EscapeDataString("files/sec/other.bin")));

        // The other node asks for the same key: from node 0, not from upstream.
        Assert.Equal(sha, await Sha256Async(http, nodes[1].BaseUrl + "/files/sec/secret.bin"));
        Assert.Equal(1, nginx.Count("/secret.bin"));

        // A file that revalidates (a TTL) is not shared by key: each node asks upstream, nothing is published.
        Assert.Equal("v1", await http.GetStringAsync(nodes[0].BaseUrl + "/files/open/latest.txt"));
        await nodes[0].SettledAsync();
        Assert.Equal("v1", await http.GetStringAsync(nodes[1].BaseUrl + "/files/open/latest.txt"));
        Assert.Equal(2, nginx.Count("/latest.txt"));
        Assert.Equal("0", await redis.CliAsync("EXISTS", "hoard:keydigest:" + ClusterRecords.KeyId("files/open/latest.txt")));
    }
}
