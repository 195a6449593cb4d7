using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Http;
using Hoard.Core.PyPI;
using Microsoft.Extensions.Primitives;

namespace Hoard.Tests.Unit;

public sealed class ParsingTests
{
    [Theory]
    [InlineData("50GB", 50_000_000_000)]
    [InlineData("512MiB", 536_870_912)]
    [InlineData("1.5T", 1_500_000_000_000)]
    [InlineData("1048576", 1_048_576)]
    public void Sizes(string text, long expected)
    {
        Assert.True(ValueParsers.TryParseSize(text, out var bytes));
        Assert.Equal(expected, bytes);
    }

    [Theory]
    [InlineData("300", 300)]
    [InlineData("5m", 300)]
    [InlineData("1h30m", 5400)]
    [InlineData("250ms", 0.25)]
    public void Durations(string text, double seconds)
    {
        Assert.True(ValueParsers.TryParseDuration(text, out var d));
        Assert.Equal(seconds, d.TotalSeconds);
    }

    [Theory]
    [InlineData("lots")]
    [InlineData("-1")]
    [InlineData("5x")]
    public void Bad_sizes_and_durations_are_refused(string text)
    {
        Assert.False(ValueParsers.TryParseSize(text, out _));
        Assert.False(ValueParsers.TryParseDuration(text, out _));
    }

    [Theory]
    [InlineData("Django", "django")]
    [InlineData("zope.interface", "zope-interface")]
    [InlineData("Foo__Bar-._baz", "foo-bar-baz")]
    public void Pep503_normalization(string name, string normalized) => Assert.Equal(normalized, PypiNames.Normalize(name));

    [Theory]
    [InlineData("..", false)]
    [InlineData("-x", false)]
    [InlineData("a/b", false)]
    [InlineData("requests", true)]
    public void Project_names(string name, bool valid) => Assert.Equal(valid, PypiNames.IsValidProject(name));

    [Theory]
    [InlineData("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01", SimpleFormat.Json)]
    [InlineData("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01", SimpleFormat.Json)]
    [InlineData("text/html,application/xhtml+xml,*/*;q=0.8", SimpleFormat.Html)]
    [InlineData("", SimpleFormat.Html)]
    public void Accept_negotiation(string accept, SimpleFormat expected) =>
        Assert.Equal(expected, SimpleNegotiation.Choose(new StringValues(accept), null)!.Value.Format);

    [Fact]
    public void Nothing_acceptable_is_null_and_format_parameter_wins()
    {
        Assert.Null(SimpleNegotiation.Choose(new StringValues("image/png"), null));
        Assert.Equal(SimpleFormat.Json, SimpleNegotiation.Choose(new StringValues("text/html"), "application/vnd.pypi.simple.v1+json")!.Value.Format);
    }

    [Theory]
    [InlineData("bytes=0-9", 100, RangeKind.Satisfiable, 0, 10)]
    [InlineData("bytes=90-", 100, RangeKind.Satisfiable, 90, 100)]
    [InlineData("bytes=-22", 100, RangeKind.Satisfiable, 78, 100)]
    [InlineData("bytes=100-", 100, RangeKind.Unsatisfiable, 100, 100)]
    [InlineData("bytes=0-1,5-6", 100, RangeKind.None, 0, 100)]
    [InlineData("items=0-1", 100, RangeKind.None, 0, 100)]
    public void Byte_ranges(string header, long length, RangeKind kind, long start, long end)
    {
        Assert.Equal(kind, ByteRange.Parse(header, length, out var s, out var e));
        if (kind == RangeKind.Satisfiable)
        {
            Assert.Equal((start, end), (s, e));
        }
    }

