using System.Text.Json;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// `hoard config` for container clients and git, with the upstream list from the command line or from the server's
/// /_hoard/config, checked with the real clients that read what it writes.
/// </summary>
public sealed class ClientConfigTests
{
    private const string AdminToken = "admin-token-never-shown-0123";
    private const string ClusterSecret = "cluster-secret-never-shown-0123";

    private static Task<(int Code, string Output)> HoardConfig(params string[] args) => Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", .. args]);

    [Fact]
    public async Task The_config_endpoint_lists_upstreams_by_protocol_without_credentials_or_secrets()
    {
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, "https://pypi.org/simple/", "internal=https://robot:pypi-password@pkgs.corp.example/simple/?token=query-token");
            o.Registries.Add(new UpstreamSpec("registry.corp", new Uri("http://robot:registry-password@registry.corp.example:5000/")));
            o.DefaultRegistry = "registry.corp";
            o.Git.Add(new UpstreamSpec("corp", new Uri("https://ci:git-password@git.corp.example/base/")));
            o.Files.Add(new UpstreamSpec("nodejs", new Uri("https://nodejs.org/dist/")));
            o.AdminToken = AdminToken;
            o.ClusterSecret = ClusterSecret;
        });
        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/_hoard/config");
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        foreach (var secret in new[] { "robot", "ci:", "password", "query-token", AdminToken, ClusterSecret })
        {
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        }
        using var doc = JsonDocument.Parse(text);
        var root = doc.RootElement;
        Assert.Equal(1, root.GetProperty("version").GetInt32());
        Assert.Equal(
            ["pypi /simple/ True", "internal /pypi/internal/simple/ False"],
            root.GetProperty("pypi").EnumerateArray().Select(p => $"{p.GetProperty("name")} {p.GetProperty("path")} {p.GetProperty("default").GetBoolean()}"));
        Assert.Equal(
            ["docker.io https://registry-1.docker.io/ False", "registry.corp http://registry.corp.example:5000/ True"],
            root.GetProperty("registries").EnumerateArray().Select(r => $"{r.GetProperty("name")} {r.GetProperty("url")} {r.GetProperty("default").GetBoolean()}"));
        Assert.Equal(
            ["corp https://git.corp.example/base/ /git/corp/"],
            root.GetProperty("git").EnumerateArray().Select(g => $"{g.GetProperty("name")} {g.GetProperty("url")} {g.GetProperty("path")}"));
        Assert.Equal(["nodejs /files/nodejs/"], root.GetProperty("files").EnumerateArray().Select(f => $"{f.GetProperty("name")} {f.GetProperty("path")}"));

        // containerd's hosts.toml from that answer alone: one per registry, the registry (without credentials) as fallback.
        var certs = temp.Sub("certs.d");
        var (code, output) = await HoardConfig("containerd", "--url", hoard.BaseUrl, "--apply", "--path", certs);
        Assert.True(code == 0, output);
        Assert.Contains("server = \"https://registry-1.docker.io\"", File.ReadAllText(Path.Combine(certs, "docker.io", "hosts.toml")), StringComparison.Ordinal);
        var corp = File.ReadAllText(Path.Combine(certs, "registry.corp", "hosts.toml"));
        Assert.Contains("server = \"http://registry.corp.example:5000\"", corp, StringComparison.Ordinal);
        Assert.Contains($"[host.\"{hoard.BaseUrl}\"]", corp, StringComparison.Ordinal);
        Assert.Equal(["docker.io", "registry.corp"], Directory.GetDirectories(certs).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Config_podman_without_a_registry_list_takes_it_from_the_server_and_skopeo_pulls_through_hoard()
    {
        var (temp, registry, single, _) = await OciTests.UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        var name = $"reg{Guid.NewGuid():N}"[..12] + ".test";
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => OciTests.SetRegistry(o, registry, name, isDefault: false));
        var conf = $"/etc/containers/registries.conf.d/{name}.conf";
        try
        {
            // No --registry, no HOARD_REGISTRY, no --config: only the server knows this registry.
            var (code, output) = await HoardConfig("podman", "--url", hoard.BaseUrl, "--apply", "--path", conf);
            Assert.True(code == 0, output);
            var text = File.ReadAllText(conf);
            Assert.Contains($"prefix = \"{name}\"\nlocation = \"{registry.Host}\"\ninsecure = true\n", text, StringComparison.Ordinal);
            Assert.Contains($"location = \"{new Uri(hoard.BaseUrl).Authority}/{name}\"", text, StringComparison.Ordinal);
            var dest = temp.Sub("pulled");
            (code, output) = await Pip.RunAsync("skopeo", ["copy", "--retry-times", "0", $"docker://{name}/team/app:v1", $"dir:{dest}"]);
            Assert.True(code == 0, output);
            OciTests.AssertPulled(dest, single, all: true);
            Assert.True(hoard.Metrics.Get($"hoard_oci_requests_total{{registry=\"{name}\",outcome=\"miss\"}}") >= 3);
        }
        finally
        {
            File.Delete(conf);
        }
    }

    [Fact]
    public async Task Config_git_without_a_git_list_takes_it_from_the_server_and_git_clones_through_hoard()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("tool.git");
        using var temp = new TempDir();
        // Credentials in the server's URL: they must not reach the client's git config.
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://reader:git-password@127.0.0.1:{up.Port}/"))));
        var (code, output) = await HoardConfig("git", "--url", hoard.BaseUrl);
        Assert.True(code == 0, output);
        var line = output.Trim().Split('\n')[0];
        Assert.Equal($"git config --global url.{hoard.BaseUrl}/git/up/.insteadOf {up.BaseUrl}/", line);
        var home = temp.Sub("home");
        var env = new Dictionary<string, string> { ["HOME"] = home, ["GIT_CONFIG_NOSYSTEM"] = "1", ["GIT_TERMINAL_PROMPT"] = "0" };
        Assert.Equal(0, (await Pip.RunAsync("git", line.Split(' ')[1..], env)).Code);
        (code, output) = await Pip.RunAsync("git", ["clone", "-q", $"{up.BaseUrl}/tool.git", Path.Combine(temp.Path, "clone")], env);
        Assert.True(code == 0, output);
        Assert.Equal((await GitUpstream.Git(work, "rev-parse", "HEAD")).Trim(), (await GitUpstream.Git(Path.Combine(temp.Path, "clone"), "rev-parse", "HEAD")).Trim());
        Assert.True(hoard.Metrics.Get("hoard_git_requests_total{kind=\"upload_pack\",result=\"fetched\"}") >= 1);
    }

    [Fact]
    public async Task Config_exits_2_with_one_line_when_the_server_is_unreachable_answers_no_json_or_too_much()
    {
        using var temp = new TempDir();
        var site = temp.Sub("site");
        Directory.CreateDirectory(Path.Combine(site, "html", "_hoard"));
        File.WriteAllText(Path.Combine(site, "html", "_hoard", "config"), "<html><body>a login page</body></html>\n");
        Directory.CreateDirectory(Path.Combine(site, "big", "_hoard"));
        File.WriteAllText(Path.Combine(site, "big", "_hoard", "config"), "[" + string.Concat(Enumerable.Repeat("\"padding\",", 200_000)) + "0]");
        Directory.CreateDirectory(Path.Combine(site, "wrong", "_hoard"));
        File.WriteAllText(Path.Combine(site, "wrong", "_hoard", "config"), "{\"version\": 1, \"registries\": [{\"name\": \"../../etc\", \"url\": \"https://x.example/\", \"default\": true}], \"pypi\": [], \"git\": [], \"files\": []}");
        await using var nginx = new Nginx(site);
        await nginx.StartAsync();
        var down = $"http://127.0.0.1:{Ports.Free()}";
        (string Url, string Reason)[] cases =
        [
            (down, "refused"),
            (nginx.BaseUrl + "/nothing", "answered 404"),
            (nginx.BaseUrl + "/html", "not Hoard's configuration JSON"),
            (nginx.BaseUrl + "/big", "larger than 1048576 bytes"),
            (nginx.BaseUrl + "/wrong", "the upstream name '../../etc' is not one Hoard accepts"),
        ];
        foreach (var client in new[] { "podman", "containerd", "git" })
        {
            foreach (var (url, reason) in cases)
            {
                string[] write = client == "git" ? [] : ["--apply", "--path", temp.Sub("written")];
                var (code, output) = await HoardConfig([client, "--url", url, .. write]);
                Assert.True(code == 2, $"{client} {url}: {output}");
                var text = output.Trim();
                Assert.DoesNotContain('\n', text);
                Assert.StartsWith($"hoard: cannot read the server's configuration at {url}/_hoard/config: ", text, StringComparison.Ordinal);
                Assert.Contains(reason, text, StringComparison.OrdinalIgnoreCase);
            }
        }
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Sub("written")));
        // A list on the command line needs no server at all.
        var (localCode, localOutput) = await HoardConfig("podman", "--url", down, "--registry", "ghcr.io=https://ghcr.io");
        Assert.True(localCode == 0, localOutput);
        Assert.Contains("prefix = \"ghcr.io\"", localOutput, StringComparison.Ordinal);
    }
    [Fact]
    public async Task Registries_conf_falls_back_to_a_plain_http_registry_when_hoard_is_down()
    {
        var (temp, registry, single, _) = await OciTests.UpstreamWithImagesAsync();
        using var __ = temp;
        await using var ___ = registry;
        // A name that resolves nowhere, and a Hoard URL where nothing listens: only the [[registry]] location (the
        // plain-HTTP registry, reachable only with insecure = true) can serve this pull.
        var name = $"reg{Guid.NewGuid():N}"[..12] + ".test";
        var down = $"http://127.0.0.1:{Ports.Free()}";
        // skopeo 1.9 reads only /etc/containers/registries.conf(.d): the drop-in goes there, uniquely named, and is removed.
        var conf = $"/etc/containers/registries.conf.d/{name}.conf";
        try
        {
            var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "podman", "--url", down, "--registry", $"{name}=http://{registry.Host}/", "--apply", "--path", conf]);
            Assert.True(code == 0, output);
            var text = File.ReadAllText(conf);
            Assert.Contains($"[[registry]]\nprefix = \"{name}\"\nlocation = \"{registry.Host}\"\ninsecure = true\n", text, StringComparison.Ordinal);
            Assert.Contains($"[[registry.mirror]]\nlocation = \"{new Uri(down).Authority}/{name}\"\ninsecure = true\n", text, StringComparison.Ordinal);
            var dest = temp.Sub("pulled");
            (code, output) = await Pip.RunAsync("skopeo", ["copy", "--retry-times", "0", $"docker://{name}/team/app:v1", $"dir:{dest}"]);
            Assert.True(code == 0, output + "\n" + text);
            OciTests.AssertPulled(dest, single, all: true);
        }
        finally
        {
            File.Delete(conf);
        }
    }
}
