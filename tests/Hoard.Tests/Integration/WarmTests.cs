using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// `hoard warm` with real upstreams (nginx serving a package index, docker-registry, git http-backend), then the real
/// pip, skopeo and git against Hoard with every upstream stopped.
/// </summary>
public sealed class WarmTests
{
    private const string Token = "warm-test-token";

    [Fact]
    public async Task After_a_warm_pip_skopeo_and_git_get_everything_with_every_upstream_stopped()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("index"));
        var alpha = index.AddWheel("alpha", "1.0", extraBytes: 200_000);
        index.AddWheel("alpha", "2.0");
        var beta = index.AddWheel("beta-pkg", "1.0", extraBytes: 100_000);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();

        var (images, registry, single, multi) = await OciTests.UpstreamWithImagesAsync();
        using var _ = images;
        await using var __ = registry;

        await using var git = new GitUpstream();
        await git.StartAsync();
        await git.CreateRepositoryAsync("team/tool.git", commits: 3, bigFileBytes: 300_000);

        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            OciTests.SetRegistry(o, registry);
            o.Git.Add(new UpstreamSpec("up", new Uri($"{git.BaseUrl}/")));
            o.AdminToken = Token;
        });

        var requirements = Path.Combine(temp.Path, "requirements.txt");
        File.WriteAllText(requirements, $"""
            # pip-compile output
            alpha==1.0
                # via app
            beta_pkg==1.0 \
                --hash=sha256:{beta.Sha256}
            """);
        string[] warm = ["warm", "--url", hoard.BaseUrl, "-r", requirements, "--image", $"{registry.Host}/team/multi:v2", "--image", $"{registry.Host}/team/app:v1", "--git", $"{git.BaseUrl}/team/tool.git"];
        var (code, output) = await HoardProcess.RunCliAsync(Token, warm);
        Assert.True(code == 0, output);
        // 2 wheels, the multi-platform image (index, 2 manifests, their configs and layers), the single one, 1 bundle.
        var blobs = multi.Blobs.Count + single.Blobs.Count;
        Assert.Contains("alpha==1.0: 1 fetched", output, StringComparison.Ordinal);
        Assert.Contains("beta_pkg==1.0: 1 fetched", output, StringComparison.Ordinal);
        Assert.Contains($"{git.BaseUrl}/team/tool.git: 1 fetched", output, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1:", output, StringComparison.Ordinal);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(output, @"warm: \d+ fetched \([0-9.]+ [KMG]?i?B\), 0 already cached, 0 item\(s\) failed"), output);
        Assert.Equal(1, nginx.Count("/packages/" + alpha.Filename));
        Assert.Equal(0, nginx.Count("/packages/alpha-2.0-py3-none-any.whl"));
        foreach (var blob in multi.Blobs.Concat(single.Blobs).Distinct())
        {
            Assert.Equal(1, registry.Count("GET", "/blobs/" + blob));
        }

        // Run again: nothing is fetched twice.
        (code, output) = await HoardProcess.RunCliAsync(Token, warm);
        Assert.True(code == 0, output);
        Assert.Contains("warm: 0 fetched (0 B), ", output, StringComparison.Ordinal);
        Assert.Equal(1, nginx.Count("/packages/" + alpha.Filename));
        Assert.True(blobs > 0);

        // Every upstream stopped: the real clients still get everything from Hoard.
        await nginx.DisposeAsync();
        registry.Kill();
        await git.StopNginxAsync();
        var downloads = temp.Sub("pip");
        (code, output) = await Pip.DownloadAsync(hoard.BaseUrl + "/simple/", downloads, "alpha==1.0", "beta-pkg==1.0");
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(downloads, alpha.Filename)), output);
        Assert.True(File.Exists(Path.Combine(downloads, beta.Filename)), output);

        var host = new Uri(hoard.BaseUrl).Authority;
        var pulled = temp.Sub("multi");
        (code, output) = await Skopeo.PullAsync($"{host}/team/multi:v2", pulled, all: true);
        Assert.True(code == 0, output);
        OciTests.AssertPulled(pulled, multi, all: true);
        pulled = temp.Sub("single");
        (code, output) = await Skopeo.PullAsync($"{host}/team/app:v1", pulled);
        Assert.True(code == 0, output);
        OciTests.AssertPulled(pulled, single, all: true);

        // The bundle is stored: it comes from the store with upstream gone, and clones.
        using var http = new HttpClient();
        using var bundle = await http.GetAsync($"{hoard.BaseUrl}/git/up/team/tool.git/-/bundle");
        Assert.Equal("HIT", bundle.Headers.GetValues("X-Hoard-Cache").Single());
        var bundleFile = Path.Combine(temp.Path, "tool.bundle");
        await File.WriteAllBytesAsync(bundleFile, await bundle.Content.ReadAsByteArrayAsync());
        var cloned = Path.Combine(temp.Path, "clone");
        await GitUpstream.Git(temp.Path, "clone", "-q", "-b", "main", bundleFile, cloned);
        Assert.True(File.Exists(Path.Combine(cloned, "big.bin")));
    }

    [Fact]
    public async Task Warm_reports_what_it_could_not_do_and_exits_1()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("index"));
        index.AddWheel("alpha", "1.0");
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.AdminToken = Token;
        });
        var requirements = Path.Combine(temp.Path, "requirements.txt");
        File.WriteAllText(requirements, "alpha==1.0\nalpha-missing==1.0\nunpinned>=2\nalpha==9.9\n-e ./local\n");
        var (code, output) = await HoardProcess.RunCliAsync(Token, "warm", "--url", hoard.BaseUrl, "-r", requirements, "--image", "docker.example:5000/x:1", "--git", "http://elsewhere.example/r.git");
        Assert.Equal(1, code);
        Assert.Contains("alpha==1.0: 1 fetched", output, StringComparison.Ordinal);
        Assert.Contains(":3: 'unpinned' is not pinned with ==", output, StringComparison.Ordinal);
        Assert.Contains(":5: not from an index", output, StringComparison.Ordinal);
        Assert.Contains("alpha-missing==1.0: FAILED: the project page: 404", output, StringComparison.Ordinal);
        Assert.Contains("alpha==9.9: FAILED: no file of version 9.9 matches", output, StringComparison.Ordinal);
        Assert.Contains("docker.example:5000/x:1: FAILED: manifest 1: 404: ", output, StringComparison.Ordinal);
        Assert.Contains("is not configured", output, StringComparison.Ordinal);
        Assert.Contains("http://elsewhere.example/r.git: FAILED: not under a configured --git upstream", output, StringComparison.Ordinal);
        Assert.Contains("warm: 1 fetched", output, StringComparison.Ordinal);
        Assert.Contains("4 item(s) failed", output, StringComparison.Ordinal);

        // Without the token: refused, and nothing fetched.
        (code, output) = await HoardProcess.RunCliAsync("wrong", "warm", "--url", hoard.BaseUrl, "-r", requirements);
        Assert.Equal(1, code);
        Assert.Contains("401", output, StringComparison.Ordinal);
        (code, output) = await HoardProcess.RunCliAsync("", "warm", "--url", hoard.BaseUrl, "-r", requirements);
        Assert.Equal(2, code);
        Assert.Contains("admin token", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_all_nodes_every_node_is_warmed_and_upstream_still_sends_each_file_and_blob_once()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("index"));
        var alpha = index.AddWheel("alpha", "1.0", extraBytes: 200_000);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        var (images, registry, single, _) = await OciTests.UpstreamWithImagesAsync();
        using var _ = images;
        await using var __ = registry;
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var nodes = await ClusterTests.StartNodesAsync(temp, 3, redis, o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            OciTests.SetRegistry(o, registry);
            o.AdminToken = Token;
        });
        var requirements = Path.Combine(temp.Path, "requirements.txt");
        File.WriteAllText(requirements, "alpha==1.0\n");
        var (code, output) = await HoardProcess.RunCliAsync(Token, "warm", "--url", nodes[1].BaseUrl, "--all-nodes", "-r", requirements, "--image", $"{registry.Host}/team/app:v1");
        Assert.True(code == 0, output);
        // One summary per node, each named; the node asked first fetches, the others get the bytes from peers.
        for (var i = 0; i < 3; i++)
        {
            Assert.Contains(new Uri(nodes[i].BaseUrl).Authority + ": warm: ", output, StringComparison.Ordinal);
        }
        Assert.Equal(1, nginx.Count("/packages/" + alpha.Filename));
        foreach (var blob in single.Blobs)
        {
            Assert.Equal(1, registry.Count("GET", "/blobs/" + blob));
        }
        // Every node holds the wheel now: asked directly, each answers from its own store.
        using var http = new HttpClient();
        for (var i = 0; i < 3; i++)
        {
            using var response = await http.GetAsync($"{nodes[i].BaseUrl}/simple/alpha/{alpha.Filename}");
            Assert.Equal("HIT", response.Headers.GetValues("X-Hoard-Cache").Single());
        }
    }

    [Fact]
    public async Task An_interrupted_warm_leaves_its_download_running_and_a_second_run_fetches_nothing_twice()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("index"));
        var slow = index.AddWheel("slow", "1.0", extraBytes: 6_000_000);
        var quick = index.AddWheel("quick", "1.0", extraBytes: 10_000);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root, "location /packages/slow { limit_rate 2m; }");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.AdminToken = Token;
        });
        var requirements = Path.Combine(temp.Path, "requirements.txt");
        File.WriteAllText(requirements, "slow==1.0\nquick==1.0\n");

        // The first warm is killed (Ctrl-C, a CI job cancelled) while the slow wheel is still coming.
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { HoardProcess.Dll, "warm", "--url", hoard.BaseUrl, "-r", requirements })
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["HOARD_ADMIN_TOKEN"] = Token;
        using (var first = System.Diagnostics.Process.Start(psi)!)
        {
            var engine = hoard.Service<Hoard.Core.Fetch.FetchEngine>();
            await FetchEngineTests.WaitUntil(() => engine.Downloads().Any(d => d.Key.EndsWith(slow.Filename, StringComparison.Ordinal) && d.Bytes > 0), TimeSpan.FromSeconds(20));
            first.Kill(entireProcessTree: true);
            await first.WaitForExitAsync();
        }

        // The download it started goes on without it; run again: what is stored or coming is not asked of upstream twice.
        var (code, output) = await HoardProcess.RunCliAsync(Token, "warm", "--url", hoard.BaseUrl, "-r", requirements);
        Assert.True(code == 0, output);
        Assert.Contains("0 item(s) failed", output, StringComparison.Ordinal);
        Assert.Equal(1, nginx.Count("/packages/" + slow.Filename));
        Assert.Equal(1, nginx.Count("/packages/" + quick.Filename));
        using var http = new HttpClient();
        using var stored = await http.GetAsync($"{hoard.BaseUrl}/simple/slow/{slow.Filename}");
        Assert.Equal("HIT", stored.Headers.GetValues("X-Hoard-Cache").Single());
    }
}
