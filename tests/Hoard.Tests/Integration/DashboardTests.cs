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

        var page = $"{hoard.BaseUrl}/#token={Token}";
        var dom = await ChromiumAsync(temp, "--dump-dom", page);
        Assert.Contains("id=\"hit-ratio\">75.0%</b>", dom, StringComparison.Ordinal);          // 3 hits of 4 answered requests (the slow one counts when it ends)
        Assert.Contains("files/up/tool-1.2.tar.gz", dom, StringComparison.Ordinal);            // a cached artifact by name
        Assert.Matches(@"files/up/big-image-layer\.bin</td><td>[0-9.]+ (KiB|MiB) of 64\.0 MiB \([0-9.]+%\)</td>", dom); // in flight, with progress
        Assert.Contains("id=\"cluster\">alone</b>", dom, StringComparison.Ordinal);
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
