using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Hoard.Tests.Integration;

/// <summary>
/// Repositories as real upstreams have them: thousands of pull-request refs, objects missing from a partial copy,
/// an upstream that stalls mid-pack. Real git against git http-backend behind nginx.
/// </summary>
public sealed class GitRealWorldTests
{
    private static Task<string> Git(string dir, params string[] args) => GitUpstream.Git(dir, args);

    private static void SetGit(HoardOptions o, string url) => o.Git.Add(new UpstreamSpec("up", new Uri(url)));

    [Fact]
    public async Task A_repository_with_two_thousand_pull_request_refs_clones_mirrors_only_heads_and_tags_and_serves_a_pull_request_on_demand()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        // 2,000 refs/pull/N/head; 21 of them at commits of their own with 100 KB of random data each (2.1 MB that
        // a heads-and-tags mirror must not download).
        var pulls = await up.CreatePullRequestRepositoryAsync("busy.git", pullRequests: 2000, uniqueEvery: 100, uniqueBytes: 100_000);
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, $"http://127.0.0.1:{up.Port}/"));
        var url = $"{hoard.BaseUrl}/git/up/busy.git";

        var clone = Path.Combine(temp.Path, "clone");
        await Git(temp.Path, "clone", "-q", url, clone);
        Assert.Equal((await Git(Path.Combine(up.Root, "busy.git"), "rev-parse", "main")).Trim(), (await Git(clone, "rev-parse", "HEAD")).Trim());
        var mirror = Path.Combine(temp.Path, "data", "git", "up", "busy.git");
        Assert.Equal("", (await Git(mirror, "for-each-ref", "refs/pull")).Trim());
        Assert.Contains("refs/heads/feature", await Git(mirror, "for-each-ref", "refs/heads"), StringComparison.Ordinal);
        Assert.Contains("refs/tags/v1.0", await Git(mirror, "for-each-ref", "refs/tags"), StringComparison.Ordinal);
        Assert.Equal("refs/heads/main", (await Git(mirror, "symbolic-ref", "HEAD")).Trim());
        // Upstream sent the mirror (and the client's discovery) a heads-and-tags pack, not the pull requests' 2.1 MB.
        var bytes = up.UploadPackBytes();
        Assert.True(bytes < 500_000, $"upload-pack sent {bytes} bytes for a clone of heads and tags");

        // A pull request's head, reachable from no branch, fetched by name: Hoard fetches that object into the
        // mirror and serves it from there.
        await Git(clone, "fetch", "-q", "origin", "refs/pull/7/head");
        Assert.Equal(pulls[7], (await Git(clone, "rev-parse", "FETCH_HEAD")).Trim());
        Assert.True(File.Exists(Path.Combine(clone, "pr7.bin")) || (await Git(clone, "cat-file", "-t", pulls[7] + ":pr7.bin")).Trim() == "blob");
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"up\",result=\"on_demand\"}"));
        Assert.Equal(0, hoard.Metrics.Get("hoard_git_requests_total{kind=\"pass_through\",result=\"upstream\"}"));
        Assert.Equal("commit", (await Git(mirror, "cat-file", "-t", pulls[7])).Trim());
        Assert.Equal("", (await Git(mirror, "for-each-ref", "refs/pull")).Trim());

        // An upstream that allows ref-in-want: git asks for the pull request by name (want-ref). The ref is fetched
        // into the mirror for this client, with its credentials, and served from there.
        await Git(Path.Combine(up.Root, "busy.git"), "config", "uploadpack.allowRefInWant", "true");
        await Git(clone, "fetch", "-q", "origin", "refs/pull/100/head");
        Assert.Equal(pulls[100], (await Git(clone, "rev-parse", "FETCH_HEAD")).Trim());
        Assert.Equal(pulls[100], (await Git(mirror, "rev-parse", "refs/pull/100/head")).Trim());
        Assert.Equal(2, hoard.Metrics.Get("hoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"up\",result=\"on_demand\"}"));
        Assert.Equal(0, hoard.Metrics.Get("hoard_git_requests_total{kind=\"pass_through\",result=\"upstream\"}"));

        // The v0 protocol asks for it by object id after the full advertisement: the same.
        var v0 = Path.Combine(temp.Path, "v0");
        await Git(temp.Path, "-c", "protocol.version=0", "clone", "-q", url, v0);
        await Git(v0, "-c", "protocol.version=0", "fetch", "-q", "origin", "refs/pull/200/head");
        Assert.Equal(pulls[200], (await Git(v0, "rev-parse", "FETCH_HEAD")).Trim());
    }

    [Fact]
    public async Task A_repository_the_mirror_cannot_copy_is_cloned_by_pass_through_and_the_mirror_is_not_retried_at_once()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("partial.git");
        var bare = Path.Combine(up.Root, "partial.git");
        await Git(bare, "config", "transfer.unpackLimit", "1000");
        // A pull request whose blob is gone (a partial copy of a repository, as a mirror of GitHub can be): the ref
        // is advertised, but no pack that includes it can be made.
        using var scratch = new TempDir();
        var work = Path.Combine(scratch.Path, "pr");
        await Git(up.Root, "clone", "-q", bare, work);
        File.WriteAllText(Path.Combine(work, "pr.txt"), "pull request " + Guid.NewGuid());
        await Git(work, "add", ".");
        await Git(work, "commit", "-q", "-m", "pull request");
        await Git(bare, "fetch", "-q", work, "HEAD:refs/pull/1/head");
        var blob = (await Git(work, "rev-parse", "HEAD:pr.txt")).Trim();
        File.Delete(Path.Combine(bare, "objects", blob[..2], blob[2..]));

        using var temp2 = new TempDir();
        // Mirroring every ref, as `clone --mirror` did: the mirror cannot be made.
        await using var hoard = await HoardHost.StartAsync(temp2.Sub("data"), o =>
        {
            SetGit(o, $"http://127.0.0.1:{up.Port}/");
            o.GitRefs["up"] = ["refs/*"];
        });
        for (var i = 0; i < 2; i++)
        {
            var clone = Path.Combine(temp2.Path, "clone" + i);
            await Git(temp2.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/partial.git", clone);
            Assert.Equal((await Git(bare, "rev-parse", "main")).Trim(), (await Git(clone, "rev-parse", "HEAD")).Trim());
        }
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"up\",result=\"error\"}"));
        Assert.Equal(2, hoard.Metrics.Get("hoard_git_requests_total{kind=\"pass_through\",result=\"upstream\"}"));
        Assert.True(hoard.Logs.Contains("passing the fetch through to upstream"));
        Assert.True(hoard.Logs.Contains("not trying again"));
    }

    [Fact]
    public async Task A_mirror_fetch_that_stalls_mid_pack_is_killed_after_the_idle_timeout_and_the_client_is_served_by_pass_through()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("stall.git", bigFileBytes: 2_000_000);
        // In front of git http-backend: the first fetch (Hoard's mirror clone) gets half its pack, then silence.
        var fetches = 0;
        using var forward = new HttpClient();
        var (proxy, proxyUrl) = await TestWebApp.StartAsync(app => app.Run(async ctx =>
        {
            using var request = new HttpRequestMessage(new HttpMethod(ctx.Request.Method), $"{up.BaseUrl}{ctx.Request.Path}{ctx.Request.QueryString}");
            var body = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(body);
            if (HttpMethods.IsPost(ctx.Request.Method))
            {
                request.Content = new ByteArrayContent(body.ToArray());
                request.Content.Headers.TryAddWithoutValidation("Content-Type", ctx.Request.ContentType);
            }
            if (ctx.Request.Headers["Git-Protocol"].ToString() is { Length: > 0 } gp)
            {
                request.Headers.TryAddWithoutValidation("Git-Protocol", gp);
            }
            using var response = await forward.SendAsync(request);
            var bytes = await response.Content.ReadAsByteArrayAsync();
            ctx.Response.StatusCode = (int)response.StatusCode;
            ctx.Response.ContentType = response.Content.Headers.ContentType?.ToString();
            var isFetch = System.Text.Encoding.ASCII.GetString(body.ToArray()).Contains("command=fetch", StringComparison.Ordinal);
            if (isFetch && Interlocked.Increment(ref fetches) == 1)
            {
                await ctx.Response.Body.WriteAsync(bytes.AsMemory(0, bytes.Length / 2));
                await ctx.Response.Body.FlushAsync();
                await Task.Delay(Timeout.Infinite, ctx.RequestAborted);
            }
            await ctx.Response.Body.WriteAsync(bytes);
        }));
        await using var _ = proxy;
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            SetGit(o, proxyUrl + "/");
            o.GitFetchIdleTimeout = TimeSpan.FromSeconds(3);
        });
        var clone = Path.Combine(temp.Path, "clone");
        await Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/stall.git", clone);
        Assert.Equal((await Git(Path.Combine(up.Root, "stall.git"), "rev-parse", "main")).Trim(), (await Git(clone, "rev-parse", "HEAD")).Trim());
        Assert.True(fetches >= 2, $"{fetches} fetches reached upstream");
        Assert.True(hoard.Logs.Contains("no progress for 3 s"), "the stalled fetch was not killed by the idle timeout");
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"pass_through\",result=\"upstream\"}"));
        Assert.False(Directory.Exists(Path.Combine(temp.Path, "data", "git", "up", "stall.git")));
        Assert.Empty(Directory.GetDirectories(Path.Combine(temp.Path, "data", "git", "up"), "stall.git.tmp-*"));
    }
}