    [Fact]
    public void Html_pages_keep_their_attributes_and_links_become_relative_to_hoard()
    {
        const string html = """
            <html><head><base href="https://files.example/root/"></head><body>
            <a href="pkgs/x-1.0.tar.gz#sha256=ABCDEF" data-requires-python="&gt;=3.8" data-yanked="">x-1.0.tar.gz</a>
            <a href="https://cdn.example/p/x-1.1-py3-none-any.whl#sha256=0123" data-yanked="broken build" data-dist-info-metadata="sha256=feed" data-core-metadata="sha256=feed">x-1.1-py3-none-any.whl</a>
            </body></html>
            """;
        var page = SimpleParser.ParseProject("x", Encoding.UTF8.GetBytes(html), "text/html", new Uri("https://index.example/simple/x/"));
        Assert.Equal(new Uri("https://files.example/root/pkgs/x-1.0.tar.gz"), page.Files[0].Url);
        Assert.Equal("abcdef", page.Files[0].Sha256);
        Assert.Equal(new Uri("https://cdn.example/p/x-1.1-py3-none-any.whl"), page.Files[1].Url);
        Assert.Equal((true, "feed"), page.Files[1].Metadata);

        var json = Encoding.UTF8.GetString(SimpleRenderer.RenderProject(page, SimpleFormat.Json));
        Assert.Contains("\"url\":\"x-1.0.tar.gz\"", json, StringComparison.Ordinal);
        Assert.Contains("\"requires-python\":\">=3.8\"", json, StringComparison.Ordinal);
        Assert.Contains("\"yanked\":true", json, StringComparison.Ordinal);
        Assert.Contains("\"yanked\":\"broken build\"", json, StringComparison.Ordinal);
        Assert.Contains("\"core-metadata\":{\"sha256\":\"feed\"}", json, StringComparison.Ordinal);

        var back = Encoding.UTF8.GetString(SimpleRenderer.RenderProject(page, SimpleFormat.Html));
        Assert.Contains("href=\"x-1.0.tar.gz#sha256=ABCDEF\" data-requires-python=\"&gt;=3.8\" data-yanked=\"\"", back, StringComparison.Ordinal);
        Assert.Contains("data-yanked=\"broken build\" data-dist-info-metadata=\"sha256=feed\" data-core-metadata=\"sha256=feed\"", back, StringComparison.Ordinal);
        Assert.DoesNotContain("example", back, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_pages_pass_unknown_fields_through_and_only_urls_change()
    {
        const string json = """{"meta":{"api-version":"1.4"},"name":"y","versions":["1"],"project-status":{"status":"active"},"files":[{"filename":"y-1.whl","url":"/packages/aa/y-1.whl","hashes":{"sha256":"00"},"size":7,"upload-time":"2025-01-01T00:00:00Z","provenance":null}]}""";
        var page = SimpleParser.ParseProject("y", Encoding.UTF8.GetBytes(json), "application/vnd.pypi.simple.v1+json", new Uri("https://pypi.example/simple/y/"));
        Assert.Equal(new Uri("https://pypi.example/packages/aa/y-1.whl"), page.Files[0].Url);
        Assert.Equal(7, page.Files[0].Size);
        var output = Encoding.UTF8.GetString(SimpleRenderer.RenderProject(page, SimpleFormat.Json));
        Assert.Equal(json.Replace("/packages/aa/y-1.whl", "y-1.whl", StringComparison.Ordinal), output);
    }

    [Fact]
    public void Settings_layers_override_file_then_environment_then_flags()
    {
        var file = Path.GetTempFileName();
        File.WriteAllText(file, """{ "max-size": "1GB", "listen": "http://127.0.0.1:9000", "pypi": ["a=http://a.example/simple/"], "index-ttl": "1m" }""");
        var env = new Dictionary<string, string?> { ["HOARD_MAX_SIZE"] = "2GB", ["HOARD_PYPI"] = "b=http://b.example/simple/,c=http://c.example/simple/" };
        var flags = new Dictionary<string, IReadOnlyList<string>> { ["max-size"] = ["3GB"] };
        var (options, errors) = SettingsLoader.Load(file, env, flags);
        File.Delete(file);
        Assert.Empty(errors);
        Assert.Equal(3_000_000_000, options.MaxSizeBytes);
        Assert.Equal(["http://127.0.0.1:9000"], options.Listen);
        Assert.Equal(["b", "c"], options.Pypi.Select(p => p.Name));
        Assert.Equal(TimeSpan.FromMinutes(1), options.IndexTtl);
    }

    [Fact]
    public void The_index_given_without_a_name_is_the_default()
    {
        var flags = new Dictionary<string, IReadOnlyList<string>> { ["pypi"] = ["internal=http://in.example/simple/", "https://pypi.org/simple/"] };
        var (options, errors) = SettingsLoader.Load(null, new Dictionary<string, string?>(), flags);
        Assert.Empty(errors);
        Assert.Equal(["pypi", "internal"], options.Pypi.Select(p => p.Name));
    }

    [Fact]
    public void Defaults_are_pypi_and_a_data_dir_and_unknown_config_keys_are_errors()
    {
        var (options, errors) = SettingsLoader.Load(null, new Dictionary<string, string?>(), new Dictionary<string, IReadOnlyList<string>>());
        Assert.Empty(errors);
        Assert.Equal("https://pypi.org/simple/", options.DefaultPypiIndex.Url.ToString());
        Assert.Equal("pypi", options.DefaultPypiIndex.Name);
        Assert.EndsWith("hoard", options.DataDir, StringComparison.Ordinal);
        var file = Path.GetTempFileName();
        File.WriteAllText(file, """{ "max_size": "1GB" }""");
        var (_, bad) = SettingsLoader.Load(file, new Dictionary<string, string?>(), new Dictionary<string, IReadOnlyList<string>>());
        File.Delete(file);
        Assert.Contains(bad, e => e.Contains("unknown setting 'max_size'", StringComparison.Ordinal));
    }
}
