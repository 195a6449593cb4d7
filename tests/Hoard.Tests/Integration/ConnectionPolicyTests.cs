using Hoard.Core.Configuration;
using Hoard.Core.Storage;
using Hoard.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Hoard.Tests.Integration;

/// <summary>
/// Where Hoard may connect: an upstream's redirects, absolute links and token realms reach configured upstreams and
/// public addresses, never loopback or private ones unless --allow-upstream-host names them; credentials stay with
/// the host they were configured for.
/// </summary>
public sealed class ConnectionPolicyTests
{
    /// <summary>--allow-upstream-host HOST[:PORT], parsed as the command line parses it.</summary>
    internal static void AllowHost(HoardOptions o, string hostAndPort)
    {
        Assert.Null(AllowedUpstreamHost.TryParse(hostAndPort, out var allowed));
        o.AllowUpstreamHosts.Add(allowed!);
    }

    [Fact]
    public async Task A_redirect_to_a_loopback_port_is_refused_with_a_502_unless_that_host_and_port_are_allowed()
    {
        using var temp = new TempDir();
        using var internalService = new RecordingListener();
        var (redirector, redirectorUrl) = await TestWebApp.StartAsync(app => app.MapGet("/{**path}", (string path) => Results.Redirect(path switch
        {
            "by-name" => $"http://localhost:{internalService.Port}/admin",
            "v6" => $"http://[::1]:{internalService.Port}/admin",
            "mapped" => $"http://[::ffff:127.0.0.1]:{internalService.Port}/admin",
            _ => $"http://127.0.0.1:{internalService.Port}/admin",
        })));
        await using var redirectorApp = redirector;
        using var http = new HttpClient();

        await using (var hoard = await HoardHost.StartAsync(temp.Sub("refused"), o => PipTests.SetFiles(o, "up=" + redirectorUrl + "/")))
        {
            using var refused = await http.GetAsync(hoard.BaseUrl + "/files/up/tool.tar.gz");
            Assert.Equal(502, (int)refused.StatusCode);
            var reason = await refused.Content.ReadAsStringAsync();
            Assert.Contains($"does not connect to 127.0.0.1 port {internalService.Port}: a loopback address", reason, StringComparison.Ordinal);
            Assert.Equal(0, internalService.Connections);
            Assert.Equal(1, hoard.Metrics.Get("hoard_upstream_errors_total{protocol=\"files\",upstream=\"up\",reason=\"forbidden_host\"}"));
            Assert.True(hoard.Logs.Contains("refused a connection"));
            // Other spellings of loopback: a name that resolves to it, IPv6, IPv4-mapped IPv6.
            foreach (var (path, shown) in new[] { ("by-name", "localhost ("), ("v6", "::1 port"), ("mapped", "127.0.0.1 port") })
            {
                using var other = await http.GetAsync(hoard.BaseUrl + "/files/up/" + path);
                Assert.Equal(502, (int)other.StatusCode);
                Assert.Contains("does not connect to " + shown, await other.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
            Assert.Equal(0, internalService.Connections);
            Assert.False(hoard.Service<CacheIndex>().TryGetEntry("files/up/tool.tar.gz", out _));
        }

        await using (var hoard = await HoardHost.StartAsync(temp.Sub("allowed"), o =>
        {
            PipTests.SetFiles(o, "up=" + redirectorUrl + "/");
            AllowHost(o, $"127.0.0.1:{internalService.Port}");
        }))
        {
            Assert.Equal(RecordingListener.Body, await http.GetStringAsync(hoard.BaseUrl + "/files/up/tool.tar.gz"));
            Assert.Equal(1, internalService.Connections);
        }
    }

    [Fact]
    public async Task An_absolute_index_link_to_a_loopback_port_that_is_no_upstream_is_refused_and_nothing_is_stored()
    {
        using var temp = new TempDir();
        var root = temp.Sub("upstream");
        await using var files = new Nginx(root);
        await files.StartAsync();
        File.WriteAllText(Path.Combine(root, "tool-1.0.tar.gz"), "a file on a port nobody configured");
        var project = Directory.CreateDirectory(Path.Combine(root, "simple", "tool")).FullName;
        // No hash: nothing but the link itself decides where the file comes from.
        File.WriteAllText(Path.Combine(project, "index.html"), $"<html><body><a href=\"{files.BaseUrl}/tool-1.0.tar.gz\">tool-1.0.tar.gz</a></body></html>");
        await using var pages = new Nginx(root);
        await pages.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, "up=" + pages.BaseUrl + "/simple/"));

        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/simple/tool/tool-1.0.tar.gz");
        Assert.Equal(502, (int)response.StatusCode);
        Assert.Contains("loopback address that is not a configured upstream", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(0, files.Count("/tool-1.0.tar.gz"));
        Assert.Equal(1, pages.Count("/simple/tool/"));
        await hoard.SettledAsync();
        Assert.False(hoard.Service<CacheIndex>().TryGetEntry("pypi/up/files/tool/tool-1.0.tar.gz", out _));
        Assert.Empty(Directory.GetFiles(hoard.Service<ContentStore>().TempDir));
    }

    [Fact]
    public async Task Credentials_for_an_upstream_are_not_sent_to_the_host_its_redirect_leads_to()
    {
        using var temp = new TempDir();
        var seenByTarget = new List<string>();
        var (target, targetUrl) = await TestWebApp.StartAsync(app => app.MapGet("/{**path}", (HttpContext ctx) =>
        {
            lock (seenByTarget)
            {
                seenByTarget.Add("Authorization: " + ctx.Request.Headers.Authorization);
            }
            return "the file";
        }));
        await using var targetApp = target;
        var targetPort = new Uri(targetUrl).Port;
        string? seenByUpstream = null;
        var (upstream, upstreamUrl) = await TestWebApp.StartAsync(app => app.MapGet("/{**path}", (HttpContext ctx) =>
        {
            seenByUpstream = ctx.Request.Headers.Authorization;
            return Results.Redirect($"http://localhost:{targetPort}/cdn/file.bin");
        }));
        await using var upstreamApp = upstream;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "up=" + upstreamUrl.Replace("http://", "http://robot:s3cret@", StringComparison.Ordinal) + "/");
            AllowHost(o, $"localhost:{targetPort}");
        });

        using var http = new HttpClient();
        Assert.Equal("the file", await http.GetStringAsync(hoard.BaseUrl + "/files/up/file.bin"));
        Assert.Equal("Basic " + Convert.ToBase64String("robot:s3cret"u8.ToArray()), seenByUpstream);
        Assert.Equal(["Authorization: "], seenByTarget);
    }

    [Fact]
    public async Task A_registrys_credentials_are_not_sent_to_a_plain_http_token_realm_on_another_host()
    {
        using var temp = new TempDir();
        var tokenRequests = new List<string>();
        var (tokens, tokensUrl) = await TestWebApp.StartAsync(app => app.MapGet("/token", (HttpContext ctx) =>
        {
            lock (tokenRequests)
            {
                tokenRequests.Add("Authorization: " + ctx.Request.Headers.Authorization);
            }
            return Results.Json(new { token = "t" });
        }));
        await using var tokensApp = tokens;
        var tokenPort = new Uri(tokensUrl).Port;
        var (registry, registryUrl) = await TestWebApp.StartAsync(app => app.MapMethods("/v2/{**path}", ["GET", "HEAD"], (HttpContext ctx) =>
        {
            ctx.Response.Headers.WWWAuthenticate = $"Bearer realm=\"http://localhost:{tokenPort}/token\",service=\"registry\"";
            return Results.StatusCode(401);
        }));
        await using var registryApp = registry;
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            o.Registries.Add(new UpstreamSpec("registry.test", new Uri(registryUrl.Replace("http://", "http://alice:s3cret@", StringComparison.Ordinal) + "/")));
            AllowHost(o, $"localhost:{tokenPort}");
        });

        using var http = new HttpClient();
        using var response = await http.GetAsync(hoard.BaseUrl + "/v2/registry.test/team/app/manifests/v1");
        Assert.Equal(401, (int)response.StatusCode);
        Assert.Empty(tokenRequests);
        Assert.True(hoard.Logs.Contains("not sending credentials to the plain-http token realm"));
    }
}
