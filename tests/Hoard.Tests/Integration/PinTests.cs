using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>`hoard pin` and `hoard unpin` against a real package index: eviction under pressure leaves pins alone.</summary>
public sealed class PinTests
{
    private const string Token = "pin-test-token-0123";

    [Fact]
    public async Task A_pinned_package_survives_eviction_under_pressure_and_serves_pip_with_upstream_stopped()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("index"));
        var keep = index.AddWheel("keep", "1.0", extraBytes: 300_000);
        for (var i = 0; i < 10; i++)
        {
            index.AddWheel($"filler{i}", "1.0", extraBytes: 300_000);
        }
        index.AddWheel("huge", "1.0", extraBytes: 1_450_000); // fits the store beside the pin, not the pins allowance (80%)
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.AdminToken = Token;
            o.MaxSizeBytes = 2_000_000;
        });

        var (code, output) = await HoardProcess.RunCliAsync(Token, "pin", "--url", hoard.BaseUrl, "--package", "keep==1.0");
        Assert.True(code == 0, output);
        Assert.Contains("keep==1.0: 1 fetched", output, StringComparison.Ordinal);
        Assert.Contains("; pinned", output, StringComparison.Ordinal);

        // Three megabytes of other packages through a two-megabyte store: most of them are evicted, the pin is not.
        using var http = new HttpClient();
        for (var i = 0; i < 10; i++)
        {
            Assert.NotEmpty(await http.GetStringAsync($"{hoard.BaseUrl}/simple/filler{i}/"));
            Assert.NotEmpty(await http.GetByteArrayAsync($"{hoard.BaseUrl}/simple/filler{i}/filler{i}-1.0-py3-none-any.whl"));
            await hoard.SettledAsync();
        }
        await FetchEngineTests.WaitUntil(() => hoard.Metrics.Get("hoard_store_evictions_total") >= 4, TimeSpan.FromSeconds(10));
        using (var kept = await http.GetAsync($"{hoard.BaseUrl}/simple/keep/{keep.Filename}"))
        {
            Assert.Equal("HIT", kept.Headers.GetValues("X-Hoard-Cache").Single());
        }

        // Listed with its size by hoard status (names with the token) and /_hoard/status.
        (code, output) = await HoardProcess.RunCliAsync(Token, "status", "--url", hoard.BaseUrl);
        Assert.True(code == 0, output);
        Assert.Contains("pins: 1, keeping ", output, StringComparison.Ordinal);
        Assert.Contains("  pinned package keep==1.0: ", output, StringComparison.Ordinal);
        Assert.Contains(" in 3 blobs", output, StringComparison.Ordinal); // the page, the metadata file, the wheel

        // A pin that cannot fit is refused with the reason, and nothing else loses its pin.
        (code, output) = await HoardProcess.RunCliAsync(Token, "pin", "--url", hoard.BaseUrl, "--package", "huge==1.0");
        Assert.Equal(1, code);
        var engine = hoard.Service<Hoard.Core.Fetch.FetchEngine>();
        Assert.True(output.Contains("huge==1.0: FAILED: not pinned: it needs ", StringComparison.Ordinal), $"{output} max {engine.MaxPinnedBytes} pinned {engine.PinnedBytes} " + string.Join(", ", engine.Pins()) + " blobs " + string.Join(", ", engine.StoredDigests()));
        Assert.Contains("may hold at most 1.5 MiB", output, StringComparison.Ordinal);

        // Upstream gone: pip still installs the pinned package from Hoard (page, metadata and wheel all kept).
        await nginx.DisposeAsync();
        var downloads = temp.Sub("pip");
        (code, output) = await Pip.DownloadAsync(hoard.BaseUrl + "/simple/", downloads, "keep==1.0");
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(downloads, keep.Filename)), output);

        // Unpinned: back in line for eviction like anything else.
        (code, output) = await HoardProcess.RunCliAsync(Token, "unpin", "--url", hoard.BaseUrl, "keep==1.0", "never-pinned");
        Assert.Equal(1, code);
        Assert.Contains("unpinned keep==1.0", output, StringComparison.Ordinal);
        Assert.Contains("never-pinned: 404", output, StringComparison.Ordinal);
        Assert.Empty(hoard.Service<Hoard.Core.Fetch.FetchEngine>().Pins());
    }

    [Fact]
    public async Task A_pinned_repository_keeps_its_mirror_and_bundle_through_eviction_and_clones_with_upstream_stopped()
    {
        using var temp = new TempDir();
        await using var git = new GitUpstream();
        await git.StartAsync();
        await git.CreateRepositoryAsync("team/kept.git", commits: 2, bigFileBytes: 250_000);
        await git.CreateRepositoryAsync("team/other.git", commits: 2, bigFileBytes: 250_000);
        var root = temp.Sub("files");
        for (var i = 0; i < 5; i++)
        {
            var data = new byte[400_000];
            Random.Shared.NextBytes(data);
            await File.WriteAllBytesAsync(Path.Combine(root, $"f{i}.bin"), data);
        }
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            o.Git.Add(new Hoard.Core.Configuration.UpstreamSpec("up", new Uri($"{git.BaseUrl}/")));
            PipTests.SetFiles(o, "big=" + nginx.BaseUrl + "/");
            o.AdminToken = Token;
            o.MaxSizeBytes = 2_000_000;
        });
        var (code, output) = await HoardProcess.RunCliAsync(Token, "pin", "--url", hoard.BaseUrl, "--git", $"{git.BaseUrl}/team/kept.git");
        Assert.True(code == 0, output);
        Assert.Contains("; pinned", output, StringComparison.Ordinal);
        (code, output) = await HoardProcess.RunCliAsync(Token, "warm", "--url", hoard.BaseUrl, "--git", $"{git.BaseUrl}/team/other.git");
        Assert.True(code == 0, output);
        var mirrors = hoard.Service<Hoard.Core.Git.GitMirror>().Space;
        Assert.Equal(2, mirrors.Count);

        // Two megabytes of files through a two-megabyte store: the unpinned mirror (the least recently used thing) goes,
        // the pinned one and its bundle stay.
        using var http = new HttpClient();
        for (var i = 0; i < 5; i++)
        {
            Assert.NotEmpty(await http.GetByteArrayAsync($"{hoard.BaseUrl}/files/big/f{i}.bin"));
            await hoard.SettledAsync();
        }
        await FetchEngineTests.WaitUntil(() => mirrors.Count == 1, TimeSpan.FromSeconds(10));
        Assert.EndsWith("kept.git", Assert.Single(mirrors.Mirrors), StringComparison.Ordinal);
        var pin = Assert.Single(hoard.Service<Hoard.Core.Fetch.FetchEngine>().Pins());
        Assert.Equal(0, pin.Missing);
        Assert.True(pin.Bytes > 250_000 * 2, $"the bundle and the mirror: {pin.Bytes}");

        // Upstream gone: a clone is served from the pinned mirror.
        await git.StopNginxAsync();
        var clone = Path.Combine(temp.Path, "clone");
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/team/kept.git", clone);
        Assert.True(File.Exists(Path.Combine(clone, "big.bin")));
    }

    [Fact]
    public async Task An_image_too_big_to_pin_is_refused_before_a_byte_is_fetched()
    {
        using var temp = new TempDir();
        await using var registry = new Registry();
        await registry.StartAsync();
        var layout = new OciImages(temp.Sub("layout"));
        var single = layout.SinglePlatform("team/app", "v1", layerBytes: 600_000, layers: 2);
        await Skopeo.PushAsync(layout, single, registry);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            OciTests.SetRegistry(o, registry);
            o.AdminToken = Token;
            o.MaxSizeBytes = 1_000_000; // pins may hold 800 kB; the image's two layers are 1.2 MB
        });
        var (code, output) = await HoardProcess.RunCliAsync(Token, "pin", "--url", hoard.BaseUrl, "--image", $"{registry.Host}/team/app:v1");
        Assert.Equal(1, code);
        Assert.Contains($"{registry.Host}/team/app:v1: FAILED: not pinned: it needs ", output, StringComparison.Ordinal);
        Assert.True(output.Contains("may hold at most 781.3 KiB", StringComparison.Ordinal), output);
        // The manifest was read (that is where the sizes are); no blob was asked of the registry.
        foreach (var blob in single.Blobs)
        {
            Assert.Equal(0, registry.Count("GET", "/blobs/" + blob));
        }
        Assert.Empty(hoard.Service<Hoard.Core.Fetch.FetchEngine>().Pins());
    }

    [Fact]
    public async Task A_pin_follows_its_project_page_to_a_new_release_so_pip_still_finds_the_pinned_version_offline()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("index"));
        var keep = index.AddWheel("keep", "1.0", extraBytes: 100_000);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.AdminToken = Token;
            o.IndexTtl = TimeSpan.FromMinutes(5);
        }, time);
        var (code, output) = await HoardProcess.RunCliAsync(Token, "pin", "--url", hoard.BaseUrl, "--package", "keep==1.0");
        Assert.True(code == 0, output);
        var engine = hoard.Service<Hoard.Core.Fetch.FetchEngine>();
        Assert.Equal(3, engine.Pins().Single().Blobs); // page, metadata, wheel

        // keep 2.0 is released; past the TTL the page is fetched again and is new content: the pin follows the page.
        index.AddWheel("keep", "2.0");
        index.WriteHtml();
        time.Advance(TimeSpan.FromMinutes(6));
        using var http = new HttpClient();
        Assert.Contains("keep-2.0-py3-none-any.whl", await http.GetStringAsync(hoard.BaseUrl + "/simple/keep/"), StringComparison.Ordinal);
        await FetchEngineTests.WaitUntil(() => engine.Pins().Single().Blobs == 4, TimeSpan.FromSeconds(5));
        Assert.Equal(0, engine.Pins().Single().Missing);

        // Everything unpinned is evicted; upstream goes away; pip still finds keep 1.0 on the current page.
        hoard.Service<CacheIndex>().EvictTo(0);
        await nginx.DisposeAsync();
        var downloads = temp.Sub("pip");
        (code, output) = await Pip.DownloadAsync(hoard.BaseUrl + "/simple/", downloads, "keep==1.0");
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(downloads, keep.Filename)), output);
    }
}
