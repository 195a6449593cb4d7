using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// The node-local deployment (deploy/kubernetes/node-local) run for real without Kubernetes: three nodes, each a
/// containerd daemon of its own with the certs.d that `hoard config containerd --apply` writes (what the DaemonSet's
/// init step runs) and a Hoard of its own, the Hoards sharing one redis-server, all pulling one image at once.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class NodeLocalTests
{
    [Fact]
    public async Task Three_containerd_nodes_pulling_at_once_fetch_each_layer_from_the_registry_once_and_a_node_without_hoard_falls_back()
    {
        using var temp = new TempDir();
        await using var registry = new Registry();
        await registry.StartAsync();
        var layout = new OciImages(temp.Sub("image"));
        var image = layout.SinglePlatform("team/app", "v1", layerBytes: 2_000_000, layers: 4);
        await Skopeo.PushAsync(layout, image, registry);
        var laterLayout = new OciImages(temp.Sub("later"));
        var later = laterLayout.SinglePlatform("team/later", "v1", layerBytes: 500_000, layers: 2);
        await Skopeo.PushAsync(laterLayout, later, registry);
        // The registry's own name: containerd tries the node's Hoard first (hosts.toml), then this server itself.
        var reference = $"{registry.Host}/team/app:v1";

        await using var redis = new RedisServer();
        await redis.StartAsync();
        var nodes = new List<(HoardHost Hoard, Containerd Containerd, string HostsDir)>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var hoard = await ClusterTests.StartNodeAsync(temp.Sub("hoard" + i), redis, o => OciTests.SetRegistry(o, registry, name: registry.Host, isDefault: false));
                var hostsDir = temp.Sub("certs.d" + i);
                var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "containerd", "--url", hoard.BaseUrl, "--registry", $"{registry.Host}=http://{registry.Host}/", "--apply", "--path", hostsDir]);
                Assert.True(code == 0, output);
                var containerd = new Containerd();
                nodes.Add((hoard, containerd, hostsDir));
                await containerd.StartAsync();
            }
            await FetchEngineTests.WaitUntil(() => nodes.All(n => n.Hoard.Metrics.ClusterSize == 3), TimeSpan.FromSeconds(20));

            var pulls = nodes.Select(n => n.Containerd.CtrAsync("k8s.io", "content", "fetch", "--hosts-dir", n.HostsDir, reference)).ToList();
            foreach (var (code, output) in await Task.WhenAll(pulls))
            {
                Assert.True(code == 0, output);
            }
            foreach (var node in nodes)
            {
                var (code, output) = await node.Containerd.CtrAsync("k8s.io", "content", "ls", "-q");
                Assert.True(code == 0, output);
                Assert.All(image.Blobs, blob => Assert.Contains(blob, output, StringComparison.Ordinal));
            }
            // Every layer and the config left the registry once for the three nodes; the rest came from Hoard's peers.
            foreach (var blob in image.Blobs)
            {
                Assert.Equal(1, registry.Count("GET", "/blobs/" + blob));
            }

            // The third node's Hoard goes away (a rollout, a crash): its containerd still pulls an image no node has,
            // from the registry itself (hosts.toml's server), the refused mirror skipped.
            var (_, third, thirdHosts) = nodes[2];
            await nodes[2].Hoard.DisposeAsync();
            nodes[2] = (null!, third, thirdHosts);
            var (fallbackCode, fallbackOutput) = await third.CtrAsync("k8s.io", "content", "fetch", "--hosts-dir", thirdHosts, $"{registry.Host}/team/later:v1");
            Assert.True(fallbackCode == 0, fallbackOutput);
            var (lsCode, stored) = await third.CtrAsync("k8s.io", "content", "ls", "-q");
            Assert.True(lsCode == 0, stored);
            foreach (var blob in later.Blobs)
            {
                Assert.Contains(blob, stored, StringComparison.Ordinal);
                Assert.Equal(1, registry.Count("GET", "/blobs/" + blob));
            }
        }
        finally
        {
            foreach (var (hoard, containerd, _) in nodes)
            {
                if (hoard is not null)
                {
                    await hoard.DisposeAsync();
                }
                await containerd.DisposeAsync();
            }
        }
    }
}
