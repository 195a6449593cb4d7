using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>A repository Hoard cannot mirror costs upstream one attempt per back-off, not one per request.</summary>
public sealed class GitMirrorFailureTests
{
    [Fact]
    public async Task A_repository_whose_mirror_fetch_failed_is_not_fetched_again_on_the_next_request()
    {
        using var temp = new TempDir();
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("broken.git");
        // A partial copy: its refs are advertised, but their objects are gone, so no clone of it can succeed.
        foreach (var pack in Directory.EnumerateFiles(Path.Combine(up.Root, "broken.git", "objects"), "*", SearchOption.AllDirectories))
        {
            File.Delete(pack);
        }
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        var env = new Dictionary<string, string> { ["GIT_TERMINAL_PROMPT"] = "0" };
        for (var i = 0; i < 3; i++)
        {
            var (code, _) = await Pip.RunAsync("git", ["clone", "-q", $"{hoard.BaseUrl}/git/up/broken.git", Path.Combine(temp.Path, "clone" + i)], env);
            Assert.NotEqual(0, code);
        }
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_mirror_fetches_total{upstream=\"up\",result=\"error\"}"));
        Assert.True(hoard.Logs.Contains("not trying again"));
        // The fetch that could not be mirrored is an error, not the miss it started as.
        // (The other POSTs are ls-refs: discovery, which upstream answered.)
        var posts = hoard.AccessLogLines.Where(l => l.Contains(" access: POST /git/up/broken.git/git-upload-pack ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, posts.Count(l => l.Contains("git-upload-pack 502 error ", StringComparison.Ordinal)));
        Assert.Equal(3, posts.Count(l => l.Contains("git-upload-pack 200 discovery ", StringComparison.Ordinal)));
        Assert.Equal(0, hoard.Metrics.GetRequests("git", Hoard.Core.Metrics.CacheOutcome.Miss));
    }
}
