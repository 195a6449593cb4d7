using System.IO.Compression;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Xunit.Abstractions;

namespace Hoard.Tests.Integration;

/// <summary>Upstream input is bounded: a lying Content-Length cannot empty the store, a gzip bomb cannot fill memory.</summary>
public sealed class UpstreamBoundsTests(ITestOutputHelper output)
{
    /// <summary>An upstream that declares <paramref name="declared"/> bytes, sends ten and hangs up, to every request (resumes too).</summary>
    private static RecordingListener Liar(long declared) =>
        new($"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\nten bytes!");

    /// <summary>Three 400 KB files stored through Hoard from a files upstream named "up", then the liar's URL asked for.</summary>
    private static async Task<(int Status, string Body)> StoreThreeThenAskTheLiarAsync(HoardHost hoard)
    {
        using var http = new HttpClient();
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(400_000, (await http.GetByteArrayAsync($"{hoard.BaseUrl}/files/up/f{i}.bin")).Length);
        }
        await hoard.SettledAsync();
        Assert.Equal(3, hoard.Service<CacheIndex>().BlobCount);
        using var response = await http.GetAsync(hoard.BaseUrl + "/files/liar/huge.bin", HttpCompletionOption.ResponseHeadersRead);
        string body;
        try
        {
            body = await response.Content.ReadAsStringAsync();
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            body = "aborted: " + e.Message; // the upstream body broke off: Hoard must not pass it on as whole
        }
        await hoard.SettledAsync();
        return ((int)response.StatusCode, body);
    }

    /// <summary>Hoard with the honest upstream of three files and the liar, under a small store limit.</summary>
    private static Task<HoardHost> StartAsync(TempDir temp, Nginx nginx, RecordingListener liar, long maxSize) =>
        HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
            PipTests.SetFiles(o, $"liar=http://127.0.0.1:{liar.Port}/");
            o.MaxSizeBytes = maxSize;
        });

    private static async Task AssertAllThreeAreStillHitsAsync(HoardHost hoard)
    {
        using var http = new HttpClient();
        for (var i = 0; i < 3; i++)
        {
            using var again = await http.GetAsync($"{hoard.BaseUrl}/files/up/f{i}.bin");
            Assert.Equal("HIT", again.Headers.GetValues("X-Hoard-Cache").Single());
        }
        Assert.Equal(0, hoard.Metrics.Get("hoard_store_evictions_total"));
    }

    private static async Task<Nginx> ThreeFilesAsync(TempDir temp)
    {
        var root = temp.Sub("up");
        for (var i = 0; i < 3; i++)
        {
            File.WriteAllBytes(Path.Combine(root, $"f{i}.bin"), System.Security.Cryptography.RandomNumberGenerator.GetBytes(400_000));
        }
        var nginx = new Nginx(root);
        await nginx.StartAsync();
        return nginx;
    }

    [Fact]
    public async Task A_content_length_larger_than_the_store_is_refused_at_once_and_evicts_nothing()
    {
        using var temp = new TempDir();
        await using var nginx = await ThreeFilesAsync(temp);
        using var liar = Liar(1_000_000_000_000);
        await using var hoard = await StartAsync(temp, nginx, liar, maxSize: 10_000_000);

        var (status, body) = await StoreThreeThenAskTheLiarAsync(hoard);
        Assert.Equal(502, status);
        Assert.Contains("larger than the store", body, StringComparison.Ordinal);
        Assert.Equal(1, liar.Connections);
        await AssertAllThreeAreStillHitsAsync(hoard);
    }

    [Fact]
    public async Task A_download_makes_room_for_the_bytes_that_arrived_not_for_the_length_upstream_declared()
    {
        using var temp = new TempDir();
        await using var nginx = await ThreeFilesAsync(temp);
        // Fits in the store, but only with two of the three files gone: the ten bytes that come need no room.
        using var liar = Liar(1_500_000);
        await using var hoard = await StartAsync(temp, nginx, liar, maxSize: 2_000_000);

        var (_, body) = await StoreThreeThenAskTheLiarAsync(hoard);
        Assert.StartsWith("aborted", body, StringComparison.Ordinal);
        Assert.True(hoard.Logs.Contains("broke off files/liar/huge.bin after 10 bytes"));
        await AssertAllThreeAreStillHitsAsync(hoard);
        Assert.False(hoard.Service<CacheIndex>().TryGetEntry("files/liar/huge.bin", out _));
    }

    [Fact]
    public async Task A_gzip_bomb_index_page_is_refused_with_a_502_and_hoard_stays_small()
    {
        using var temp = new TempDir();
        // 300 MB of spaces in an HTML page, 0.3 MB on the wire.
        using var bomb = new MemoryStream();
        using (var gzip = new GZipStream(bomb, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            gzip.Write("<!DOCTYPE html><html><body>"u8);
            var spaces = new byte[1024 * 1024];
            Array.Fill(spaces, (byte)' ');
            for (var i = 0; i < 300; i++)
            {
                gzip.Write(spaces);
            }
            gzip.Write("<a href=\"x-1.0.tar.gz\">x-1.0.tar.gz</a></body></html>"u8);
        }
        var compressed = bomb.ToArray();
        Assert.InRange(compressed.Length, 100_000, 1_000_000);
        var (upstream, upstreamUrl) = await TestWebApp.StartAsync(app => app.MapGet("/simple/{**rest}", async (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "text/html";
            ctx.Response.Headers.ContentEncoding = "gzip";
            await ctx.Response.Body.WriteAsync(compressed);
        }));
        await using var upstreamApp = upstream;
        var port = Ports.Free();
        var data = temp.Sub("data");
        await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", data, "--pypi", $"bomb={upstreamUrl}/simple/", "--index-retries", "0"]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));

        using var http = new HttpClient();
        using var response = await http.GetAsync($"http://127.0.0.1:{port}/simple/bomb/");
        Assert.Equal(502, (int)response.StatusCode);
        Assert.Contains("upstream page larger than 64 MiB", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        await FetchEngineTests.WaitUntil(() => Directory.GetFiles(Path.Combine(data, "tmp")).Length == 0, TimeSpan.FromSeconds(10));
        Assert.Empty(Directory.GetFiles(Path.Combine(data, "blobs"), "*", SearchOption.AllDirectories));
        var peak = hoard.PeakResidentBytes;
        output.WriteLine($"hoard peak RSS under a 300 MB gzip bomb: {peak / (1024 * 1024)} MB");
        Assert.True(peak < 400L * 1024 * 1024, $"peak RSS {peak / (1024 * 1024)} MB");
    }
}
