using Hoard.Core.Configuration;
using Hoard.Core.Metrics;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>What the access log and hoard_requests_total call a request: an upstream that failed, git discovery.</summary>
public sealed class OutcomeTests
{
    [Fact]
    public async Task A_tag_asked_of_a_registry_that_is_down_is_an_error_in_the_access_log_and_every_metric()
    {
        using var temp = new TempDir();
        // Nothing listens there: every connection is refused.
        var down = Ports.Free();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
            o.Registries.Add(new UpstreamSpec("down.test", new Uri($"http://127.0.0.1:{down}/"))));
        using var http = new HttpClient();
        using var response = await http.GetAsync($"{hoard.BaseUrl}/v2/down.test/team/app/manifests/v1");
        Assert.Equal(502, (int)response.StatusCode);

        await FetchEngineTests.WaitUntil(() => hoard.Metrics.GetRequests("oci", CacheOutcome.Error) == 1, TimeSpan.FromSeconds(5));
        Assert.Equal(0, hoard.Metrics.GetRequests("oci", CacheOutcome.None));
        Assert.Equal(1, hoard.Metrics.Get("hoard_oci_requests_total{registry=\"down.test\",outcome=\"error\"}"));
        Assert.Contains("hoard_requests_total{protocol=\"oci\",outcome=\"error\"} 1", hoard.Metrics.Render(), StringComparison.Ordinal);
        Predicate<string> errorLine = l => l.Contains(" access: GET /v2/down.test/team/app/manifests/v1 502 error ", StringComparison.Ordinal);
        Assert.Contains(await hoard.AccessLogAsync(errorLine), errorLine);
    }

    [Fact]
    public async Task Git_discovery_is_counted_as_discovery_and_the_fetch_as_a_miss_then_a_hit()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("tool.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        var url = $"{hoard.BaseUrl}/git/up/tool.git";
        // Protocol v2: info/refs, then ls-refs and fetch, both POSTs to git-upload-pack.
        await GitUpstream.Git(temp.Path, "-c", "protocol.version=2", "clone", "-q", url, Path.Combine(temp.Path, "first"));
        await GitUpstream.Git(temp.Path, "-c", "protocol.version=2", "clone", "-q", url, Path.Combine(temp.Path, "second"));

        // Two clones of three requests each, logged a moment after each response.
        Predicate<string> repository = l => l.Contains("/git/up/tool.git/", StringComparison.Ordinal);
        var lines = Array.FindAll(await hoard.AccessLogAsync(repository, count: 6), repository);
        Assert.Equal(2, lines.Count(l => l.Contains(" access: GET /git/up/tool.git/info/refs 200 discovery ", StringComparison.Ordinal)));
        // Each clone: one ls-refs (discovery) and one fetch (the first a miss that mirrored, the second a hit).
        Assert.Equal(2, lines.Count(l => l.Contains(" access: POST /git/up/tool.git/git-upload-pack 200 discovery ", StringComparison.Ordinal)));
        Assert.Equal(1, lines.Count(l => l.Contains(" access: POST /git/up/tool.git/git-upload-pack 200 miss ", StringComparison.Ordinal)));
        Assert.Equal(1, lines.Count(l => l.Contains(" access: POST /git/up/tool.git/git-upload-pack 200 hit ", StringComparison.Ordinal)));
        Assert.DoesNotContain(lines, l => l.Contains(" bypass ", StringComparison.Ordinal));
        Assert.Equal(4, hoard.Metrics.GetRequests("git", CacheOutcome.Discovery));
        Assert.Equal(0, hoard.Metrics.GetRequests("git", CacheOutcome.Bypass));
        Assert.Contains("hoard_requests_total{protocol=\"git\",outcome=\"discovery\"} 4", hoard.Metrics.Render(), StringComparison.Ordinal);
    }
}
