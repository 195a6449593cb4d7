using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Hoard.Core.Access;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// Leaks an independent review found after the first round: decisions of one protocol answering for another, two
/// repository names sharing one mirror, an LFS grant reaching another blob of the same sha256, configured credentials
/// used for writes, and a refusal that left an earlier grant behind.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class LeakReviewTests
{
    private static readonly Dictionary<string, string> NoPrompt = new() { ["GIT_TERMINAL_PROMPT"] = "0" };

    [Fact]
    public async Task A_registry_grant_does_not_open_a_git_repository_of_the_same_name()
    {
        using var temp = new TempDir();
        // Gitea-style: one host name for a registry and a git server. The image is public, the repository private.
        await using var registry = new Registry();
        await registry.StartAsync();
        var layout = new OciImages(temp.Sub("layout"));
        var image = layout.SinglePlatform("org/app", "latest", layerBytes: 10_000, layers: 1);
        await Skopeo.PushAsync(layout, image, registry);
        await using var up = new GitUpstream("bob", "hunter2");
        await up.StartAsync();
        await up.CreateRepositoryAsync("org/app");
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            o.Registries.Add(new UpstreamSpec("forge.test", new Uri($"http://{registry.Host}/")));
            o.Git.Add(new UpstreamSpec("forge.test", new Uri($"http://127.0.0.1:{up.Port}/")));
        });
        var port = new Uri(hoard.BaseUrl).Port;
        // The owner clones (the mirror now holds the private source); an anonymous client is accepted for the image.
        await GitUpstream.Git(temp.Path, "clone", "-q", $"http://bob:hunter2@127.0.0.1:{port}/git/forge.test/org/app", Path.Combine(temp.Path, "owner"));
        using var http = new HttpClient();
        using (var head = new HttpRequestMessage(HttpMethod.Head, $"{hoard.BaseUrl}/v2/forge.test/org/app/manifests/latest"))
        {
            Assert.Equal(200, (int)(await http.SendAsync(head)).StatusCode);
        }
        // Within the minute, the anonymous client asks git for the private repository's main branch by name.
        var body = Encoding.ASCII.GetBytes("0012command=fetch\n0001001dwant-ref refs/heads/main\n0009done\n0000");
        using var fetch = new HttpRequestMessage(HttpMethod.Post, $"{hoard.BaseUrl}/git/forge.test/org/app/git-upload-pack") { Content = new ByteArrayContent(body) };
        fetch.Headers.TryAddWithoutValidation("Git-Protocol", "version=2");
        using var answer = await http.SendAsync(fetch);
        Assert.Equal(401, (int)answer.StatusCode);
        var (code, _) = await Pip.RunAsync("git", ["clone", "-q", $"http://127.0.0.1:{port}/git/forge.test/org/app", Path.Combine(temp.Path, "anonymous")], NoPrompt);
        Assert.NotEqual(0, code);
    }

    [Fact]
    public async Task Repositories_x_and_x_dot_git_have_mirrors_of_their_own()
    {
        using var temp = new TempDir();
        // On a plain git server, `x` and `x.git` are two repositories: here one public, one private.
        await using var up = new GitUpstream("bob", "hunter2", privatePrefix: "/x.git");
        await up.StartAsync();
        var publicWork = await up.CreateRepositoryAsync("x");
        await up.CreateRepositoryAsync("x.git");
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        var port = new Uri(hoard.BaseUrl).Port;
        await GitUpstream.Git(temp.Path, "clone", "-q", $"http://bob:hunter2@127.0.0.1:{port}/git/up/x.git", Path.Combine(temp.Path, "private"));
        await GitUpstream.Git(temp.Path, "clone", "-q", $"http://127.0.0.1:{port}/git/up/x", Path.Combine(temp.Path, "public"));
        Assert.Equal(File.ReadAllText(Path.Combine(publicWork, "file0.txt")), File.ReadAllText(Path.Combine(temp.Path, "public", "file0.txt")));
        Assert.True(Directory.Exists(Path.Combine(temp.Path, "data", "git", "up", "x.bare")));
        Assert.True(Directory.Exists(Path.Combine(temp.Path, "data", "git", "up", "x.git")));
    }

    [Fact]
    public async Task An_lfs_grant_for_an_oid_does_not_reach_a_private_blob_with_that_sha256()
    {
        using var temp = new TempDir();
        await using var registry = new Registry("alice", "wonderland");
        await registry.StartAsync();
        var layout = new OciImages(temp.Sub("layout"));
        var image = layout.SinglePlatform("team/secret", "v1", layers: 1);
        await Skopeo.PushAsync(layout, image, registry, "alice:wonderland");
        await using var lfsServer = new LfsServer(temp.Path);
        await lfsServer.StartAsync();
        await using var up = new GitUpstream(lfsPort: lfsServer.Port);
        await up.StartAsync();
        await up.CreateRepositoryAsync("public.git");
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            o.Registries.Add(new UpstreamSpec("private.test", new Uri($"http://{registry.Host}/")));
            o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/")));
            ConnectionPolicyTests.AllowHost(o, $"127.0.0.1:{lfsServer.Port}");
        });
        using var http = new HttpClient();
        // The private layer is in the store, pulled by its owner.
        var layer = image.Blobs.OrderByDescending(layout.BlobSize).First();
        using (var owner = new HttpRequestMessage(HttpMethod.Get, $"{hoard.BaseUrl}/v2/private.test/team/secret/blobs/{layer}"))
        {
            owner.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String("alice:wonderland"u8.ToArray()));
            Assert.Equal(200, (int)(await http.SendAsync(owner)).StatusCode);
        }
        await hoard.SettledAsync();
        // Anyone who can push to some public repository claims that oid for other bytes (LFS servers rarely check).
        var oid = layer["sha256:".Length..];
        File.WriteAllBytes(Path.Combine(temp.Path, "lfs-objects", oid), RandomNumberGenerator.GetBytes(1000));
        using var batch = new HttpRequestMessage(HttpMethod.Post, $"{hoard.BaseUrl}/git/up/public.git/info/lfs/objects/batch")
        {
            Content = new StringContent($$"""{"operation":"download","objects":[{"oid":"{{oid}}","size":{{layout.BlobSize(layer)}}}]}""", Encoding.UTF8, "application/vnd.git-lfs+json"),
        };
        using var answer = await http.SendAsync(batch);
        var href = System.Text.Json.Nodes.JsonNode.Parse(await answer.Content.ReadAsStringAsync())!["objects"]![0]!["actions"]!["download"]!["href"]!.GetValue<string>();
        var (status, got) = await GetBytesAsync(http, href);
        Assert.NotEqual(oid, Convert.ToHexStringLower(SHA256.HashData(got)));
        Assert.NotEqual(200, status);
    }

    private static async Task<(int Status, byte[] Body)> GetBytesAsync(HttpClient http, string url)
    {
        try
        {
            using var response = await http.GetAsync(url);
            return ((int)response.StatusCode, await response.Content.ReadAsByteArrayAsync());
        }
        catch (HttpRequestException)
        {
            return (0, []); // aborted: the bytes did not check out
        }
    }

    [Fact]
    public async Task Configured_credentials_never_push_for_an_anonymous_client()
    {
        using var temp = new TempDir();
        await using var up = new GitUpstream("bob", "hunter2");
        await up.StartAsync();
        await up.CreateRepositoryAsync("repo.git");
        // The operator gave Hoard read credentials for the server (in the URL, as the credentials file does).
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://bob:hunter2@127.0.0.1:{up.Port}/"))));
        var clone = Path.Combine(temp.Path, "clone");
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/repo.git", clone);
        File.WriteAllText(Path.Combine(clone, "vandal.txt"), "pushed by nobody");
        await GitUpstream.Git(clone, "add", ".");
        await GitUpstream.Git(clone, "commit", "-q", "-m", "anonymous push");
        var (code, output) = await Pip.RunAsync("git", ["-C", clone, "push", "-q", "origin", "main"], NoPrompt);
        Assert.True(code != 0, "an anonymous push went upstream as the operator: " + output);
    }

    [Fact]
    public async Task A_refusal_or_a_404_after_a_grant_leaves_nothing_to_serve_from_during_an_outage()
    {
        using var gate = new AccessGate(TimeProvider.System);
        var scope = new AccessScope("oci", "registry", "team/app", CredentialIds.Of("creds"), "sha256:abc");
        Assert.True((await gate.CheckAsync(scope, _ => Task.FromResult(200), CancellationToken.None)).Allowed);
        Assert.True(gate.WasGranted(scope));
        // Upstream now says 404 (how GitHub refuses) for this client: during an outage the old grant must not stand.
        gate.Record(scope, 404);
        Assert.False(gate.WasGranted(scope));
        var outage = await gate.CheckAsync(scope, _ => Task.FromResult(0), CancellationToken.None);
        Assert.False(outage.Allowed);

        Assert.True((await gate.CheckAsync(scope with { Item = "sha256:def" }, _ => Task.FromResult(200), CancellationToken.None)).Allowed);
        gate.Record(scope with { Item = "sha256:def" }, 401);
        Assert.False(gate.WasGranted(scope with { Item = "sha256:def" }));
        Assert.False(gate.WasGranted(scope.Repo));
    }

    [Fact]
    public async Task A_page_whose_upstream_now_refuses_the_credentials_is_not_served_stale()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        index.AddWheel("internal-lib", "1.0");
        index.WriteHtml();
        var htpasswd = Path.Combine(temp.Path, "htpasswd");
        async Task PasswordAsync(string password)
        {
            var (code, output) = await Pip.RunAsync("htpasswd", ["-bn", "ci", password]);
            Assert.True(code == 0, output);
            File.WriteAllText(htpasswd, output.Trim() + "\n");
        }
        await PasswordAsync("robot-token");
        await using var nginx = new Nginx(index.Root, $"auth_basic \"index\"; auth_basic_user_file {htpasswd};");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, $"internal=http://ci:robot-token@127.0.0.1:{nginx.Port}/simple/");
            o.IndexTtl = TimeSpan.Zero; // every request revalidates
        });
        using var http = new HttpClient();
        Assert.Equal(200, (int)(await http.GetAsync(hoard.BaseUrl + "/simple/internal-lib/")).StatusCode);

        // The token is revoked upstream: the cached page must not go on being served as if nothing had happened.
        await PasswordAsync("rotated-token");
        using var refused = await http.GetAsync(hoard.BaseUrl + "/simple/internal-lib/");
        Assert.Equal(401, (int)refused.StatusCode);
        // An outage, unlike a refusal, still gets the last good page.
        await nginx.DisposeAsync();
        using var stale = await http.GetAsync(hoard.BaseUrl + "/simple/internal-lib/");
        Assert.Equal(200, (int)stale.StatusCode);
        Assert.Equal("STALE", stale.Headers.GetValues("X-Hoard-Cache").Single());
    }
}
