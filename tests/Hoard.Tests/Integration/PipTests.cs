using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>The real pip, in fresh venvs, through Hoard, against nginx serving an index the test built.</summary>
public sealed class PipTests
{
    [Fact]
    public async Task Install_through_hoard_then_again_from_a_fresh_venv_with_no_upstream_file_download()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("hoard-demo", "1.0");
        index.AddWheel("hoard-demo", "0.9");
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetPypi(o, "up=" + nginx.BaseUrl + "/simple/"));

        using (var first = await Pip.CreateAsync())
        {
            var (code, output) = await first.InstallAsync(hoard.BaseUrl + "/simple/", "hoard-demo");
            Assert.True(code == 0, output);
            var (_, version) = await first.RunPythonAsync("import hoard_demo; print(hoard_demo.VERSION)");
            Assert.Equal("1.0", version.Trim());
        }
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));

        using (var second = await Pip.CreateAsync())
        {
            var (code, output) = await second.InstallAsync(hoard.BaseUrl + "/pypi/up/simple/", "hoard-demo==1.0");
            Assert.True(code == 0, output);
        }
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));
        Assert.Equal(0, nginx.Count("/packages/hoard_demo-0.9-py3-none-any.whl"));
    }

    [Fact]
    public async Task Install_from_an_index_whose_links_are_absolute_on_another_host()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("abs-links", "2.0");
        await using var files = new Nginx(index.Root);
        await files.StartAsync();
        index.WriteHtml(fileBaseUrl: files.BaseUrl);
        await using var pages = new Nginx(index.Root);
        await pages.StartAsync();
        // Both on loopback: the files' host must be allowed, as it is no configured upstream.
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            SetPypi(o, pages.BaseUrl + "/simple/");
            ConnectionPolicyTests.AllowHost(o, $"127.0.0.1:{files.Port}");
        });

        using var pip = await Pip.CreateAsync();
        var (code, output) = await pip.InstallAsync(hoard.BaseUrl + "/simple/", "abs-links");
        Assert.True(code == 0, output);
        Assert.Equal(1, files.Count("/packages/" + wheel.Filename));
        Assert.Equal(0, pages.Count("/packages/" + wheel.Filename));
    }

    [Fact]
    public async Task Install_works_with_the_upstream_stopped_serving_the_last_good_index()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        index.AddWheel("offline-ok", "1.0");
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            SetPypi(o, nginx.BaseUrl + "/simple/");
            o.IndexTtl = TimeSpan.Zero;
            o.IndexRetries = 0;
            o.ConnectTimeout = TimeSpan.FromSeconds(2);
        });
        using (var pip = await Pip.CreateAsync())
        {
            var (code, output) = await pip.InstallAsync(hoard.BaseUrl + "/simple/", "offline-ok");
            Assert.True(code == 0, output);
        }
        nginx.Kill();
        using (var pip = await Pip.CreateAsync())
        {
            var (code, output) = await pip.InstallAsync(hoard.BaseUrl + "/simple/", "offline-ok");
            Assert.True(code == 0, output);
        }
        Assert.True(hoard.Metrics.Get("hoard_stale_served_total{protocol=\"pypi\"}") >= 1);
        Assert.True(hoard.Logs.Contains("Serving stale pypi"));
    }

    [Fact]
    public async Task A_wheel_whose_bytes_do_not_match_the_index_is_never_stored_or_served()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("tampered", "1.0", extraBytes: 200_000);
        var claimed = new string('a', 64);
        index.WriteHtml(hashOverride: _ => claimed);
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetPypi(o, nginx.BaseUrl + "/simple/"));

        using var pip = await Pip.CreateAsync();
        var (code, _) = await pip.InstallAsync(hoard.BaseUrl + "/simple/", "tampered");
        Assert.NotEqual(0, code);

        using var http = new HttpClient();
        var response = await http.GetAsync(hoard.BaseUrl + "/simple/tampered/" + wheel.Filename);
        Assert.Equal(502, (int)response.StatusCode);
        Assert.Contains("sha256", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.False(hoard.Service<Hoard.Core.Storage.CacheIndex>().TryGetBlob(wheel.Sha256, out _));
        Assert.False(File.Exists(hoard.Service<Hoard.Core.Storage.ContentStore>().BlobPath(wheel.Sha256)));
        Assert.True(hoard.Metrics.Get("hoard_digest_mismatch_total{protocol=\"pypi\"}") >= 1);
        Assert.True(hoard.Logs.Contains("Not stored: sha256"));
    }

    [Fact]
    public async Task Eight_pips_at_once_for_one_uncached_large_wheel_cause_one_upstream_get()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("big-wheel", "1.0", extraBytes: 24 * 1024 * 1024);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root, "location /packages/ { limit_rate 12m; }");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetPypi(o, nginx.BaseUrl + "/simple/"));

        var downloads = Enumerable.Range(0, 8).Select(i => Pip.DownloadAsync(hoard.BaseUrl + "/simple/", temp.Sub("dl" + i), "big-wheel")).ToArray();
        var results = await Task.WhenAll(downloads);
        Assert.All(results, r => Assert.True(r.Code == 0, r.Output));
        for (var i = 0; i < 8; i++)
        {
            var got = File.ReadAllBytes(Path.Combine(temp.Path, "dl" + i, wheel.Filename));
            Assert.Equal(wheel.Sha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(got)));
        }
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename));
    }

    internal static void SetPypi(HoardOptions o, params string[] specs)
    {
        o.Pypi.Clear();
        foreach (var s in specs)
        {
            Assert.Null(UpstreamSpec.TryParse(s, false, out var spec, out _));
            o.Pypi.Add(spec!);
        }
    }

    internal static void SetFiles(HoardOptions o, string spec)
    {
        Assert.Null(UpstreamSpec.TryParse(spec, true, out var parsed, out _));
        o.Files.Add(parsed!);
    }
}
