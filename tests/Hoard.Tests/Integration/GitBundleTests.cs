using System.Net.Http.Headers;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Clone bundles: git clone --bundle-uri through Hoard, and the protocol v2 bundle-uri advertisement.</summary>
public sealed class GitBundleTests
{
    private static Task<string> Git(string dir, params string[] args) => GitUpstream.Git(dir, args);

    [Fact]
    public async Task Clone_with_bundle_uri_takes_the_bundle_from_hoard_then_fetches_the_rest_and_equals_a_direct_clone()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("bundled.git", commits: 3, bigFileBytes: 1_000_000);
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        var url = $"{hoard.BaseUrl}/git/up/bundled.git";
        using var http = new HttpClient();

        // Not advertised before the repository was cloned twice.
        Assert.DoesNotContain("bundle-uri", await AdvertisementAsync(http, url), StringComparison.Ordinal);
        for (var i = 0; i < 2; i++)
        {
            await Git(temp.Path, "clone", "-q", url, Path.Combine(temp.Path, "plain" + i));
        }
        Assert.Contains("bundle-uri", await AdvertisementAsync(http, url), StringComparison.Ordinal);
        using var list = new HttpRequestMessage(HttpMethod.Post, url + "/git-upload-pack")
        {
            Content = new StringContent("0017command=bundle-uri\n00010000", Encoding.ASCII),
        };
        list.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-git-upload-pack-request");
        list.Headers.Add("Git-Protocol", "version=2");
        var listed = await (await http.SendAsync(list)).Content.ReadAsStringAsync();
        Assert.Contains($"bundle.heads.uri={url}/-/bundle\n", listed, StringComparison.Ordinal);
        Assert.Contains("bundle.version=1\n", listed, StringComparison.Ordinal);

        // The bundle is made now, from the mirror's heads and tags; upstream then moves on.
        var bundle = await http.GetByteArrayAsync(url + "/-/bundle");
        Assert.StartsWith("# v2 git bundle\n", Encoding.ASCII.GetString(bundle, 0, 16), StringComparison.Ordinal);
        var newHead = await up.CommitUpstreamAsync(work, "bundled.git");
        var before = up.Nginx.Count("/git-upload-pack", "POST");

        var viaBundle = Path.Combine(temp.Path, "via-bundle");
        await Git(temp.Path, "clone", "-q", $"--bundle-uri={url}/-/bundle", url, viaBundle);
        var direct = Path.Combine(temp.Path, "direct");
        await Git(temp.Path, "clone", "-q", $"{up.BaseUrl}/bundled.git", direct);
        Assert.Equal(newHead, (await Git(viaBundle, "rev-parse", "HEAD")).Trim());
        // (git keeps the bundle's own refs under refs/bundles/; the rest must be the same.)
        Assert.Equal(await Git(direct, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/remotes", "refs/tags"), await Git(viaBundle, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/remotes", "refs/tags"));
        Assert.Equal("", (await Git(viaBundle, "status", "--porcelain")).Trim());
        await Git(viaBundle, "fsck", "--no-progress");
        // The bundle came from Hoard's store (made once, served twice); the clone fetched only the new commit.
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"bundle\",result=\"miss\"}"));
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"bundle\",result=\"hit\"}"));
        Assert.True(up.Nginx.Count("/git-upload-pack", "POST") - before >= 1);
    }

    [Fact]
    public async Task After_a_fetch_moves_a_repository_cloned_twice_its_bundle_is_made_before_anyone_asks()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("warm.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        var url = $"{hoard.BaseUrl}/git/up/warm.git";
        for (var i = 0; i < 2; i++)
        {
            await Git(temp.Path, "clone", "-q", url, Path.Combine(temp.Path, "c" + i));
        }
        var head = await up.CommitUpstreamAsync(work, "warm.git");
        await Git(Path.Combine(temp.Path, "c0"), "pull", "-q", "--ff-only");
        await FetchEngineTests.WaitUntil(() => hoard.Logs.Contains("Stored git/bundle/"), TimeSpan.FromSeconds(10));
        using var http = new HttpClient();
        var bundle = Encoding.ASCII.GetString(await http.GetByteArrayAsync(url + "/-/bundle"));
        Assert.Contains($"{head} refs/heads/main\n", bundle[..Math.Min(bundle.Length, 2000)], StringComparison.Ordinal);
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"bundle\",result=\"hit\"}"));
        Assert.Equal(0, hoard.Metrics.Get("hoard_git_requests_total{kind=\"bundle\",result=\"miss\"}"));
    }

    private static async Task<string> AdvertisementAsync(HttpClient http, string url)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url + "/info/refs?service=git-upload-pack");
        request.Headers.Add("Git-Protocol", "version=2");
        using var response = await http.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        return await response.Content.ReadAsStringAsync();
    }
}
