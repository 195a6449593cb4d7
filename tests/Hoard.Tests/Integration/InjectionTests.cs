using System.Text.Json;
using System.Text.Json.Nodes;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>What an upstream or a client writes cannot become markup in Hoard's pages or a line of its own in the access log.</summary>
public sealed class InjectionTests
{
    [Fact]
    public async Task Hostile_hashes_attributes_and_link_schemes_from_html_and_json_upstreams_never_become_markup()
    {
        using var temp = new TempDir();
        var root = temp.Sub("upstream");
        var html = Directory.CreateDirectory(Path.Combine(root, "simple", "evil-html")).FullName;
        File.WriteAllText(Path.Combine(html, "index.html"), """
            <html><body>
            <a href="x-1.0.tar.gz#&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;=abc" autofocus onfocus="alert(1)">x-1.0.tar.gz</a>
            <a href="x-2.0.tar.gz#sha256=ab12" data-requires-python="&gt;=3&quot; onmouseover=&quot;alert(1)" style="color:red" data-yanked="">x-2.0.tar.gz</a>
            <a href="javascript:alert(1)">x-3.0.tar.gz</a>
            <a href="data:text/html,&lt;b&gt;hi">x-4.0.tar.gz</a>
            <a href="file:///etc/passwd">x-5.0.tar.gz</a>
            </body></html>
            """);
        var json = Directory.CreateDirectory(Path.Combine(root, "simple", "evil-json")).FullName;
        File.WriteAllText(Path.Combine(json, "index.json"), """
            {"meta": {"api-version": "1.1"}, "name": "evil-json", "files": [
              {"filename": "x-1.0.tar.gz", "url": "x-1.0.tar.gz", "hashes": {"\"><script>": "x", "sha256": "\"><script>alert(1)</script>"},
               "core-metadata": {"\"><img src=x onerror=alert(1)>": "ab"}},
              {"filename": "x-2.0.tar.gz", "url": "x-2.0.tar.gz", "hashes": {"sha256": 42}, "core-metadata": {"sha256": 7}},
              {"filename": "x-3.0.tar.gz", "url": "javascript:alert(1)", "hashes": {}}
            ]}
            """);
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();

        foreach (var project in new[] { "evil-html", "evil-json" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"{hoard.BaseUrl}/simple/{project}/");
            request.Headers.TryAddWithoutValidation("Accept", "text/html");
            using var response = await http.SendAsync(request);
            Assert.Equal(200, (int)response.StatusCode);
            var page = await response.Content.ReadAsStringAsync();
            foreach (var forbidden in new[] { "<script", "<img", "onfocus", "autofocus", "style=", "onerror", "javascript:", "data:", "file:", "\" onmouseover" })
            {
                Assert.DoesNotContain(forbidden, page, StringComparison.OrdinalIgnoreCase);
            }
            Assert.Contains("<a href=\"x-1.0.tar.gz\">x-1.0.tar.gz</a>", page, StringComparison.Ordinal);
            Assert.Contains("<a href=\"x-2.0.tar.gz", page, StringComparison.Ordinal);
            Assert.DoesNotContain("x-3.0.tar.gz", page, StringComparison.Ordinal);

            // The JSON rendering of the same page parses, and keeps only hashes that are hashes.
            var asJson = JsonNode.Parse(await http.GetStringAsync($"{hoard.BaseUrl}/simple/{project}/?format=application/vnd.pypi.simple.v1%2Bjson"))!;
            var files = asJson["files"]!.AsArray();
            Assert.Equal(2, files.Count);
            Assert.Empty(files[0]!["hashes"]!.AsObject());
        }
        using var htmlPage = new HttpRequestMessage(HttpMethod.Get, $"{hoard.BaseUrl}/simple/evil-html/");
        htmlPage.Headers.TryAddWithoutValidation("Accept", "text/html");
        var rendered = await (await http.SendAsync(htmlPage)).Content.ReadAsStringAsync();
        // Known attributes stay, their values encoded; the hash that is one stays too.
        Assert.Contains("<a href=\"x-2.0.tar.gz#sha256=ab12\" data-requires-python=\"&gt;=3&quot; onmouseover=&quot;alert(1)\" data-yanked=\"\">", rendered, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("text")]
    [InlineData("json")]
    public async Task A_path_with_encoded_line_breaks_leaves_exactly_one_access_log_line(string format)
    {
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.LogFormat = format);
        var (status, _) = await RawHttp.GetAsync(hoard.BaseUrl, "/nothing/first%0aforged%200%20GET%20/admin%0d%0asecond%0d");
        Assert.Equal(404, status);

        string[] lines = [];
        await FetchEngineTests.WaitUntil(() =>
        {
            using var s = new FileStream(hoard.Options.AccessLog, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            lines = new StreamReader(s).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            return lines.Any(l => l.Contains("second", StringComparison.Ordinal));
        }, TimeSpan.FromSeconds(10));
        var line = Assert.Single(lines, l => l.Contains("first", StringComparison.Ordinal) || l.Contains("forged", StringComparison.Ordinal) || l.Contains("second", StringComparison.Ordinal));
        Assert.DoesNotContain('\r', line);
        if (format == "text")
        {
            Assert.Contains(" access: GET /nothing/first\\x0aforged 0 GET /admin\\x0d\\x0asecond\\x0d 404 ", line, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal("/nothing/first\nforged 0 GET /admin\r\nsecond\r", JsonDocument.Parse(line).RootElement.GetProperty("path").GetString());
        }
    }
}
