using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Git mirrors shared between cluster nodes: a node makes its mirror from a peer's, then catches up with upstream.</summary>
[Collection(SerialCollection.Name)]
public sealed class ClusterGitTests
{
    [Fact]
    public async Task A_second_node_starts_its_mirror_from_the_first_nodes_and_takes_only_the_new_commit_from_upstream()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("shared.git", bigFileBytes: 4_000_000);
        using var temp = new TempDir();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 2, redis, o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));

        await GitUpstream.Git(temp.Path, "clone", "-q", $"{nodes[0].BaseUrl}/git/up/shared.git", Path.Combine(temp.Path, "first"));
        var firstBytes = up.UploadPackBytes();
        Assert.True(firstBytes > 4_000_000, $"the first mirror took {firstBytes} bytes from upstream");
        // Upstream moves on before the second node makes its mirror.
        var newHead = await up.CommitUpstreamAsync(work, "shared.git");

        var second = Path.Combine(temp.Path, "second");
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{nodes[1].BaseUrl}/git/up/shared.git", second);
        Assert.Equal(newHead, (await GitUpstream.Git(second, "rev-parse", "HEAD")).Trim());
        await GitUpstream.Git(second, "fsck", "--no-progress");
        Assert.True(nodes[1].Logs.Contains("started from node"), "the second node did not start from the first node's mirror");
        Assert.Equal(1, nodes[1].Metrics.Get("hoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"up\",result=\"peer\"}"));
        // Upstream sent the second node (and its client's discovery) the new commit, not the repository again.
        var secondBytes = up.UploadPackBytes() - firstBytes;
        Assert.True(secondBytes < firstBytes / 10, $"the second mirror took {secondBytes} bytes from upstream (the first {firstBytes})");
    }

    [Fact]
    public async Task A_clone_bundle_one_node_made_is_streamed_to_another_node_with_the_same_refs()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("bundled.git", bigFileBytes: 1_000_000);
        using var temp = new TempDir();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 2, redis, o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        using var http = new HttpClient();
        var bundles = new List<byte[]>();
        foreach (var node in nodes)
        {
            bundles.Add(await http.GetByteArrayAsync($"{node.BaseUrl}/git/up/bundled.git/-/bundle"));
        }
        Assert.Equal(bundles[0], bundles[1]);
        Assert.Equal(1, nodes[0].Metrics.Get("hoard_git_requests_total{kind=\"bundle\",result=\"miss\"}"));
        Assert.Equal(1, nodes[1].Metrics.Get("hoard_git_requests_total{kind=\"bundle\",result=\"peer\"}"));
        var clone = Path.Combine(temp.Path, "from-bundle");
        await GitUpstream.Git(temp.Path, "clone", "-q", $"--bundle-uri={nodes[1].BaseUrl}/git/up/bundled.git/-/bundle", $"{nodes[1].BaseUrl}/git/up/bundled.git", clone);
        await GitUpstream.Git(clone, "fsck", "--no-progress");
    }

    [Fact]
    public async Task The_peer_git_endpoint_answers_only_signed_requests_for_that_mirror()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("private.git");
        using var temp = new TempDir();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 1, redis, o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{nodes[0].BaseUrl}/git/up/private.git", Path.Combine(temp.Path, "c"));
        using var http = new HttpClient();
        var url = $"{nodes[0].BaseUrl}/_hoard/peer/git/up/private.git/info/refs?service=git-upload-pack";
        Assert.Equal(401, (int)(await http.GetAsync(url)).StatusCode);
        using var forged = new HttpRequestMessage(HttpMethod.Get, url);
        forged.Headers.Add("X-Hoard-Peer-For", "git up/private.git");
        forged.Headers.Add("X-Hoard-Peer", $"v1 {DateTimeOffset.UtcNow.ToUnixTimeSeconds()} {ClusterTests.NodeId(temp, "node0")} {new string('0', 64)}");
        Assert.Equal(403, (int)(await http.SendAsync(forged)).StatusCode);
        // Signed with the cluster secret: for this mirror, the advertisement; the signature of another mirror's
        // request does not open this one.
        var signer = new Hoard.Core.Cluster.PeerSignature(System.Text.Encoding.UTF8.GetBytes(ClusterTests.Secret), TimeProvider.System);
        var self = ClusterTests.NodeId(temp, "node0");
        foreach (var (purpose, path, status) in new[]
        {
            ("git up/private.git", "/_hoard/peer/git/up/private.git", 200),
            ("git up/other.git", "/_hoard/peer/git/up/other.git", 403),
            ("git up/other.git", "/_hoard/peer/git/up/private.git", 400),
        })
        {
            using var signed = new HttpRequestMessage(HttpMethod.Get, url);
            signed.Headers.Add("X-Hoard-Peer-For", purpose);
            signed.Headers.Add("X-Hoard-Peer", signer.Sign("GIT", path, null, purpose, "peer1", self));
            using var response = await http.SendAsync(signed);
            Assert.True(status == (int)response.StatusCode, $"{purpose} signed for {path}: {(int)response.StatusCode}");
            if (status == 200)
            {
                Assert.Contains("refs/heads/main", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }
        // A push is never a peer's business.
        Assert.Equal(404, (int)(await http.PostAsync($"{nodes[0].BaseUrl}/_hoard/peer/git/up/private.git/git-receive-pack", new ByteArrayContent([]))).StatusCode);
    }
}
