using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// Private content never reaches a client upstream did not accept, by any path: another registry name, a digest,
/// a download in progress, another node, the pack cache, LFS. Each test pulls private content as an authorised client,
/// then tries to get it as an anonymous one, and checks that not one private byte comes back.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class LeakTests
{
    private const string Private = "private.test";
    private const string Open = "open.test";
    private const string User = "alice";
    private const string Password = "wonderland";
    private static readonly string BasicCredentials = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{User}:{Password}"));

    private static void SetRegistries(HoardOptions o, string privateHost, string openHost)
    {
        o.Registries.Add(new UpstreamSpec(Private, new Uri($"http://{privateHost}/")));
        o.Registries.Add(new UpstreamSpec(Open, new Uri($"http://{openHost}/")));
        o.DefaultRegistry = Open;
    }

    /// <summary>Every digest of the image: its manifests and blobs.</summary>
    private static IEnumerable<(string Kind, string Digest)> Digests(PushedImage image) =>
        image.Manifests.Select(m => ("manifests", m)).Concat(image.Blobs.Select(b => ("blobs", b)));

    private static async Task<(int Status, byte[] Body, string Cache)> GetAsync(HttpClient http, string url, bool authorised)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (authorised)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", BasicCredentials);
        }
        using var response = await http.SendAsync(request);
        var cache = response.Headers.TryGetValues("X-Hoard-Cache", out var v) ? v.First() : "";
        return ((int)response.StatusCode, await response.Content.ReadAsByteArrayAsync(), cache);
    }

    /// <summary>An anonymous client asks for every private digest through every name: no 2xx, no private byte.</summary>
    private static async Task AssertNothingLeaksAsync(HttpClient http, string hoardUrl, PushedImage image, IEnumerable<string> repositories, IReadOnlySet<string> privateBodies)
    {
        foreach (var repository in repositories)
        {
            foreach (var (kind, digest) in Digests(image))
            {
                var (status, body, cache) = await GetAsync(http, $"{hoardUrl}/v2/{repository}/{kind}/{digest}", authorised: false);
                Assert.False(status is >= 200 and < 300, $"{repository}/{kind}/{digest} answered {status} ({cache}) to an anonymous client");
                Assert.True(status is >= 400 and < 500, $"{repository}/{kind}/{digest} answered {status}: a refusal is a 4xx, not a server error");
                Assert.DoesNotContain(Convert.ToHexStringLower(SHA256.HashData(body)), privateBodies);
            }
        }
    }

    private static async Task<HashSet<string>> PrivateBodiesAsync(HttpClient http, string hoardUrl, PushedImage image)
    {
        var digests = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (kind, digest) in Digests(image))
        {
            var (status, body, _) = await GetAsync(http, $"{hoardUrl}/v2/{Private}/{image.Repository}/{kind}/{digest}", authorised: true);
            Assert.Equal(200, status);
            digests.Add(Convert.ToHexStringLower(SHA256.HashData(body)));
        }
        return digests;
    }

    [Fact]
    public async Task Private_image_content_never_reaches_an_anonymous_client_through_another_registry_name_or_node()
    {
        using var temp = new TempDir();
        await using var privateRegistry = new Registry(User, Password);
        await privateRegistry.StartAsync();
        await using var openRegistry = new Registry();
        await openRegistry.StartAsync();
        var layout = new OciImages(temp.Sub("layout"));
        var image = layout.SinglePlatform("team/secret", "v1");
        await Skopeo.PushAsync(layout, image, privateRegistry, $"{User}:{Password}");
        var publicLayout = new OciImages(temp.Sub("public"));
        var publicImage = publicLayout.SinglePlatform("library/anything", "latest", layerBytes: 10_000, layers: 1);
        await Skopeo.PushAsync(publicLayout, publicImage, openRegistry);

        await using var redis = new RedisServer();
        await redis.StartAsync();
        HoardHost[] nodes = [];
        try
        {
            nodes = [await StartNodeAsync(temp.Sub("a"), redis, privateRegistry.Host, openRegistry.Host), await StartNodeAsync(temp.Sub("b"), redis, privateRegistry.Host, openRegistry.Host)];
            var (a, b) = (nodes[0], nodes[1]);

            // The authorised client pulls the private image through node A, with skopeo.
            var pulled = temp.Sub("pulled");
            var (code, output) = await Skopeo.PullAsync($"{new Uri(a.BaseUrl).Authority}/{Private}/{image.Repository}:v1", pulled, $"{User}:{Password}");
            Assert.True(code == 0, output);
            OciTests.AssertPulled(pulled, image, all: true);
            await a.SettledAsync();
            using var http = new HttpClient();
            var privateBodies = await PrivateBodiesAsync(http, a.BaseUrl, image);
            // The anonymous client was accepted for a public image of the open registry (a 200 there)...
            var (status, _, _) = await GetAsync(http, $"{b.BaseUrl}/v2/{Open}/library/anything/manifests/latest", authorised: false);
            Assert.Equal(200, status);

            // ...and now asks node B (which has nothing, but A has it all) and node A for every private digest, through
            // the open registry's names (a repository it was accepted for, another one) and the private registry's.
            string[] repositories = [$"{Open}/library/anything", $"{Open}/team/secret", $"{Private}/{image.Repository}", "library/anything"];
            await AssertNothingLeaksAsync(http, b.BaseUrl, image, repositories, privateBodies);
            await AssertNothingLeaksAsync(http, a.BaseUrl, image, repositories, privateBodies);
            var anonymous = temp.Sub("anonymous");
            (code, output) = await Skopeo.PullAsync($"{new Uri(b.BaseUrl).Authority}/{Open}/library/anything@{image.Digest}", anonymous);
            Assert.NotEqual(0, code);
            Assert.False(b.Service<CacheIndex>().TryGetBlob(image.Digest[7..], out _), "node B must not have fetched the private manifest for an anonymous client");

            // The authorised client through node B: served, from node A rather than the registry.
            var blobGets = privateRegistry.Count("GET", "");
            var again = temp.Sub("again");
            (code, output) = await Skopeo.PullAsync($"{new Uri(b.BaseUrl).Authority}/{Private}/{image.Repository}@{image.Digest}", again, $"{User}:{Password}");
            Assert.True(code == 0, output);
            OciTests.AssertPulled(again, image, all: true);
            Assert.Equal(blobGets, privateRegistry.Count("GET", ""));
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
        }
    }

    private static Task<HoardHost> StartNodeAsync(string dataDir, RedisServer redis, string privateHost, string openHost)
    {
        var port = Ports.Free();
        return HoardHost.StartAsync(dataDir, o =>
        {
            SetRegistries(o, privateHost, openHost);
            o.Advertise = $"http://127.0.0.1:{port}";
            o.Listen = [o.Advertise];
            o.ClusterRedis = redis.Url;
            o.ClusterSecret = "leak-test-cluster-secret-0123";
        });
    }

    [Theory]
    [InlineData("plain")]
    [InlineData("404")]
    [InlineData("429")]
    [InlineData("login")]
    public async Task A_registry_answering_anonymous_clients_with_an_error_grants_them_nothing(string openAnswers)
    {
        using var temp = new TempDir();
        await using var privateRegistry = new Registry(User, Password);
        await privateRegistry.StartAsync();
        await using var openRegistry = new Registry();
        await openRegistry.StartAsync();
        // In front of the open registry: nginx that answers every anonymous request with 404 or 429, as some do.
        // ("login": a redirect to a login page that answers 200, as an auth proxy in front of a registry does.)
        var rule = openAnswers switch
        {
            "plain" => "",
            "login" => "if ($http_authorization = \"\") { return 302 /login; }",
            _ => $"if ($http_authorization = \"\") {{ return {openAnswers}; }}",
        };
        await using var front = new Nginx(temp.Sub("front"), $"location /v2/ {{ {rule} proxy_pass http://{openRegistry.Host}; }} location = /login {{ default_type text/html; return 200 '<html>please log in</html>'; }}");
        await front.StartAsync();
        var layout = new OciImages(temp.Sub("layout"));
        var image = layout.SinglePlatform("team/secret", "v1", layers: 1);
        await Skopeo.PushAsync(layout, image, privateRegistry, $"{User}:{Password}");
        // Two nodes: the private image is pulled through one; the anonymous client asks both.
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var hoard = await StartNodeAsync(temp.Sub("a"), redis, privateRegistry.Host, $"127.0.0.1:{front.Port}");
        await using var other = await StartNodeAsync(temp.Sub("b"), redis, privateRegistry.Host, $"127.0.0.1:{front.Port}");
        using var http = new HttpClient();
        var privateBodies = await PrivateBodiesAsync(http, hoard.BaseUrl, image);
        await hoard.SettledAsync();

        string[] repositories = [$"{Open}/team/secret", $"{Open}/library/anything", $"{Private}/{image.Repository}"];
        await AssertNothingLeaksAsync(http, other.BaseUrl, image, repositories, privateBodies);
        await AssertNothingLeaksAsync(http, hoard.BaseUrl, image, repositories, privateBodies);
        Assert.Empty(other.Service<CacheIndex>().Blobs);

        // The authorised client is still served from the cache.
        foreach (var (kind, digest) in Digests(image))
        {
            var (status, _, cache) = await GetAsync(http, $"{hoard.BaseUrl}/v2/{Private}/{image.Repository}/{kind}/{digest}", authorised: true);
            Assert.Equal(200, status);
            Assert.Equal("HIT", cache);
        }
    }

    [Fact]
    public async Task An_anonymous_request_for_a_digest_being_pulled_by_an_authorised_client_does_not_join_the_download()
    {
        using var temp = new TempDir();
        await using var privateRegistry = new Registry(User, Password);
        await privateRegistry.StartAsync();
        await using var openRegistry = new Registry();
        await openRegistry.StartAsync();
        // The private registry behind a slow link: its 6 MB layer takes about 6 s to arrive.
        await using var slow = new Nginx(temp.Sub("slow"), $"location /v2/ {{ proxy_pass http://{privateRegistry.Host}; limit_rate 1m; }}");
        await slow.StartAsync();
        var layout = new OciImages(temp.Sub("layout"));
        var image = layout.SinglePlatform("team/secret", "v1", layerBytes: 6_000_000, layers: 1);
        await Skopeo.PushAsync(layout, image, privateRegistry, $"{User}:{Password}");
        var layer = image.Blobs.Single(b => layout.BlobSize(b) > 1_000_000);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistries(o, $"127.0.0.1:{slow.Port}", openRegistry.Host));
        using var http = new HttpClient();

        var authorised = GetAsync(http, $"{hoard.BaseUrl}/v2/{Private}/{image.Repository}/blobs/{layer}", authorised: true);
        await FetchEngineTests.WaitUntil(() => hoard.Service<Hoard.Core.Fetch.FetchEngine>().InFlight > 0 || authorised.IsCompleted, TimeSpan.FromSeconds(10));
        if (authorised.IsCompleted)
        {
            var (early, earlyBody, _) = await authorised;
            Assert.Fail($"the layer arrived too soon to test anything: {early} {Encoding.UTF8.GetString(earlyBody.AsSpan(0, Math.Min(300, earlyBody.Length)))}");
        }
        foreach (var repository in new[] { $"{Open}/team/secret", $"{Private}/{image.Repository}" })
        {
            var (status, body, cache) = await GetAsync(http, $"{hoard.BaseUrl}/v2/{repository}/blobs/{layer}", authorised: false);
            Assert.False(status is >= 200 and < 300, $"{repository}: {status} {cache}");
            Assert.NotEqual("COALESCED", cache);
            Assert.True(body.Length < 1000);
        }
        Assert.False(authorised.IsCompleted, "the layer should still be downloading: the anonymous requests must have been answered during it");
        var (okStatus, okBody, _) = await authorised;
        Assert.Equal(200, okStatus);
        Assert.Equal(layer, "sha256:" + Convert.ToHexStringLower(SHA256.HashData(okBody)));
        Assert.Equal(1, slow.Count("/blobs/" + layer));
    }

    [Fact]
    public async Task Git_pack_cache_blobs_and_lfs_objects_of_a_private_repository_are_not_served_through_the_registry_route()
    {
        using var temp = new TempDir();
        await using var lfsServer = new LfsServer(temp.Path);
        await lfsServer.StartAsync();
        await using var up = new GitUpstream("bob", "hunter2", lfsPort: lfsServer.Port);
        await up.StartAsync();
        await up.CreateRepositoryAsync("private.git");
        await using var openRegistry = new Registry();
        await openRegistry.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/")));
            ConnectionPolicyTests.AllowHost(o, $"127.0.0.1:{lfsServer.Port}"); // where the LFS download hrefs point
            o.Registries.Add(new UpstreamSpec(Open, new Uri($"http://{openRegistry.Host}/")));
            o.DefaultRegistry = Open;
        });
        var port = new Uri(hoard.BaseUrl).Port;

        // A clone with credentials fills the pack cache (twice: the second is served from it).
        for (var i = 0; i < 2; i++)
        {
            await GitUpstream.Git(temp.Path, "clone", "-q", $"http://bob:hunter2@127.0.0.1:{port}/git/up/private.git", Path.Combine(temp.Path, "clone" + i));
        }
        // An LFS object fetched through the batch API with credentials.
        var data = RandomNumberGenerator.GetBytes(300_000);
        var oid = Convert.ToHexStringLower(SHA256.HashData(data));
        File.WriteAllBytes(Path.Combine(temp.Path, "lfs-objects", oid), data);
        using var http = new HttpClient();
        using (var batch = new HttpRequestMessage(HttpMethod.Post, $"{hoard.BaseUrl}/git/up/private.git/info/lfs/objects/batch"))
        {
            batch.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String("bob:hunter2"u8.ToArray()));
            batch.Content = new StringContent($$"""{"operation":"download","objects":[{"oid":"{{oid}}","size":{{data.Length}}}]}""", Encoding.UTF8, "application/vnd.git-lfs+json");
            using var answer = await http.SendAsync(batch);
            Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync());
            var href = System.Text.Json.Nodes.JsonNode.Parse(await answer.Content.ReadAsStringAsync())!["objects"]![0]!["actions"]!["download"]!["href"]!.GetValue<string>();
            Assert.Equal(data, await http.GetByteArrayAsync(href));
        }
        // The same batch without credentials is refused before its body is read.
        using (var anonymousBatch = new HttpRequestMessage(HttpMethod.Post, $"{hoard.BaseUrl}/git/up/private.git/info/lfs/objects/batch"))
        {
            anonymousBatch.Content = new StringContent($$"""{"operation":"download","objects":[{"oid":"{{oid}}","size":{{data.Length}}}]}""", Encoding.UTF8, "application/vnd.git-lfs+json");
            using var refused = await http.SendAsync(anonymousBatch);
            Assert.Equal(401, (int)refused.StatusCode);
        }
        await hoard.SettledAsync();

        var stored = hoard.Service<CacheIndex>().Blobs.Select(b => b.Digest).ToList();
        Assert.Contains(oid, stored);
        Assert.True(stored.Count >= 2, "the pack cache should hold at least one pack besides the LFS object");
        foreach (var digest in stored)
        {
            foreach (var path in new[] { $"/v2/{Open}/library/anything/blobs/sha256:{digest}", $"/v2/library/x/manifests/sha256:{digest}" })
            {
                var (status, body) = await RawHttp.GetAsync(hoard.BaseUrl, path);
                Assert.False(status is >= 200 and < 300, $"{path} answered {status}");
                Assert.True(body.Length < 1000, path);
            }
        }
    }
}
