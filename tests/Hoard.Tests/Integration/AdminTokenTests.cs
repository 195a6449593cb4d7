using System.Net.Http.Headers;
using Hoard.Core.Hosting;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Admin endpoints (purge) need the --admin-token-file token; without one configured they are off.</summary>
public sealed class AdminTokenTests
{
    private const string Token = "a-long-enough-admin-token-42";

    [Fact]
    public async Task Purge_without_a_configured_token_is_403_and_the_page_stays_cached()
    {
        using var temp = new TempDir();
        await using var nginx = await UpstreamAsync(temp);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetPypi(o, "up=" + nginx.BaseUrl + "/simple/"));
        using var http = new HttpClient();
        var url = hoard.BaseUrl + "/pypi/up/simple/admin-demo/";
        await CachedAsync(http, url);

        using var refused = await http.SendAsync(Purge(url, Token));
        Assert.Equal(403, (int)refused.StatusCode);
        Assert.Contains(AdminAuth.DisabledMessage, await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal("HIT", await OutcomeAsync(http, url));
        Assert.Equal(1, nginx.Count("/simple/admin-demo/"));
    }

    [Fact]
    public async Task Purge_with_a_missing_or_wrong_token_is_401_and_with_the_token_it_purges()
    {
        using var temp = new TempDir();
        await using var nginx = await UpstreamAsync(temp);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.AdminToken = Token;
        });
        using var http = new HttpClient();
        var url = hoard.BaseUrl + "/simple/admin-demo/";
        await CachedAsync(http, url);

        foreach (var wrong in new[] { null, "not-the-token", Token + "x", Token[..^1] })
        {
            using var refused = await http.SendAsync(Purge(url, wrong));
            Assert.Equal(401, (int)refused.StatusCode);
            Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
            Assert.Equal("HIT", await OutcomeAsync(http, url));
        }
        Assert.True(hoard.Logs.Contains("refused: wrong token"));

        using var purged = await http.SendAsync(Purge(url, Token));
        Assert.Equal(200, (int)purged.StatusCode);
        Assert.Equal("MISS", await OutcomeAsync(http, url));
        Assert.Equal(2, nginx.Count("/simple/admin-demo/"));
    }

    private static async Task<Nginx> UpstreamAsync(TempDir temp)
    {
        var index = new PackageIndex(temp.Sub("upstream"));
        index.AddWheel("admin-demo", "1.0");
        index.WriteHtml();
        var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        return nginx;
    }

    private static async Task CachedAsync(HttpClient http, string url)
    {
        Assert.Equal("MISS", await OutcomeAsync(http, url));
        Assert.Equal("HIT", await OutcomeAsync(http, url));
    }

    private static async Task<string> OutcomeAsync(HttpClient http, string url)
    {
        using var response = await http.GetAsync(url);
        Assert.Equal(200, (int)response.StatusCode);
        return response.Headers.GetValues("X-Hoard-Cache").Single();
    }

    private static HttpRequestMessage Purge(string url, string? token)
    {
        var request = new HttpRequestMessage(HttpMethod.Delete, url);
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        return request;
    }
}
