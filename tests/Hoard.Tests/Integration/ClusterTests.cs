using System.Security.Cryptography;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Several Hoard nodes sharing one Redis (Debian's redis-server) in front of one nginx upstream.</summary>
[Collection(SerialCollection.Name)]
public sealed class ClusterTests
{
    internal const string Secret = "cluster-test-secret-0123456789";

    /// <summary>In-process nodes, stopped together.</summary>
    internal sealed class Nodes : List<HoardHost>, IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var node in this)
            {
                await node.DisposeAsync();
            }
        }
    }

    /// <summary>One wheel of the given size behind a started nginx whose file downloads are rate-limited.</summary>
    private static async Task<(BuiltWheel Wheel, Nginx Nginx)> WheelBehindNginxAsync(TempDir temp, string project, long bytes, string rate)
    {
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel(project, "1.0", extraBytes: bytes);
        index.WriteHtml();
        var nginx = new Nginx(index.Root, $"location /packages/ {{ limit_rate {rate}; }}");
        await nginx.StartAsync();
        return (wheel, nginx);
    }

    private static async Task<Nodes> StartNodesAsync(TempDir temp, int count, RedisServer redis, string pypi, int fanout = 4, string prefix = "node") =>
        await StartNodesAsync(temp, count, redis, o => PipTests.SetPypi(o, pypi), fanout, prefix);

    internal static async Task<Nodes> StartNodesAsync(TempDir temp, int count, RedisServer redis, Action<HoardOptions> configure, int fanout = 4, string prefix = "node")
    {
        var nodes = new Nodes();
        for (var i = 0; i < count; i++)
        {
            nodes.Add(await StartNodeAsync(temp.Sub(prefix + i), redis, configure, fanout));
        }
        return nodes;
    }

    internal static Task<HoardHost> StartNodeAsync(string dataDir, RedisServer redis, Action<HoardOptions> configure, int fanout = 4)
    {
        var port = Ports.Free();
        return HoardHost.StartAsync(dataDir, o =>
        {
            o.Listen = [$"http://127.0.0.1:{port}"];
            o.Advertise = $"http://127.0.0.1:{port}";
            o.ClusterRedis = redis.Url;
            o.ClusterSecret = Secret;
            o.PeerFanout = fanout;
            o.ConnectTimeout = TimeSpan.FromSeconds(2);
            configure(o);
        });
    }

    internal static string NodeId(TempDir temp, string node) => File.ReadAllText(Path.Combine(temp.Path, node, "node-id")).Trim();

    /// <summary>Node A as a real process (so it can be killed -9), in the cluster, with its PyPI upstream.</summary>
    private static async Task<(HoardProcess Process, string BaseUrl)> StartProcessNodeAsync(TempDir temp, RedisServer redis, string pypi)
    {
        var port = Ports.Free();
        var process = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--advertise", $"http://127.0.0.1:{port}", "--data", temp.Sub("a"),
            "--cluster-redis", redis.Url, "--cluster-secret", Secret, "--pypi", pypi]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        return (process, $"http://127.0.0.1:{port}");
    }

    [Fact]
    public async Task The_same_blob_asked_of_every_node_at_once_is_downloaded_from_upstream_once()
    {
        using var temp = new TempDir();
        var (wheel, nginx) = await WheelBehindNginxAsync(temp, "shared", 16 * 1024 * 1024, "16m");
        await using var _nginx = nginx;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await StartNodesAsync(temp, 3, redis, nginx.BaseUrl + "/simple/");
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
        // Every node now holds it, verified, in its own store (committed just after its client had the bytes).
        await FetchEngineTests.WaitUntil(() => nodes.All(n => n.Service<Hoard.Core.Storage.CacheIndex>().TryGetBlob(wheel.Sha256, out _)), TimeSpan.FromSeconds(10));
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("ZCARD", "hoard:holders:" + wheel.Sha256).Result == "3", TimeSpan.FromSeconds(10));
        // hoard status lists the three nodes, each holding the blob.
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "status", "--cluster-redis", redis.Url]);
        Assert.True(code == 0, output);
        Assert.Contains("3 live node(s)", output, StringComparison.Ordinal);
        Assert.Equal(3, output.Split('\n').Count(l => l.Contains("1 blob(s)", StringComparison.Ordinal)));
        await FetchEngineTests.WaitUntil(() => nodes[0].Metrics.Render().Contains("hoard_cluster_nodes 3", StringComparison.Ordinal), TimeSpan.FromSeconds(10));
        Assert.True(nodes.Sum(n => n.Metrics.Get("hoard_peer_bytes_total")) > 0);
        // Two of the three clients were served bytes that came from a peer, not from upstream.
        await FetchEngineTests.WaitUntil(() => nodes.Sum(n => n.Metrics.ServedFromPeerBytes) >= 2 * new FileInfo(wheel.Path).Length, TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_file_another_node_holds_is_served_from_that_peer_and_says_peer()
    {
        using var temp = new TempDir();
        var (wheel, nginx) = await WheelBehindNginxAsync(temp, "peered", 1024 * 1024, "64m");
        await using var _nginx = nginx;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await StartNodesAsync(temp, 2, redis, nginx.BaseUrl + "/simple/");
        using var http = new HttpClient();
        var url = "/simple/peered/" + wheel.Filename;
        await http.GetStringAsync(nodes[0].BaseUrl + "/simple/peered/");
        using (var first = await http.GetAsync(nodes[0].BaseUrl + url))
        {
            Assert.Equal("MISS", first.Headers.GetValues("X-Hoard-Cache").Single());
        }
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("ZCARD", "hoard:holders:" + wheel.Sha256).Result == "1", TimeSpan.FromSeconds(10));

        await http.GetStringAsync(nodes[1].BaseUrl + "/simple/peered/");
        using var second = await http.GetAsync(nodes[1].BaseUrl + url);
        Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(await second.Content.ReadAsByteArrayAsync())));
        Assert.Equal("PEER", second.Headers.GetValues("X-Hoard-Cache").Single());
        Assert.Contains("detail=peer", second.Headers.GetValues("Cache-Status").Single(), StringComparison.Ordinal);
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));
        await FetchEngineTests.WaitUntil(() => nodes[1].Metrics.GetRequests("pypi", Hoard.Core.Metrics.CacheOutcome.Peer) == 1, TimeSpan.FromSeconds(5));
        // Its one miss is the index page, which each node keeps itself.
        Assert.Equal(1, nodes[1].Metrics.GetRequests("pypi", Hoard.Core.Metrics.CacheOutcome.Miss));
        Predicate<string> peerLine = l => l.Contains($" access: GET {url} 200 peer ", StringComparison.Ordinal);
        Assert.Contains(await nodes[1].AccessLogAsync(peerLine), peerLine);
    }

    [Fact]
    public async Task A_node_at_its_fanout_limit_refuses_and_the_peer_streams_from_another_node_that_is_still_downloading()
    {
        using var temp = new TempDir();
        var (wheel, nginx) = await WheelBehindNginxAsync(temp, "tree", 16 * 1024 * 1024, "4m");
        await using var _nginx = nginx;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await StartNodesAsync(temp, 3, redis, nginx.BaseUrl + "/simple/", fanout: 1);
        using var http = new HttpClient();
        foreach (var node in nodes)
        {
            await http.GetStringAsync(node.BaseUrl + "/simple/tree/");
        }
        var url = "/simple/tree/" + wheel.Filename;
        // Each step waits for the previous node to be where the test needs it (a download in flight is not yet the
        // lock, nor a stream from a peer): node 0 holds the lock, then node 1 streams from node 0, then node 2 asks.
        var first = http.GetByteArrayAsync(nodes[0].BaseUrl + url);
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("GET", "hoard:lock:" + wheel.Sha256).Result == NodeId(temp, "node0"), TimeSpan.FromSeconds(10));
        var second = http.GetByteArrayAsync(nodes[1].BaseUrl + url);
        await FetchEngineTests.WaitUntil(() => nodes[1].Metrics.Get($"hoard_peer_requests_total{{node=\"{NodeId(temp, "node0")[..8]}\",result=\"ok\"}}") == 1, TimeSpan.FromSeconds(10));
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

    [Fact]
    public async Task A_node_killed_mid_transfer_leaves_its_peer_to_finish_from_upstream_with_correct_bytes()
    {
        using var temp = new TempDir();
        var (wheel, nginx) = await WheelBehindNginxAsync(temp, "fragile", 16 * 1024 * 1024, "4m");
        await using var _nginx = nginx;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        var (nodeA, urlA) = await StartProcessNodeAsync(temp, redis, nginx.BaseUrl + "/simple/");
        await using var _nodeA = nodeA;
        await using var nodes = await StartNodesAsync(temp, 1, redis, nginx.BaseUrl + "/simple/");
        var nodeB = nodes[0];
        using var http = new HttpClient();
        var url = "/simple/fragile/" + wheel.Filename;
        using var fromA = await http.GetAsync(urlA + url, HttpCompletionOption.ResponseHeadersRead);
        await using var bodyA = await fromA.Content.ReadAsStreamAsync();
        await bodyA.ReadExactlyAsync(new byte[64 * 1024]);
        await http.GetStringAsync(nodeB.BaseUrl + "/simple/fragile/");
        var fromB = http.GetByteArrayAsync(nodeB.BaseUrl + url);
        await FetchEngineTests.WaitUntil(() => nodeB.Metrics.Get("hoard_peer_requests_total{node=\"" + NodeId(temp, "a")[..8] + "\",result=\"ok\"}") == 1, TimeSpan.FromSeconds(10));
        await nodeA.KillAsync();
        var bytes = await fromB;
        Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(bytes)));
        Assert.Equal(1, nodeB.Metrics.Get("hoard_upstream_resumes_total{protocol=\"pypi\",upstream=\"127.0.0.1\"}"));
        Assert.Contains(nginx.Lines, l => l.Contains("/packages/" + wheel.Filename, StringComparison.Ordinal) && l.Contains("\"bytes=", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_lock_holder_that_dies_before_anyone_streams_from_it_is_taken_over_without_waiting_for_its_lock_to_expire()
    {
        using var temp = new TempDir();
        var (wheel, nginx) = await WheelBehindNginxAsync(temp, "orphan", 8 * 1024 * 1024, "2m");
        await using var _nginx = nginx;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        var (nodeA, urlA) = await StartProcessNodeAsync(temp, redis, nginx.BaseUrl + "/simple/");
        await using var _nodeA = nodeA;
        using var http = new HttpClient();
        var url = "/simple/orphan/" + wheel.Filename;
        // A takes the cluster lock for the digest and starts downloading; then it dies, lock and all.
        var fromA = http.GetAsync(urlA + url, HttpCompletionOption.ResponseHeadersRead);
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("GET", "hoard:lock:" + wheel.Sha256).Result == NodeId(temp, "a"), TimeSpan.FromSeconds(15));
        await nodeA.KillAsync();
        try
        {
            (await fromA).Dispose();
        }
        catch (HttpRequestException)
        {
        }

        await using var nodes = await StartNodesAsync(temp, 1, redis, nginx.BaseUrl + "/simple/");
        var nodeB = nodes[0];
        var bytes = await http.GetByteArrayAsync(nodeB.BaseUrl + url);
        Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(bytes)));
        // B found A unreachable, released A's lock and took it, instead of waiting out the lock's 15 s expiry.
        Assert.Equal(1, nodeB.Metrics.Get("hoard_cluster_lock_takeovers_total"));
        Assert.True(nodeB.Logs.Contains("released its download lock"), string.Join("\n", nodeB.Logs.Lines));
        Assert.Equal(2, nginx.Count("/packages/" + wheel.Filename)); // A's broken download, B's whole one
    }

    [Fact]
    public async Task A_peer_that_dies_mid_transfer_is_replaced_by_another_holder_with_range_and_upstream_is_not_asked_again()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("relay", "1.0", extraBytes: 16 * 1024 * 1024);
        index.WriteHtml();
        await using var slow = new Nginx(index.Root, "location /packages/ { limit_rate 4m; }");
        await slow.StartAsync();
        await using var fast = new Nginx(index.Root);
        await fast.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        using var http = new HttpClient();
        var url = "/simple/relay/" + wheel.Filename;

        // C already holds the file in its store (fetched alone, before it joined the cluster).
        await using (var alone = await HoardHost.StartAsync(temp.Sub("c"), o => PipTests.SetPypi(o, fast.BaseUrl + "/simple/")))
        {
            Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(await http.GetByteArrayAsync(alone.BaseUrl + url))));
        }

        // A downloads from the slow upstream; B streams from A.
        var (nodeA, urlA) = await StartProcessNodeAsync(temp, redis, slow.BaseUrl + "/simple/");
        await using var _nodeA = nodeA;
        using var fromA = await http.GetAsync(urlA + url, HttpCompletionOption.ResponseHeadersRead);
        await using var nodes = await StartNodesAsync(temp, 1, redis, slow.BaseUrl + "/simple/", prefix: "b");
        var nodeB = nodes[0];
        await http.GetStringAsync(nodeB.BaseUrl + "/simple/relay/");
        var fromB = http.GetByteArrayAsync(nodeB.BaseUrl + url);
        await FetchEngineTests.WaitUntil(() => nodeB.Metrics.Get($"hoard_peer_requests_total{{node=\"{NodeId(temp, "a")[..8]}\",result=\"ok\"}}") == 1, TimeSpan.FromSeconds(10));

        // C joins and announces what its store holds; then A dies mid-transfer.
        await using var nodeC = await StartNodeAsync(temp.Sub("c"), redis, o => PipTests.SetPypi(o, slow.BaseUrl + "/simple/"));
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("ZSCORE", "hoard:holders:" + wheel.Sha256, NodeId(temp, "c")).Result.Length > 0, TimeSpan.FromSeconds(10));
        await nodeA.KillAsync();

        Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(SHA256.HashData(await fromB)));
        Assert.Equal(1, nodeB.Metrics.Get("hoard_peer_resumes_total"));
        Assert.Equal(0, nodeB.Metrics.Get("hoard_upstream_resumes_total{protocol=\"pypi\",upstream=\"127.0.0.1\"}"));
        Assert.Equal(1, slow.Count("/packages/" + wheel.Filename)); // A's, and no Range request from B
    }

    [Fact]
    public async Task Image_pulls_through_every_node_at_once_take_each_blob_from_the_registry_once()
    {
        var (temp, registry, single, _) = await OciTests.UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await StartNodesAsync(temp, 3, redis, o => OciTests.SetRegistry(o, registry));
        var pulls = nodes.Select((n, i) => Skopeo.PullAsync($"{new Uri(n.BaseUrl).Authority}/team/app:v1", temp.Sub("pull" + i))).ToArray();
        foreach (var (code, output) in await Task.WhenAll(pulls))
        {
            Assert.True(code == 0, output);
        }
        for (var i = 0; i < nodes.Count; i++)
        {
            OciTests.AssertPulled(Path.Combine(temp.Path, "pull" + i), single, all: true);
        }
        foreach (var blob in single.Blobs)
        {
            Assert.Equal(1, registry.Count("GET", "/blobs/" + blob));
        }
        Assert.True(nodes.Sum(n => n.Metrics.Get("hoard_peer_bytes_total")) > 0);
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
        await using var nodes = await StartNodesAsync(temp, 2, redis, nginx.BaseUrl + "/simple/");
        try
        {
            using var http = new HttpClient();
            var id = NodeId(temp, "node0");
            await FetchEngineTests.WaitUntil(() => redis.CliAsync("EXISTS", "hoard:node:" + id).Result == "1", TimeSpan.FromSeconds(10));

            // No signature, a malformed one (not hex, wrong shape): 401. A well-formed one made with another secret,
            // or a real one replayed for another purpose or range: 403.
            var path = "/_hoard/peer/blob/" + a.Sha256;
            var (status, _) = await RawHttp.GetAsync(nodes[0].BaseUrl, path);
            Assert.Equal(401, status);
            foreach (var malformed in new[] { "v1 1 node zz", "v1 " + DateTimeOffset.UtcNow.ToUnixTimeSeconds() + " node0 " + new string('g', 64), "1700000000.abc", "v1 x y z w" })
            {
                Assert.Equal(401, await PeerStatusAsync(http, nodes[0].BaseUrl + path, malformed, "public"));
            }
            var forger = new Hoard.Core.Cluster.PeerSignature("not-the-cluster-secret-at-all"u8.ToArray(), TimeProvider.System);
            Assert.Equal(403, await PeerStatusAsync(http, nodes[0].BaseUrl + path, forger.Sign("GET", path, null, "public", "node-x", id), "public"));
            var real = new Hoard.Core.Cluster.PeerSignature(System.Text.Encoding.UTF8.GetBytes(Secret), TimeProvider.System);
            Assert.Equal(403, await PeerStatusAsync(http, nodes[0].BaseUrl + path, real.Sign("GET", path, null, "public", "node-x", id), "authorised"));
            // Signed for another node: a request captured on its way to one node cannot be replayed to this one.
            Assert.Equal(403, await PeerStatusAsync(http, nodes[0].BaseUrl + path, real.Sign("GET", path, null, "public", "node-x", NodeId(temp, "node1")), "public"));
            Assert.Equal(404, await PeerStatusAsync(http, nodes[0].BaseUrl + path, real.Sign("GET", path, null, "public", "node-x", id), "public"));

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
            await redis.DisposeAsync();
        }
    }

    internal static async Task<int> PeerStatusAsync(HttpClient http, string url, string signature, string purpose)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.TryAddWithoutValidation("X-Hoard-Peer", signature);
        request.Headers.TryAddWithoutValidation("X-Hoard-Peer-For", purpose);
        using var response = await http.SendAsync(request);
        return (int)response.StatusCode;
    }
}
