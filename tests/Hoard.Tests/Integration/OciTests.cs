using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>The registry mirror: real docker-registry upstreams, images pushed and pulled with the real skopeo.</summary>
public sealed class OciTests
{
    private const string Upstream = "registry.test";

    internal static void SetRegistry(HoardOptions o, Registry registry, string name = Upstream, string? userInfo = null, bool isDefault = true)
    {
        o.Registries.Add(new UpstreamSpec(name, new Uri($"http://{(userInfo is null ? "" : userInfo + "@")}{registry.Host}/")));
        if (isDefault)
        {
            o.DefaultRegistry = name;
        }
    }

    internal static async Task<(TempDir Temp, Registry Registry, PushedImage Single, PushedImage Multi)> UpstreamWithImagesAsync(string? user = null, string? password = null)
    {
        var temp = new TempDir();
        var registry = new Registry(user, password);
        await registry.StartAsync();
        var creds = user is null ? null : $"{user}:{password}";
        var single = new OciImages(temp.Sub("single"));
        var singleImage = single.SinglePlatform("team/app", "v1");
        await Skopeo.PushAsync(single, singleImage, registry, creds);
        var multi = new OciImages(temp.Sub("multi"));
        var multiImage = multi.MultiPlatform("team/multi", "v2");
        await Skopeo.PushAsync(multi, multiImage, registry, creds);
        return (temp, registry, singleImage, multiImage);
    }

    internal static void AssertPulled(string dir, PushedImage image, bool all)
    {
        var seen = Skopeo.VerifyDir(dir);
        var manifest = File.ReadAllBytes(Path.Combine(dir, "manifest.json"));
        Assert.Equal(image.Digest, "sha256:" + Convert.ToHexStringLower(SHA256.HashData(manifest)));
        if (all)
        {
            Assert.Superset(new HashSet<string>(image.Blobs), seen);
            Assert.Equal(image.Blobs.Count, seen.Count(image.Blobs.Contains));
        }
        else
        {
            Assert.NotEmpty(seen);
            Assert.All(seen, d => Assert.Contains(d, image.Blobs));
        }
    }

