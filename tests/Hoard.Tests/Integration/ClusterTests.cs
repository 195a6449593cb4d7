using System.Security.Cryptography;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Several Hoard nodes sharing one Redis (Debian's redis-server) in front of one nginx upstream.</summary>
public sealed class ClusterTests
{
    private const string Secret = "cluster-test-secret-0123456789";

    private static async Task<List<HoardHost>> StartNodesAsync(TempDir temp, int count, RedisServer redis, string pypi, int fanout = 4)
    {
        var nodes = new List<HoardHost>();
        for (var i = 0; i < count; i++)
        {
            var port = Ports.Free();
            nodes.Add(await HoardHost.StartAsync(temp.Sub("node" + i), o =>
            {
                o.Listen = $"http://127.0.0.1:{port}";
                o.Advertise = $"http://127.0.0.1:{port}";
                o.ClusterRedis = redis.Url;
                o.ClusterSecret = Secret;
                o.PeerFanout = fanout;
                o.ConnectTimeout = TimeSpan.FromSeconds(2);
                PipTests.SetPypi(o, pypi);
            }));
        }
        return nodes;
    }

    [Fact]
    public async Task The_same_blob_asked_of_every_node_at_once_is_downloaded_from_upstream_once()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("shared", "1.0", extraBytes: 16 * 1024 * 1024);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root, "location /packages/ { limit_rate 16m; }");
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        var nodes = await StartNodesAsync(temp, 3, redis, nginx.BaseUrl + "/simple/");
        try
        {
            using var http = new HttpClient();
            // Pages first (each node's own index cache), then every node asks for the file at the same moment.
            foreach (var node in nodes)
            {
                await http.GetStringAsync(node.BaseUrl + "/simple/shared/");
            }
            var results = await Task.WhenAll(nodes.Select(async n =>
                Convert.ToHexStringLower(SHA256.HashData(await http.GetByteArrayAsync(n.BaseUrl + "/simple/shared/" + wheel.Filename)))));
            Assert.All(results, sha => Assert.Equal(wheel.Sha256, sha));
            Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));
            // Every node now holds it, verified, in its own store.
            Assert.All(nodes, n => Assert.True(n.Service<Hoard.Core.Storage.CacheIndex>().TryGetBlob(wheel.Sha256, out _)));
            Assert.Equal("3", await redis.CliAsync("SCARD", "hoard:blob:" + wheel.Sha256));
            // hoard status lists the three nodes, each holding the blob.
            var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "status", "--cluster-redis", redis.Url]);
            Assert.True(code == 0, output);
            Assert.Contains("3 live node(s)", output, StringComparison.Ordinal);
            Assert.Equal(3, output.Split('\n').Count(l => l.Contains("1 blob(s)", StringComparison.Ordinal)));
            await FetchEngineTests.WaitUntil(() => nodes[0].Metrics.Render().Contains("hoard_cluster_nodes 3", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
            Assert.True(nodes.Sum(n => n.Metrics.Get("hoard_peer_bytes_total")) > 0);
        }
        finally
        {
            foreach (var n in nodes)
            {
                await n.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_node_at_its_fanout_limit_refuses_and_the_peer_streams_from_another_node_that_is_still_downloading()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("tree", "1.0", extraBytes: 16 * 1024 * 1024);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root, "location /packages/ { limit_rate 8m; }");
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        var nodes = await StartNodesAsync(temp, 3, redis, nginx.BaseUrl + "/simple/", fanout: 1);
        try
        {
            using var http = new HttpClient();
            foreach (var node in nodes)
            {
                await http.GetStringAsync(node.BaseUrl + "/simple/tree/");
            }
            var url = "/simple/tree/" + wheel.Filename;
            var first = http.GetByteArrayAsync(nodes[0].BaseUrl + url);
            await FetchEngineTests.WaitUntil(() => nginx.Lines.Any(l => l.Contains(wheel.Filename, StringComparison.Ordinal)) || nodes[0].Service<Hoard.Core.Fetch.FetchEngine>().InFlight > 0, TimeSpan.FromSeconds(10));
            var second = http.GetByteArrayAsync(nodes[1].BaseUrl + url);
            await FetchEngineTests.WaitUntil(() => nodes[1].Service<Hoard.Core.Fetch.FetchEngine>().InFlight > 0, TimeSpan.FromSeconds(10));
            var third = http.GetByteArrayAsync(nodes[2].BaseUrl + url);
            foreach (var bytes in await Task.WhenAll(first, second, third))
            {
                Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(bytes)));
            }
            Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));
            // Node 2 was refused by node 0 (fan-out 1, busy with node 1) or went to node 1 directly; either way it
            // got its copy from a peer, not from upstream.
            var id1 = File.ReadAllText(Path.Combine(temp.Path, "node1", "node-id")).Trim()[..8];
            Assert.Equal(1, nodes[2].Metrics.Get($"hoard_peer_requests_total{{node=\"{id1}\",result=\"ok\"}}"));
        }
        finally
        {
            foreach (var n in nodes)
            {
                await n.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_node_killed_mid_transfer_leaves_its_peer_to_finish_from_upstream_with_correct_bytes()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("fragile", "1.0", extraBytes: 16 * 1024 * 1024);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root, "location /packages/ { limit_rate 4m; }");
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        var port = Ports.Free();
        // Node A is a real process, so it can be killed -9 while it is the one downloading.
        await using var nodeA = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--advertise", $"http://127.0.0.1:{port}", "--data", temp.Sub("a"),
            "--cluster-redis", redis.Url, "--cluster-secret", Secret, "--pypi", nginx.BaseUrl + "/simple/"]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        var nodes = await StartNodesAsync(temp, 1, redis, nginx.BaseUrl + "/simple/");
        var nodeB = nodes[0];
        try
        {
            using var http = new HttpClient();
            var url = "/simple/fragile/" + wheel.Filename;
            using var fromA = await http.GetAsync($"http://127.0.0.1:{port}{url}", HttpCompletionOption.ResponseHeadersRead);
            await using var bodyA = await fromA.Content.ReadAsStreamAsync();
            await bodyA.ReadExactlyAsync(new byte[64 * 1024]);
            await http.GetStringAsync(nodeB.BaseUrl + "/simple/fragile/");
            var fromB = http.GetByteArrayAsync(nodeB.BaseUrl + url);
            await FetchEngineTests.WaitUntil(() => nodeB.Metrics.Get("hoard_peer_requests_total{node=\"" + File.ReadAllText(Path.Combine(temp.Path, "a", "node-id")).Trim()[..8] + "\",result=\"ok\"}") == 1, TimeSpan.FromSeconds(10));
            await nodeA.KillAsync();
            var bytes = await fromB;
            Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(bytes)));
            Assert.Equal(1, nodeB.Metrics.Get("hoard_upstream_resumes_total{upstream=\"127.0.0.1\"}"));
            Assert.Contains(nginx.Lines, l => l.Contains("/packages/" + wheel.Filename, StringComparison.Ordinal) && l.Contains("\"bytes=", StringComparison.Ordinal));
        }
        finally
        {
            await nodeB.DisposeAsync();
        }
    }

    [Fact]
    public async Task Nodes_keep_working_without_redis_and_rejoin_when_it_returns_and_unsigned_peer_requests_are_refused()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var a = index.AddWheel("alone-a", "1.0", extraBytes: 100_000);
        var b = index.AddWheel("alone-b", "1.0", extraBytes: 100_000);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        var redis = new RedisServer();
        await redis.StartAsync();
        var nodes = await StartNodesAsync(temp, 2, redis, nginx.BaseUrl + "/simple/");
        try
        {
            using var http = new HttpClient();
            var id = File.ReadAllText(Path.Combine(temp.Path, "node0", "node-id")).Trim();
            await FetchEngineTests.WaitUntil(() => redis.CliAsync("EXISTS", "hoard:node:" + id).Result == "1", TimeSpan.FromSeconds(10));

            // No signature, a wrong one: refused.
            var (status, _) = await RawHttp.GetAsync(nodes[0].BaseUrl, "/_hoard/peer/blob/" + a.Sha256);
            Assert.Equal(403, status);

            var port = redis.Port;
            await redis.DisposeAsync();
            var got = await http.GetByteArrayAsync(nodes[1].BaseUrl + "/simple/alone-b/" + b.Filename);
            Assert.Equal(b.Sha256, Convert.ToHexStringLower(SHA256.HashData(got)));
            Assert.True(nodes[1].Logs.Contains("Redis unreachable"), string.Join("\n", nodes[1].Logs.Lines.Where(l => l.Contains("Cluster", StringComparison.Ordinal) || l.Contains("Redis", StringComparison.Ordinal))));

            redis = new RedisServer(port);
            await redis.StartAsync();
            await FetchEngineTests.WaitUntil(() => redis.CliAsync("EXISTS", "hoard:node:" + id).Result == "1", TimeSpan.FromSeconds(15));
            await FetchEngineTests.WaitUntil(() => nodes[1].Logs.Contains("Redis is back"), TimeSpan.FromSeconds(15));
        }
        finally
        {
            foreach (var n in nodes)
            {
                await n.DisposeAsync();
            }
            await redis.DisposeAsync();
        }
    }
}
