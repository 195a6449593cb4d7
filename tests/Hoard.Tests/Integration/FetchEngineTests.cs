using System.Security.Cryptography;
using Hoard.Core.Metrics;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace Hoard.Tests.Integration;

/// <summary>The shared fetch path, driven through /files/ against a real nginx upstream.</summary>
public sealed class FetchEngineTests
{
    private static (string Path, string Sha) MakeFile(string dir, string name, int size)
    {
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, data);
        return (path, Convert.ToHexStringLower(SHA256.HashData(data)));
    }

    private static async Task<string> Sha256Of(HttpResponseMessage response)
    {
        await using var s = await response.Content.ReadAsStreamAsync();
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(s));
    }

    [Fact]
    public async Task Eight_concurrent_misses_cause_one_upstream_download_and_all_get_the_right_bytes()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var (_, sha) = MakeFile(root, "big.bin", 24 * 1024 * 1024);
        await using var nginx = new Nginx(root, "limit_rate 24m;");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));

        using var http = new HttpClient();
        var tasks = Enumerable.Range(0, 8).Select(async _ =>
        {
            using var r = await http.GetAsync(hoard.BaseUrl + "/files/up/big.bin", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(200, (int)r.StatusCode);
            return (Sha: await Sha256Of(r), Cache: r.Headers.GetValues("X-Hoard-Cache").Single());
        }).ToArray();
        var results = await Task.WhenAll(tasks);
        Assert.All(results, r => Assert.Equal(sha, r.Sha));
        // nginx writes its log line after the last byte is sent, which may be a moment after Hoard's clients have it.
        await WaitUntil(() => nginx.Count("/big.bin") > 0, TimeSpan.FromSeconds(5));
        Assert.Equal(1, nginx.Count("/big.bin"));
        Assert.Single(results, r => r.Cache == "MISS");
        Assert.Equal(7, results.Count(r => r.Cache == "COALESCED"));

        // Bytes saved can be read off the metrics: upstream sent the file once, for the client that started the
        // download; the seven that joined got theirs coalesced; a later hit comes from the store.
        const long size = 24 * 1024 * 1024;
        Assert.Equal(200, (int)(await http.GetAsync(hoard.BaseUrl + "/files/up/big.bin")).StatusCode);
        await WaitUntil(() => Served(hoard, "store") == size && Served(hoard, "coalesced") == 7 * size, TimeSpan.FromSeconds(5));
        Assert.Equal(size, Served(hoard, "upstream"));
        Assert.Equal(0, Served(hoard, "peer"));
        Assert.Equal(size, hoard.Metrics.Get("hoard_upstream_bytes_total{protocol=\"files\",upstream=\"up\"}"));
    }

    private static long Served(HoardHost hoard, string source)
    {
        var prefix = $"hoard_served_bytes_total{{source=\"{source}\"}} ";
        return long.Parse(hoard.Metrics.Render().Split('\n').Single(l => l.StartsWith(prefix, StringComparison.Ordinal))[prefix.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task The_first_bytes_reach_the_client_while_the_download_is_still_running()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var (_, sha) = MakeFile(root, "slow.bin", 16 * 1024 * 1024);
        await using var nginx = new Nginx(root, "limit_rate 8m;");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));

        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/files/up/slow.bin", HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();
        var first = new byte[64 * 1024];
        await body.ReadExactlyAsync(first);
        // 16 MiB at 8 MiB/s: the download cannot be done yet, but bytes are flowing.
        Assert.Equal(1, hoard.Service<Hoard.Core.Fetch.FetchEngine>().InFlight);
        using var rest = new MemoryStream();
        rest.Write(first);
        await body.CopyToAsync(rest);
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(rest.ToArray())));
    }

    [Fact]
    public async Task A_client_that_disconnects_does_not_cancel_the_download_which_is_committed_for_the_next()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var (_, sha) = MakeFile(root, "abandoned.bin", 12 * 1024 * 1024);
        await using var nginx = new Nginx(root, "limit_rate 12m;");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));

        using (var http = new HttpClient())
        {
            var response = await http.GetAsync(hoard.BaseUrl + "/files/up/abandoned.bin", HttpCompletionOption.ResponseHeadersRead);
            var body = await response.Content.ReadAsStreamAsync();
            await body.ReadExactlyAsync(new byte[100_000]);
            response.Dispose(); // the client goes away mid-body
        }
        var index = hoard.Service<CacheIndex>();
        await WaitUntil(() => index.TryGetEntry("files/up/abandoned.bin", out _), TimeSpan.FromSeconds(20));
        using var again = new HttpClient();
        using var hit = await again.GetAsync(hoard.BaseUrl + "/files/up/abandoned.bin");
        Assert.Equal("HIT", hit.Headers.GetValues("X-Hoard-Cache").Single());
        Assert.Equal(sha, await Sha256Of(hit));
        Assert.Equal(1, nginx.Count("/abandoned.bin"));
    }

    [Fact]
    public async Task An_upstream_that_breaks_mid_body_is_resumed_with_range()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var (_, sha) = MakeFile(root, "flaky.bin", 16 * 1024 * 1024);
        await using var nginx = new Nginx(root, "limit_rate 4m;");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));

        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/files/up/flaky.bin", HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync();
        var buffer = new MemoryStream();
        var chunk = new byte[256 * 1024];
        await body.ReadExactlyAsync(chunk);
        buffer.Write(chunk);
        nginx.Kill();
        // Upstream comes back only once Hoard has seen the body break off (and is backing off before resuming).
        await WaitUntil(() => hoard.Metrics.Get("hoard_upstream_errors_total{protocol=\"files\",upstream=\"up\",reason=\"body\"}") >= 1, TimeSpan.FromSeconds(10));
        await using var restarted = new Nginx(root, "", nginx.Port);
        await restarted.StartAsync();
        await body.CopyToAsync(buffer);
        Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(buffer.ToArray())));
        Assert.Contains(restarted.Lines, l => l.Contains("\"bytes=", StringComparison.Ordinal));
        Assert.True(hoard.Metrics.Get("hoard_upstream_resumes_total{protocol=\"files\",upstream=\"up\"}") >= 1);
        await hoard.SettledAsync();
        Assert.True(hoard.Service<CacheIndex>().TryGetBlob(sha, out _));
    }

    [Fact]
    public async Task An_upstream_that_breaks_and_cannot_resume_fails_the_client_visibly_and_commits_nothing()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var (_, sha) = MakeFile(root, "broken.bin", 16 * 1024 * 1024);
        await using var nginx = new Nginx(root, "limit_rate 4m; max_ranges 0;");
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));

        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/files/up/broken.bin", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(16 * 1024 * 1024, response.Content.Headers.ContentLength);
        await using var body = await response.Content.ReadAsStreamAsync();
        await body.ReadExactlyAsync(new byte[256 * 1024]);
        nginx.Kill();
        await using var restarted = new Nginx(root, "max_ranges 0;", nginx.Port);
        await restarted.StartAsync();
        await Assert.ThrowsAnyAsync<IOException>(() => body.CopyToAsync(Stream.Null));
        // Counted and logged as the failure it was (the 200 had gone out), not as a miss.
        await WaitUntil(() => hoard.Metrics.GetRequests("files", CacheOutcome.Error) == 1, TimeSpan.FromSeconds(5));
        Assert.Equal(0, hoard.Metrics.GetRequests("files", CacheOutcome.Miss));
        // The access log is written by its own writer, a moment after the response ends.
        await WaitUntil(() => hoard.AccessLogLines.Any(l => l.Contains(" access: GET /files/up/broken.bin 200 error ", StringComparison.Ordinal) && l.Contains("could not be resumed", StringComparison.Ordinal)), TimeSpan.FromSeconds(5));
        Assert.False(hoard.Service<CacheIndex>().TryGetBlob(sha, out _));
        Assert.False(hoard.Service<CacheIndex>().TryGetEntry("files/up/broken.bin", out _));
        Assert.Empty(Directory.GetFiles(hoard.Service<ContentStore>().TempDir));
    }

    [Fact]
    public async Task Least_recently_used_blobs_are_evicted_to_stay_under_max_size()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        for (var i = 0; i < 5; i++)
        {
            MakeFile(root, $"f{i}.bin", 400_000);
        }
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
            o.MaxSizeBytes = 1_000_000;
        });
        using var http = new HttpClient();
        for (var i = 0; i < 5; i++)
        {
            (await http.GetByteArrayAsync($"{hoard.BaseUrl}/files/up/f{i}.bin")).ToString();
            await hoard.SettledAsync(); // committed, and so queued for eviction, in the order asked for
        }
        await hoard.SettledAsync();
        var index = hoard.Service<CacheIndex>();
        Assert.True(index.TotalBytes <= 1_000_000, $"store holds {index.TotalBytes}");
        Assert.False(index.TryGetEntry("files/up/f0.bin", out _));
        Assert.True(index.TryGetEntry("files/up/f4.bin", out _));
        // Counted as each evicted blob is reported, just after the pass that took the bytes off the index's total.
        await WaitUntil(() => hoard.Metrics.Get("hoard_store_evictions_total") >= 3, TimeSpan.FromSeconds(5));
        var blobFiles = Directory.GetFiles(hoard.Service<ContentStore>().BlobDir, "*", SearchOption.AllDirectories);
        Assert.Equal(index.BlobCount, blobFiles.Length);
    }

    [Fact]
    public async Task A_store_that_cannot_write_still_serves_clients_from_upstream_and_commits_nothing()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var (_, sha) = MakeFile(root, "toobig.bin", 12 * 1024 * 1024);
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        var data = temp.Sub("full");
        var (mount, output) = await Pip.RunAsync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", data]);
        Assert.True(mount == 0, "this test needs root to mount a small tmpfs: " + output);
        try
        {
            await using var hoard = await HoardHost.StartAsync(data, o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));
            using var http = new HttpClient();
            using (var response = await http.GetAsync(hoard.BaseUrl + "/files/up/toobig.bin"))
            {
                Assert.Equal(200, (int)response.StatusCode);
                Assert.Equal(sha, await Sha256Of(response));
            }
            using (var again = await http.GetAsync(hoard.BaseUrl + "/files/up/toobig.bin"))
            {
                Assert.Equal("BYPASS", again.Headers.GetValues("X-Hoard-Cache").Single());
                Assert.Equal(sha, await Sha256Of(again));
            }
            Assert.False(hoard.Service<CacheIndex>().TryGetBlob(sha, out _));
            Assert.True(hoard.Metrics.Get("hoard_store_write_errors_total") >= 1);
            Assert.True(hoard.Logs.Contains("Store write failed"));
        }
        finally
        {
            await Pip.RunAsync("umount", ["-l", data]);
        }
    }

    [Fact]
    public async Task A_mutable_files_upstream_is_revalidated_after_its_ttl_and_picks_up_changes()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var path = Path.Combine(root, "latest.txt");
        File.WriteAllText(path, "v1");
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "nightly=" + nginx.BaseUrl + "/");
            o.FilesTtl["nightly"] = TimeSpan.FromMilliseconds(300);
        }, time);
        using var http = new HttpClient();
        var url = hoard.BaseUrl + "/files/nightly/latest.txt";
        Assert.Equal("v1", await http.GetStringAsync(url));
        using (var fresh = await http.GetAsync(url))
        {
            Assert.Equal("HIT", fresh.Headers.GetValues("X-Hoard-Cache").Single());
        }
        time.Advance(TimeSpan.FromMilliseconds(400));
        using (var same = await http.GetAsync(url))
        {
            Assert.Equal("REVALIDATED", same.Headers.GetValues("X-Hoard-Cache").Single());
        }
        File.WriteAllText(path, "v2-changed");
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(1));
        time.Advance(TimeSpan.FromMilliseconds(400));
        Assert.Equal("v2-changed", await http.GetStringAsync(url));
        Assert.Equal(1, nginx.Count("/latest.txt", status: 304));
    }

    [Fact]
    public async Task An_upstream_that_accepts_but_never_answers_gets_a_504_after_the_first_byte_timeout()
    {
        using var temp = new TempDir();
        // A peer that takes the connection and says nothing: what a hung upstream looks like from here.
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var held = new List<System.Net.Sockets.TcpClient>();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                held.Add(await silent.AcceptTcpClientAsync());
            }
        });
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, $"hung=http://127.0.0.1:{port}/");
            o.FirstByteTimeout = TimeSpan.FromSeconds(1);
        });
        using var http = new HttpClient();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var response = await http.GetAsync(hoard.BaseUrl + "/files/hung/x.bin");
        Assert.Equal(504, (int)response.StatusCode);
        Assert.Contains("did not answer within 1s", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
        Assert.Equal(1, hoard.Metrics.Get("hoard_upstream_errors_total{protocol=\"files\",upstream=\"hung\",reason=\"timeout\"}"));
        silent.Stop();
    }

    internal static async Task WaitUntil(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(50);
        }
    }
}
