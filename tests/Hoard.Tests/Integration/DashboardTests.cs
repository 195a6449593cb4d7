using System.Net.Http.Json;
using System.Text.RegularExpressions;
using Hoard.Core.Configuration;
using Hoard.Core.Hosting;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>The page at / as a person sees it: Debian's Chromium, headless, after real traffic.</summary>
[Collection(SerialCollection.Name)]
public sealed class DashboardTests
{
    private const string Token = "dashboard-admin-token-0123456789";

    [Fact]
    public async Task The_dashboard_shows_hit_ratio_bytes_saved_cached_names_and_a_download_in_flight_with_its_progress()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var tool = new byte[200_000];
        Random.Shared.NextBytes(tool);
        await File.WriteAllBytesAsync(Path.Combine(root, "tool-1.2.tar.gz"), tool);
        var big = new byte[64 * 1024 * 1024];
        await File.WriteAllBytesAsync(Path.Combine(root, "big-image-layer.bin"), big);
        // Slow enough that the big download is still running while the page is looked at.
        await using var nginx = new Nginx(root, "location /big-image-layer.bin { limit_rate 1m; }");
        await nginx.StartAsync();
        var tokenFile = Path.Combine(temp.Path, "admin-token");
        await File.WriteAllTextAsync(tokenFile, Token);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
            o.AdminToken = Token;
        });
        using var http = new HttpClient();
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(tool, await http.GetByteArrayAsync(hoard.BaseUrl + "/files/up/tool-1.2.tar.gz"));
        }
        using var slow = await http.GetAsync(hoard.BaseUrl + "/files/up/big-image-layer.bin", HttpCompletionOption.ResponseHeadersRead);
        await using var slowBody = await slow.Content.ReadAsStreamAsync();
        await slowBody.ReadExactlyAsync(new byte[512 * 1024]);
        // The small file is stored (the big one is still coming); access times reach SQLite in a flush, and the page
        // lists what SQLite knows.
        var engine = hoard.Service<Hoard.Core.Fetch.FetchEngine>();
        await FetchEngineTests.WaitUntil(() => engine.Stats.Blobs == 1, TimeSpan.FromSeconds(10));
        engine.FlushAccessTimes();
        // A pin (hoard pin makes them from warmed items; PinTests drives that): listed with its kind and size.
        Assert.True(engine.Pin("tools==1.2", "package", [engine.StoredDigests().Single()], out var refusal, out _), refusal);

        var page = $"{hoard.BaseUrl}/#token={Token}";
        var dom = await ChromiumAsync(temp, "--dump-dom", page);
        Assert.Contains("id=\"hit-ratio\">75.0%</b>", dom, StringComparison.Ordinal);          // 3 hits of 4 answered requests (the slow one counts when it ends)
        Assert.Contains("files/up/tool-1.2.tar.gz", dom, StringComparison.Ordinal);            // a cached artifact by name
        Assert.Matches(@"files/up/big-image-layer\.bin</td><td>[0-9.]+ (KiB|MiB) of 64\.0 MiB \([0-9.]+%\)</td>", dom); // in flight, with progress
        Assert.Contains("id=\"cluster\">alone</b>", dom, StringComparison.Ordinal);
        Assert.Contains("Single node: not in a cluster.", dom, StringComparison.Ordinal);
        Assert.Contains("1 pin(s) keeping 195.3 KiB of at most ", dom, StringComparison.Ordinal);
        Assert.Contains("<td>tools==1.2</td><td>package</td><td>195.3 KiB</td><td>1</td><td>0</td>", dom, StringComparison.Ordinal);
        Assert.Contains("upstream", dom, StringComparison.Ordinal);
        // Most requested: the file asked for four times, with its size; the big one once, not stored yet.
        Assert.Contains("<td>files/up/tool-1.2.tar.gz</td><td>4</td><td>195.3 KiB</td>", dom, StringComparison.Ordinal);
        Assert.Contains("<td>files/up/big-image-layer.bin</td><td>1</td><td>not stored</td>", dom, StringComparison.Ordinal);

        // Without the token the names are not shown, and the page says how to see them.
        var anonymous = await ChromiumAsync(temp, "--dump-dom", hoard.BaseUrl + "/");
        Assert.DoesNotContain("files/up/tool-1.2.tar.gz", anonymous, StringComparison.Ordinal);
        Assert.Contains("Artifact names are shown with the admin token", anonymous, StringComparison.Ordinal);

        var png = Path.Combine(Path.GetTempPath(), "hoard-dashboard.png");
        File.Delete(png);
        await ChromiumAsync(temp, "--screenshot=" + png, "--window-size=1280,1400", page);
        Assert.True(new FileInfo(png).Length > 10_000, "a screenshot of the page");
    }

    [Fact]
    public async Task In_a_cluster_the_dashboard_lists_the_other_node_alive_with_the_bytes_fetched_from_it_and_the_most_requested_file()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var shared = new byte[300_000];
        Random.Shared.NextBytes(shared);
        await File.WriteAllBytesAsync(Path.Combine(root, "shared-3.1.tar.gz"), shared);
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 2, redis, o =>
        {
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
            o.AdminToken = Token;
        });
        var (id0, id1) = (ClusterTests.NodeId(temp, "node0"), ClusterTests.NodeId(temp, "node1"));
        using var http = new HttpClient();
        // Node 1 downloads the file and tells the cluster which digest the key is; node 0 then fetches it from node 1
        // (a real peer transfer), and is asked for it twice more (hits).
        const string path = "/files/up/shared-3.1.tar.gz";
        Assert.Equal(shared, await http.GetByteArrayAsync(nodes[1].BaseUrl + path));
        var keyDigest = "hoard:keydigest:" + Hoard.Core.Cluster.ClusterRecords.KeyId("files/up/shared-3.1.tar.gz");
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("EXISTS", keyDigest).Result == "1", TimeSpan.FromSeconds(10));
        using (var peered = await http.GetAsync(nodes[0].BaseUrl + path))
        {
            Assert.Equal("PEER", peered.Headers.GetValues("X-Hoard-Cache").Single());
            Assert.Equal(shared, await peered.Content.ReadAsByteArrayAsync());
        }
        await nodes[0].SettledAsync();
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(shared, await http.GetByteArrayAsync(nodes[0].BaseUrl + path));
        }
        Assert.Equal(1, nginx.Count("/shared-3.1.tar.gz"));
        // Each node publishes its store with its heartbeat (every 3 s): wait for node 1's to count the file.
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("HGET", "hoard:nodeinfo:" + id1, "blobs").Result == "1", TimeSpan.FromSeconds(10));

        var dom = await ChromiumAsync(temp, "--dump-dom", $"{nodes[0].BaseUrl}/#token={Token}");
        // The other node, by id and address, alive, and the 300,000 bytes (293.0 KiB) node 0 fetched from it.
        Assert.Matches($@"<tr><td>{id1[..8]}</td><td>{Regex.Escape(nodes[1].BaseUrl)}</td><td>alive</td><td>\d+ s ago</td><td>[0-9.]+ [KM]iB, 1 blobs</td><td>0 B</td><td>293\.0 KiB</td></tr>", dom);
        Assert.Contains($"<td>{id0[..8]} (this node)</td>", dom, StringComparison.Ordinal);
        Assert.Contains("id=\"cluster\">2</b>", dom, StringComparison.Ordinal);
        Assert.Contains("<td>files/up/shared-3.1.tar.gz</td><td>3</td><td>293.0 KiB</td>", dom, StringComparison.Ordinal);

        // Node 1 counts the same transfer as served to node 0; upstream sent it to node 1 only, and the bytes each node
        // fetched from upstream say so (a peer's copy is not an upstream download).
        var status1 = await http.GetFromJsonAsync(nodes[1].BaseUrl + StatusEndpoint.Path, StatusJson.Default.NodeStatus);
        Assert.Equal(shared.Length, status1!.Cluster!.Nodes.Single(n => n.Id == id0).ServedToBytes);
        Assert.Equal(shared.Length, status1.Bytes.FetchedFromUpstream);
        var status0 = await http.GetFromJsonAsync(nodes[0].BaseUrl + StatusEndpoint.Path, StatusJson.Default.NodeStatus);
        Assert.Equal(0, status0!.Bytes.FetchedFromUpstream);
        Assert.Equal(3L * shared.Length, status0.Bytes.Saved);

        // hoard status --url lists the nodes too.
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "status", "--url", nodes[0].BaseUrl]);
        Assert.True(code == 0, output);
        Assert.True(Regex.IsMatch(output, $@"  node {id1}  {Regex.Escape(nodes[1].BaseUrl)}  alive, heartbeat \d+ s ago, store [0-9.]+ [KM]iB \(1 blobs\), served to it 0 B, fetched from it {Regex.Escape(ValueParsers.FormatSize(shared.Length))}\n"), output);
        Assert.Contains($"  node {id0}  {nodes[0].BaseUrl}  alive", output, StringComparison.Ordinal);

        // Node 1 stops: once its heartbeat key expires it is listed as stale, its traffic still shown.
        await nodes[1].DisposeAsync();
        nodes.RemoveAt(1);
        var cluster = nodes[0].Service<Hoard.Core.Cluster.ClusterNode>();
        await FetchEngineTests.WaitUntil(() => cluster.NodesAsync().Result.Nodes.Any(n => n.Id == id1 && n.State == "stale"), TimeSpan.FromSeconds(20));
        Assert.Equal(shared.Length, (await cluster.NodesAsync()).Nodes.Single(n => n.Id == id1).FetchedFromBytes);
    }

    private static async Task<string> ChromiumAsync(TempDir temp, params string[] args)
    {
        var profile = temp.Sub("chromium-" + Guid.NewGuid().ToString("N"));
        var (code, output) = await Pip.RunAsync("chromium", [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile, "--virtual-time-budget=8000", .. args]);
        Assert.True(code == 0, output);
        return output;
    }
}
