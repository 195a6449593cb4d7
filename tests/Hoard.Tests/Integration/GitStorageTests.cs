using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Git mirrors live inside --max-size: evicted whole, least recently used, with blobs; made again on demand.</summary>
public sealed class GitStorageTests
{
    private static long DirectoryBytes(string dir) =>
        new DirectoryInfo(dir).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);

    [Fact]
    public async Task Three_mirrors_of_25_MB_under_a_60_MB_limit_keep_the_data_dir_under_it_and_an_evicted_one_is_mirrored_again()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        for (var i = 0; i < 3; i++)
        {
            await up.CreateRepositoryAsync($"r{i}.git", commits: 1, bigFileBytes: 25_000_000);
        }
        using var temp = new TempDir();
        var data = temp.Sub("data");
        const long limit = 60_000_000;
        await using var hoard = await HoardHost.StartAsync(data, o =>
        {
            o.Git.Add(new UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/")));
            o.MaxSizeBytes = limit;
        });
        for (var i = 0; i < 3; i++)
        {
            var clone = Path.Combine(temp.Path, $"c{i}");
            await GitUpstream.Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/r{i}.git", clone);
            Assert.Equal(25_000_000, new FileInfo(Path.Combine(clone, "big.bin")).Length);
            Directory.Delete(clone, recursive: true);
            // Evicted mirrors are renamed at once and deleted just after.
            await FetchEngineTests.WaitUntil(() => DirectoryBytes(data) <= limit, TimeSpan.FromSeconds(10));
        }
        Assert.Contains("hoard_git_mirrors 1\n", hoard.Metrics.Render(), StringComparison.Ordinal);
        Assert.True(hoard.Service<Hoard.Core.Git.GitMirror>().Space.Bytes > 20_000_000);
        Assert.True(hoard.Logs.Contains("Evicted git mirror up/r0.git"), "the least recently used mirror was not evicted");
        Assert.False(Directory.Exists(Path.Combine(data, "git", "up", "r0.git")));

        // The evicted repository clones again: its mirror is made again.
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/r0.git", Path.Combine(temp.Path, "again"));
        Assert.Equal((await GitUpstream.Git(Path.Combine(up.Root, "r0.git"), "rev-parse", "main")).Trim(), (await GitUpstream.Git(Path.Combine(temp.Path, "again"), "rev-parse", "HEAD")).Trim());
        Assert.True(Directory.Exists(Path.Combine(data, "git", "up", "r0.git")));
        Assert.Equal(4, hoard.Metrics.Get("hoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"up\",result=\"ok\"}"));
        await FetchEngineTests.WaitUntil(() => DirectoryBytes(data) <= limit, TimeSpan.FromSeconds(10));
    }
}
