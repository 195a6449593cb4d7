using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace Hoard.Tests.Integration;

/// <summary>The PyPI simple API over HTTP: formats, rewriting, freshness, metadata, names, bad input.</summary>
public sealed class SimpleApiTests
{
    private const string PipAccept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01";

    private static async Task<(TempDir Temp, PackageIndex Index, Nginx Nginx)> UpstreamAsync(bool json)
    {
        var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        index.AddWheel("demo-pkg", "1.0");
        index.AddWheel("demo-pkg", "1.1");
        var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        if (json)
        {
            index.WriteJson(nginx.BaseUrl);
        }
        else
        {
            index.WriteHtml();
        }
        return (temp, index, nginx);
    }

    private static HttpRequestMessage Get(string url, string? accept = null)
    {
        var r = new HttpRequestMessage(HttpMethod.Get, url);
        if (accept is not null)
        {
            r.Headers.TryAddWithoutValidation("Accept", accept);
        }
        return r;
    }

    [Fact]
    public async Task A_json_upstream_keeps_pep_700_and_658_fields_and_every_url_points_at_hoard()
    {
        var (temp, index, nginx) = await UpstreamAsync(json: true);
        using var _ = temp;
        await using var __ = nginx;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();

        using var response = await http.SendAsync(Get(hoard.BaseUrl + "/simple/demo-pkg/", PipAccept));
        Assert.Equal("application/vnd.pypi.simple.v1+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Contains("Accept", response.Headers.Vary);
        var page = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("1.1", page["meta"]!["api-version"]!.GetValue<string>());
        Assert.Equal(42, page["meta"]!["_last-serial"]!.GetValue<int>());
        Assert.Equal(2, page["versions"]!.AsArray().Count);
        Assert.Equal(2, page["files"]!.AsArray().Count);
        foreach (var f in page["files"]!.AsArray())
        {
            Assert.Equal(f!["filename"]!.GetValue<string>(), f["url"]!.GetValue<string>());
            Assert.Equal("2026-01-02T03:04:05.678901Z", f["upload-time"]!.GetValue<string>());
            Assert.True(f["size"]!.GetValue<long>() > 0);
            Assert.NotNull(f["core-metadata"]!["sha256"]);
            Assert.Equal(">=3.7", f["requires-python"]!.GetValue<string>());
        }

        // The same page as HTML, attributes derived from the JSON fields.
        var html = await (await http.SendAsync(Get(hoard.BaseUrl + "/simple/demo-pkg/", "text/html"))).Content.ReadAsStringAsync();
        Assert.Contains("href=\"demo_pkg-1.0-py3-none-any.whl#sha256=", html, StringComparison.Ordinal);
        Assert.Contains("data-requires-python=\"&gt;=3.7\"", html, StringComparison.Ordinal);
        Assert.Contains("data-core-metadata=\"sha256=", html, StringComparison.Ordinal);
        Assert.DoesNotContain(nginx.BaseUrl, html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_rebuilt_under_the_same_name_is_fetched_again_because_the_index_names_a_new_sha256()
    {
        using var temp = new TempDir();
        var index = new PackageIndex(temp.Sub("upstream"));
        var first = index.AddWheel("rebuilt", "1.0", extraBytes: 1000);
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.IndexTtl = TimeSpan.Zero;
        });
        using var http = new HttpClient();
        await http.GetStringAsync(hoard.BaseUrl + "/simple/rebuilt/");
        var url = hoard.BaseUrl + "/simple/rebuilt/" + first.Filename;
        Assert.Equal(first.Sha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(await http.GetByteArrayAsync(url))));
        await hoard.SettledAsync(); // the client has its last byte a moment before the blob is committed

        // A private index replaces the file; its page now names another sha256 for the same file name.
        var second = index.AddWheel("rebuilt", "1.0", extraBytes: 2000);
        index.WriteHtml();
        // nginx's validators are mtime and size, and both pages have the same size: move the mtime on.
        File.SetLastWriteTimeUtc(Path.Combine(index.Root, "simple", "rebuilt", "index.html"), DateTime.UtcNow.AddMinutes(1));
        Assert.Equal(first.Filename, second.Filename);
        Assert.NotEqual(first.Sha256, second.Sha256);
        await http.GetStringAsync(hoard.BaseUrl + "/simple/rebuilt/");
        using var again = await http.GetAsync(url);
        Assert.Equal("MISS", again.Headers.GetValues("X-Hoard-Cache").Single());
        Assert.Equal(second.Sha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(await again.Content.ReadAsByteArrayAsync())));
        // nginx writes its log line after the last byte is sent, which may be a moment after the client has it.
        await FetchEngineTests.WaitUntil(() => nginx.Count("/packages/" + first.Filename) >= 2, TimeSpan.FromSeconds(5));
        Assert.Equal(2, nginx.Count("/packages/" + first.Filename));
    }

    [Fact]
    public async Task Metadata_files_are_served_verified_and_cached()
    {
        var (temp, index, nginx) = await UpstreamAsync(json: false);
        using var _ = temp;
        await using var __ = nginx;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();
        var url = hoard.BaseUrl + "/simple/demo-pkg/demo_pkg-1.0-py3-none-any.whl.metadata";
        Assert.Contains("Name: demo-pkg", await http.GetStringAsync(url), StringComparison.Ordinal);
        using var again = await http.GetAsync(url);
        Assert.Equal("HIT", again.Headers.GetValues("X-Hoard-Cache").Single());
        Assert.Equal(1, nginx.Count(".whl.metadata"));
        Assert.Equal(404, (int)(await http.GetAsync(hoard.BaseUrl + "/simple/demo-pkg/nothere-1.0-py3-none-any.whl")).StatusCode);
    }

    [Fact]
    public async Task Files_have_etag_range_head_and_no_content_encoding()
    {
        var (temp, index, nginx) = await UpstreamAsync(json: false);
        using var _ = temp;
        await using var __ = nginx;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient(new HttpClientHandler { AutomaticDecompression = DecompressionMethods.None });
        var url = hoard.BaseUrl + "/simple/demo-pkg/demo_pkg-1.0-py3-none-any.whl";
        var full = await http.GetByteArrayAsync(url);
        var wheel = File.ReadAllBytes(Path.Combine(index.PackagesDir, "demo_pkg-1.0-py3-none-any.whl"));
        Assert.Equal(wheel, full);

        using var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, url));
        Assert.Equal(wheel.Length, head.Content.Headers.ContentLength);
        Assert.Contains("bytes", head.Headers.AcceptRanges);
        Assert.Empty(head.Content.Headers.ContentEncoding);
        var etag = head.Headers.ETag!;

        var ranged = new HttpRequestMessage(HttpMethod.Get, url);
        ranged.Headers.Range = new RangeHeaderValue(null, 22);
        using var tail = await http.SendAsync(ranged);
        Assert.Equal(206, (int)tail.StatusCode);
        Assert.Equal(wheel[^22..], await tail.Content.ReadAsByteArrayAsync());

        var conditional = new HttpRequestMessage(HttpMethod.Get, url);
        conditional.Headers.IfNoneMatch.Add(etag);
        Assert.Equal(304, (int)(await http.SendAsync(conditional)).StatusCode);
    }

    [Fact]
    public async Task Index_pages_get_etags_and_304s_and_pips_max_age_0_does_not_reach_upstream()
    {
        var (temp, _, nginx) = await UpstreamAsync(json: false);
        using var __ = temp;
        await using var ___ = nginx;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();
        var url = hoard.BaseUrl + "/simple/demo-pkg/";
        using var first = await http.SendAsync(Get(url, PipAccept));
        var etag = first.Headers.ETag!;
        for (var i = 0; i < 3; i++)
        {
            var again = Get(url, PipAccept);
            again.Headers.CacheControl = new CacheControlHeaderValue { MaxAge = TimeSpan.Zero };
            again.Headers.IfNoneMatch.Add(etag);
            using var r = await http.SendAsync(again);
            Assert.Equal(304, (int)r.StatusCode);
            Assert.Equal(etag, r.Headers.ETag);
        }
        Assert.Equal(1, nginx.Count("/simple/demo-pkg/"));
    }

    [Fact]
    public async Task After_the_ttl_pages_are_revalidated_upstream_with_if_none_match()
    {
        var (temp, index, nginx) = await UpstreamAsync(json: false);
        using var __ = temp;
        await using var ___ = nginx;
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.IndexTtl = TimeSpan.FromMilliseconds(300);
            o.AdminToken = "test-admin-token-0123456789";
        }, time);
        using var http = new HttpClient();
        var url = hoard.BaseUrl + "/simple/demo-pkg/";
        await http.GetStringAsync(url);
        time.Advance(TimeSpan.FromMilliseconds(400));
        using var revalidated = await http.GetAsync(url);
        Assert.Equal("REVALIDATED", revalidated.Headers.GetValues("X-Hoard-Cache").Single());
        Assert.Equal(1, nginx.Count("/simple/demo-pkg/", status: 304));

        // A new upload shows up after the next revalidation.
        index.AddWheel("demo-pkg", "2.0");
        index.WriteHtml();
        time.Advance(TimeSpan.FromMilliseconds(400));
        Assert.Contains("demo_pkg-2.0-py3-none-any.whl", await http.GetStringAsync(url), StringComparison.Ordinal);

        // Purge: the next request goes upstream unconditionally.
        using var purge = new HttpRequestMessage(HttpMethod.Delete, url) { Headers = { Authorization = new("Bearer", hoard.Options.AdminToken) } };
        Assert.Equal(200, (int)(await http.SendAsync(purge)).StatusCode);
        using var afterPurge = await http.GetAsync(url);
        Assert.Equal("MISS", afterPurge.Headers.GetValues("X-Hoard-Cache").Single());
    }

    [Fact]
    public async Task Names_are_normalized_with_redirects_and_bad_input_gets_4xx_without_reaching_upstream()
    {
        var (temp, _, nginx) = await UpstreamAsync(json: false);
        using var __ = temp;
        await using var ___ = nginx;
        var data = temp.Sub("data");
        await using var hoard = await HoardHost.StartAsync(data, o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/packages/");
        });
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false });
        using (var r = await http.GetAsync(hoard.BaseUrl + "/simple/Demo_Pkg/"))
        {
            Assert.Equal(301, (int)r.StatusCode);
            Assert.Equal("/simple/demo-pkg/", r.Headers.Location!.OriginalString);
        }
        Assert.Equal(301, (int)(await http.GetAsync(hoard.BaseUrl + "/simple/demo-pkg")).StatusCode);

        var before = nginx.Lines.Length;
        var outsideBefore = Directory.GetFileSystemEntries(temp.Path, "*", SearchOption.AllDirectories).Where(p => !p.StartsWith(data, StringComparison.Ordinal)).ToHashSet();
        string[] bad =
        [
            "/simple/..%2f..%2fetc/", "/simple/demo-pkg/..%2f..%2fpasswd", "/simple/demo-pkg/%2e%2e", "/simple/demo-pkg/../../../etc/passwd", "/files/up/../../x", "/simple/" + new string('a', 300) + "/",
            "/simple/demo-pkg/x%5c..%5cy.whl", "/pypi/nosuchindex/simple/demo-pkg/", "/files/nosuch/x.bin",
            "/files/up/a/%2e%2e/%2e%2e/secret", "/files/up/a//b", "/files/up/a%5c..%5cb", "/files/up/", "/simple/-bad-/",
        ];
        foreach (var path in bad)
        {
            var (status, body) = await RawHttp.GetAsync(hoard.BaseUrl, path);
            Assert.True(status is >= 400 and < 500, $"{path} -> {status}");
            Assert.False(string.IsNullOrWhiteSpace(body), $"{path}: no message");
        }
        // Kestrel itself refuses a NUL in the path, before any Hoard code runs.
        Assert.Equal(400, (await RawHttp.GetAsync(hoard.BaseUrl, "/simple/bad%00name/")).Status);
        Assert.Equal(before, nginx.Lines.Length);
        var outsideAfter = Directory.GetFileSystemEntries(temp.Path, "*", SearchOption.AllDirectories).Where(p => !p.StartsWith(data, StringComparison.Ordinal)).ToHashSet();
        Assert.Equal(outsideBefore, outsideAfter);
        using var notAcceptable = await http.SendAsync(Get(hoard.BaseUrl + "/simple/demo-pkg/", "image/png"));
        Assert.Equal(406, (int)notAcceptable.StatusCode);
    }

    [Fact]
    public async Task Metrics_and_health_are_served()
    {
        var (temp, _, nginx) = await UpstreamAsync(json: false);
        using var __ = temp;
        await using var ___ = nginx;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();
        await http.GetStringAsync(hoard.BaseUrl + "/simple/demo-pkg/");
        await http.GetStringAsync(hoard.BaseUrl + "/simple/demo-pkg/");
        Assert.Equal("ok", (await http.GetStringAsync(hoard.BaseUrl + "/healthz")).Trim());
        var metrics = await http.GetStringAsync(hoard.BaseUrl + "/metrics");
        Assert.Contains("hoard_requests_total{protocol=\"pypi\",outcome=\"miss\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("hoard_requests_total{protocol=\"pypi\",outcome=\"hit\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("hoard_upstream_latency_seconds_count", metrics, StringComparison.Ordinal);
        Assert.Contains("hoard_store_bytes", metrics, StringComparison.Ordinal);
        // One page stored: one blob, one key (the store's figures come from the engine's Stats).
        Assert.Contains("hoard_store_blobs 1\n", metrics, StringComparison.Ordinal);
        Predicate<string> hitLine = l => l.Contains(" access: GET /simple/demo-pkg/ 200 hit ", StringComparison.Ordinal);
        Assert.Contains(await hoard.AccessLogAsync(hitLine), hitLine);
        var dashboard = await http.GetStringAsync(hoard.BaseUrl + "/");
        Assert.Contains("pip install -i", dashboard, StringComparison.Ordinal);
        Assert.Contains("<th>blobs / keys</th><td>1 / 1</td>", dashboard, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_root_project_list_is_served_with_and_without_the_trailing_slash_for_every_index()
    {
        var (temp, _, nginx) = await UpstreamAsync(json: false);
        using var _temp = temp;
        await using var _nginx = nginx;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, "main=" + nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();
        foreach (var root in new[] { "/simple", "/pypi/main/simple" })
        {
            // Without the slash: one redirect to it. With it: the list (HTML, and JSON on request).
            using var response = await http.GetAsync(hoard.BaseUrl + root);
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal(root + "/", response.RequestMessage!.RequestUri!.AbsolutePath);
            Assert.Contains("demo-pkg", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            var json = await (await http.SendAsync(Get(hoard.BaseUrl + root + "/", "application/vnd.pypi.simple.v1+json"))).Content.ReadAsStringAsync();
            Assert.Contains("\"name\":\"demo-pkg\"", json, StringComparison.Ordinal);
        }
    }
}