    [Fact]
    public async Task Skopeo_pulls_through_the_path_prefix_and_the_default_registry_byte_for_byte()
    {
        var (temp, registry, single, multi) = await UpstreamWithImagesAsync();
        using var _ = temp;
        await using var __ = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry));
        var host = new Uri(hoard.BaseUrl).Authority;

        var viaPrefix = temp.Sub("pull-prefix");
        var (code, output) = await Skopeo.PullAsync($"{host}/{Upstream}/team/app:v1", viaPrefix);
        Assert.True(code == 0, output);
        AssertPulled(viaPrefix, single, all: true);

        var viaDefault = temp.Sub("pull-default");
        (code, output) = await Skopeo.PullAsync($"{host}/team/multi:v2", viaDefault, all: true);
        Assert.True(code == 0, output);
        AssertPulled(viaDefault, multi, all: true);

        // Pulled again: every blob and manifest from the cache, upstream only asked about the tag.
        var before = registry.Count("GET", "");
        var again = temp.Sub("pull-again");
        (code, output) = await Skopeo.PullAsync($"{host}/{Upstream}/team/app:v1", again);
        Assert.True(code == 0, output);
        Assert.Equal(before, registry.Count("GET", ""));
        Assert.True(hoard.Metrics.Get($"hoard_oci_requests_total{{registry=\"{Upstream}\",outcome=\"hit\"}}") >= 3);
    }

    [Fact]
    public async Task Containerd_ns_parameter_selects_the_registry_and_manifests_come_back_byte_exact_with_headers()
    {
        var (temp, registry, single, multi) = await UpstreamWithImagesAsync();
        using var _ = temp;
        await using var __ = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry, isDefault: false));
        using var http = new HttpClient();
        var request = new HttpRequestMessage(HttpMethod.Get, $"{hoard.BaseUrl}/v2/team/multi/manifests/v2?ns={registry.Host}");
        request.Headers.Accept.ParseAdd("application/vnd.oci.image.index.v1+json");
        using var response = await http.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal(multi.Digest, "sha256:" + Convert.ToHexStringLower(SHA256.HashData(body)));
        Assert.Equal(multi.Digest, response.Headers.GetValues("Docker-Content-Digest").Single());
        Assert.Equal("application/vnd.oci.image.index.v1+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(body.Length, response.Content.Headers.ContentLength);

        // HEAD by digest and a Range on a blob.
        using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"{hoard.BaseUrl}/v2/team/multi/manifests/{multi.Digest}?ns={registry.Host}"));
        Assert.Equal(200, (int)head.StatusCode);
        Assert.Equal(body.Length, head.Content.Headers.ContentLength);
        var layer = single.Blobs[0];
        var ranged = new HttpRequestMessage(HttpMethod.Get, $"{hoard.BaseUrl}/v2/team/app/blobs/{layer}?ns={registry.Host}");
        ranged.Headers.Range = new RangeHeaderValue(10, 19);
        using var part = await http.SendAsync(ranged);
        Assert.Equal(206, (int)part.StatusCode);
        var whole = await http.GetByteArrayAsync($"{hoard.BaseUrl}/v2/team/app/blobs/{layer}?ns={registry.Host}");
        Assert.Equal(whole[10..20], await part.Content.ReadAsByteArrayAsync());
        Assert.Equal(layer, "sha256:" + Convert.ToHexStringLower(SHA256.HashData(whole)));
        // The access log says which registry a containerd request was for.
        Predicate<string> blobLine = l => l.Contains($"GET /v2/team/app/blobs/{layer}?ns={registry.Host} 200", StringComparison.Ordinal);
        Assert.Contains(await hoard.AccessLogAsync(blobLine), blobLine);

        // tags/list is upstream's answer, passed on.
        using var tags = JsonDocument.Parse(await http.GetStringAsync($"{hoard.BaseUrl}/v2/team/multi/tags/list?ns={registry.Host}"));
        Assert.Equal("v2", tags.RootElement.GetProperty("tags")[0].GetString());
    }

    [Fact]
    public async Task Credentials_configured_for_a_registry_are_used_for_every_client()
    {
        var (temp, registry, single, _) = await UpstreamWithImagesAsync("alice", "s3cret");
        using var __ = temp;
        await using var ___ = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry, userInfo: "alice:s3cret"));
        var dest = temp.Sub("pulled");
        var (code, output) = await Skopeo.PullAsync($"{new Uri(hoard.BaseUrl).Authority}/team/app:v1", dest);
        Assert.True(code == 0, output);
        AssertPulled(dest, single, all: true);
        Assert.DoesNotContain(hoard.Logs.Lines, l => l.Contains("s3cret", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Concurrent_cold_pulls_fetch_each_blob_once_and_a_cached_tag_pulls_with_upstream_down()
    {
        var (temp, registry, single, _) = await UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            SetRegistry(o, registry);
            o.TagTtl = TimeSpan.Zero;
            o.ConnectTimeout = TimeSpan.FromSeconds(2);
        });
        var host = new Uri(hoard.BaseUrl).Authority;
        var pulls = Enumerable.Range(0, 6).Select(i => Skopeo.PullAsync($"{host}/team/app:v1", temp.Sub("cold" + i))).ToArray();
        foreach (var (code, output) in await Task.WhenAll(pulls))
        {
            Assert.True(code == 0, $"{output}\nlog:\n{string.Join("\n", hoard.Logs.Lines.Where(l => !l.StartsWith("Information", StringComparison.Ordinal)))}\naccess log:\n{string.Join("\n", hoard.AccessLogLines)}");
        }
        for (var i = 0; i < 6; i++)
        {
            AssertPulled(Path.Combine(temp.Path, "cold" + i), single, all: true);
        }
        foreach (var blob in single.Blobs)
        {
            Assert.Equal(1, registry.Count("GET", "/blobs/" + blob));
        }
        // The tag was recorded; past its TTL it is resolved again, and upstream's HEAD names the same digest.
        using (var http = new HttpClient())
        using (var tag = new HttpRequestMessage(HttpMethod.Get, $"{hoard.BaseUrl}/v2/team/app/manifests/v1"))
        {
            tag.Headers.TryAddWithoutValidation("Accept", Hoard.Core.Oci.OciFrontEnd.ManifestAccept);
            using var revalidated = await http.SendAsync(tag);
            Assert.Equal(200, (int)revalidated.StatusCode);
            Assert.Equal("REVALIDATED", revalidated.Headers.GetValues("X-Hoard-Cache").Single());
            Assert.Equal(single.Digest, revalidated.Headers.GetValues("Docker-Content-Digest").Single());
        }

        registry.Kill();
        var offline = temp.Sub("offline");
        var (c, o) = await Skopeo.PullAsync($"{host}/team/app:v1", offline);
        Assert.True(c == 0, o);
        AssertPulled(offline, single, all: true);
        Assert.True(hoard.Metrics.Get("hoard_stale_served_total{protocol=\"oci\"}") >= 1);
    }

    [Fact]
    public async Task A_private_repository_is_served_only_to_clients_upstream_accepts_even_when_cached()
    {
        var (temp, registry, single, _) = await UpstreamWithImagesAsync("alice", "s3cret");
        using var __ = temp;
        await using var ___ = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry));
        var host = new Uri(hoard.BaseUrl).Authority;

        var withCreds = temp.Sub("with");
        var (code, output) = await Skopeo.PullAsync($"{host}/team/app:v1", withCreds, creds: "alice:s3cret");
        Assert.True(code == 0, output);
        AssertPulled(withCreds, single, all: true);

        (code, output) = await Skopeo.PullAsync($"{host}/team/app:v1", temp.Sub("anonymous"));
        Assert.NotEqual(0, code);
        (code, output) = await Skopeo.PullAsync($"{host}/team/app:v1", temp.Sub("wrong"), creds: "alice:wrong");
        Assert.NotEqual(0, code);

        // Straight at a cached blob, with no credentials: refused with an OCI error.
        using var http = new HttpClient();
        using var response = await http.GetAsync($"{hoard.BaseUrl}/v2/team/app/blobs/{single.Blobs[0]}");
        Assert.Equal(401, (int)response.StatusCode);
        Assert.Contains("UNAUTHORIZED", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Contains("Basic", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Skopeo_with_the_registries_conf_from_hoard_config_podman_pulls_through_hoard()
    {
        var (temp, registry, single, _) = await UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        // A name that resolves nowhere: the pull can only succeed through the mirror entry Hoard writes.
        var name = $"reg{Guid.NewGuid():N}"[..12] + ".test";
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry, name, isDefault: false));
        // skopeo 1.9 reads only /etc/containers/registries.conf(.d): the drop-in goes there, uniquely named, and is removed.
        var conf = $"/etc/containers/registries.conf.d/{name}.conf";
        try
        {
            var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "podman", "--url", hoard.BaseUrl, "--registry", $"{name}=http://{registry.Host}/", "--apply", "--path", conf]);
            Assert.True(code == 0, output);
            Assert.Contains($"location = \"{new Uri(hoard.BaseUrl).Authority}/{name}\"", File.ReadAllText(conf), StringComparison.Ordinal);
            var dest = temp.Sub("pulled");
            (code, output) = await Pip.RunAsync("skopeo", ["copy", "--retry-times", "0", $"docker://{name}/team/app:v1", $"dir:{dest}"]);
            Assert.True(code == 0, output);
            AssertPulled(dest, single, all: true);
            Assert.True(hoard.Metrics.Get($"hoard_oci_requests_total{{registry=\"{name}\",outcome=\"miss\"}}") >= 3);
        }
        finally
        {
            File.Delete(conf);
        }
    }

    [Fact]
    public async Task Config_docker_merges_daemon_json_and_config_containerd_writes_a_hosts_toml_per_registry()
    {
        using var temp = new TempDir();
        var daemon = Path.Combine(temp.Path, "daemon.json");
        File.WriteAllText(daemon, "{\"log-driver\": \"journald\", \"registry-mirrors\": [\"https://other.example\"]}");
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "docker", "--url", "http://hoard.lan:8080", "--apply", "--path", daemon]);
        Assert.True(code == 0, output);
        using (var doc = JsonDocument.Parse(File.ReadAllText(daemon)))
        {
            Assert.Equal("journald", doc.RootElement.GetProperty("log-driver").GetString());
            Assert.Equal(["https://other.example", "http://hoard.lan:8080"], doc.RootElement.GetProperty("registry-mirrors").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal("hoard.lan:8080", doc.RootElement.GetProperty("insecure-registries")[0].GetString());
        }
        var certs = temp.Sub("certs.d");
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "containerd", "--url", "http://hoard.lan:8080", "--registry", "ghcr.io=https://ghcr.io", "--apply", "--path", certs]);
        Assert.True(code == 0, output);
        var hub = File.ReadAllText(Path.Combine(certs, "docker.io", "hosts.toml"));
        Assert.Contains("server = \"https://registry-1.docker.io\"", hub, StringComparison.Ordinal);
        Assert.Contains("[host.\"http://hoard.lan:8080\"]", hub, StringComparison.Ordinal);
        Assert.Contains("capabilities = [\"pull\", \"resolve\"]", hub, StringComparison.Ordinal);
        Assert.Contains("dial_timeout", hub, StringComparison.Ordinal);
        Assert.Contains("server = \"https://ghcr.io\"", File.ReadAllText(Path.Combine(certs, "ghcr.io", "hosts.toml")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_bearer_token_flow_works_anonymously_for_public_repositories_and_with_client_credentials_for_private_ones()
    {
        using var temp = new TempDir();
        await using var tokens = new TokenServer(temp.Path);
        await tokens.StartAsync();
        await using var registry = new Registry(tokens: tokens);
        await registry.StartAsync();
        var layout = new OciImages(temp.Sub("public"));
        var publicImage = layout.SinglePlatform("public/tool", "v1");
        await Skopeo.PushAsync(layout, publicImage, registry, "alice:s3cret");
        var privateLayout = new OciImages(temp.Sub("private"));
        var privateImage = privateLayout.SinglePlatform("secret/app", "v1");
        await Skopeo.PushAsync(privateLayout, privateImage, registry, "alice:s3cret");

        // The token realm is on another loopback port, no configured upstream: it must be allowed.
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            SetRegistry(o, registry);
            ConnectionPolicyTests.AllowHost(o, new Uri(tokens.Realm).Authority);
        });
        var host = new Uri(hoard.BaseUrl).Authority;
        var issuedBefore = tokens.Issued;
        var (code, output) = await Skopeo.PullAsync($"{host}/public/tool:v1", temp.Sub("anon"));
        Assert.True(code == 0, output + string.Join("\n", hoard.Logs.Lines.Where(l => l.Contains("Upstream", StringComparison.Ordinal))));
        AssertPulled(Path.Combine(temp.Path, "anon"), publicImage, all: true);
        // Tokens are cached: one pull needs few, not one per request.
        Assert.InRange(tokens.Issued - issuedBefore, 1, 3);

        (code, _) = await Skopeo.PullAsync($"{host}/secret/app:v1", temp.Sub("denied"));
        Assert.NotEqual(0, code);
        (code, output) = await Skopeo.PullAsync($"{host}/secret/app:v1", temp.Sub("allowed"), creds: "alice:s3cret");
        Assert.True(code == 0, output);
        AssertPulled(Path.Combine(temp.Path, "allowed"), privateImage, all: true);
        (code, _) = await Skopeo.PullAsync($"{host}/secret/app:v1", temp.Sub("denied-cached"));
        Assert.NotEqual(0, code);
    }

    [Fact]
    public async Task Containerd_pulls_through_the_hosts_toml_written_by_hoard_config_containerd()
    {
        var (temp, registry, single, _) = await UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry, isDefault: false));
        var hostsDir = temp.Sub("certs.d");
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "containerd", "--url", hoard.BaseUrl, "--registry", $"{Upstream}=http://{registry.Host}/", "--apply", "--path", hostsDir]);
        Assert.True(code == 0, output);

        // A private containerd daemon (Debian's), its own root, state and socket.
        await using var containerd = new Containerd();
        await containerd.StartAsync();
        // registry.test resolves nowhere: only the hosts.toml mirror (Hoard, with ?ns=registry.test) can serve this.
        (code, output) = await containerd.CtrAsync("hoard", "content", "fetch", "--hosts-dir", hostsDir, $"{Upstream}/team/app:v1");
        Assert.True(code == 0, output);
        (code, output) = await containerd.CtrAsync("hoard", "content", "ls", "-q");
        Assert.True(code == 0, output);
        Assert.Contains(single.Digest, output, StringComparison.Ordinal);
        foreach (var blob in single.Blobs)
        {
            Assert.Contains(blob, output, StringComparison.Ordinal);
        }
        Assert.True(hoard.Metrics.Get($"hoard_oci_requests_total{{registry=\"{Upstream}\",outcome=\"miss\"}}") >= 3);
    }

    [Fact]
    public async Task Malformed_names_references_digests_and_unknown_registries_get_oci_errors_without_upstream_requests()
    {
        await using var registry = new Registry();
        await registry.StartAsync();
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetRegistry(o, registry));
        using var http = new HttpClient();
        (string Path, int Status, string Code)[] cases =
        [
            ("/v2/Team/App/manifests/v1", 400, "NAME_INVALID"),
            ("/v2/team/app/manifests/bad$tag", 400, "MANIFEST_INVALID"),
            ("/v2/team/app/manifests/sha256:1234", 400, "DIGEST_INVALID"),
            ("/v2/team/app/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
            ("/v2/team/app/blobs/md5:00", 400, "DIGEST_INVALID"),
            ("/v2/ghcr.io/team/app/manifests/v1", 404, "NAME_UNKNOWN"),
            ("/v2/team/app/manifests/v1?ns=evil.example", 404, "NAME_UNKNOWN"),
            ("/v2/team/app/blobs/uploads/", 405, "UNSUPPORTED"),
        ];
        foreach (var (path, status, code) in cases)
        {
            using var response = await http.GetAsync(hoard.BaseUrl + path);
            Assert.True(status == (int)response.StatusCode, $"{path} -> {(int)response.StatusCode}");
            using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(code, doc.RootElement.GetProperty("errors")[0].GetProperty("code").GetString());
        }
        Assert.Equal(0, registry.Count("GET", "") + registry.Count("HEAD", "") + registry.Count("HEAD", "", 404) + registry.Count("GET", "", 404));
        using var missing = await http.GetAsync($"{hoard.BaseUrl}/v2/team/nothing/manifests/v1");
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Contains("MANIFEST_UNKNOWN", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var api = await http.GetAsync($"{hoard.BaseUrl}/v2/");
        Assert.Equal(401, (int)api.StatusCode);
        Assert.Equal("registry/2.0", api.Headers.GetValues("Docker-Distribution-API-Version").Single());
    }
}
