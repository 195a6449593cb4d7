using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>The real git through Hoard against git http-backend behind nginx.</summary>
public sealed class GitTests
{
    private static void SetGit(HoardOptions o, GitUpstream up, string? userInfo = null)
    {
        o.Git.Add(new UpstreamSpec("up", new Uri($"http://{(userInfo is null ? "" : userInfo + "@")}127.0.0.1:{up.Port}/")));
    }

    private static Task<string> Git(string dir, params string[] args) => GitUpstream.Git(dir, args);

    [Theory]
    [InlineData("version=2")]
    [InlineData("version=0")]
    public async Task Clone_fetch_and_push_through_hoard_see_upstream_at_once(string protocol)
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("project.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, up));
        var url = $"{hoard.BaseUrl}/git/up/project.git";

        var clone = Path.Combine(temp.Path, "clone");
        await Git(temp.Path, "-c", $"protocol.version={protocol[^1]}", "clone", "-q", url, clone);
        Assert.Equal((await Git(work, "rev-parse", "HEAD")).Trim(), (await Git(clone, "rev-parse", "HEAD")).Trim());
        Assert.Contains("v1.0", await Git(clone, "tag"), StringComparison.Ordinal);

        // A new upstream commit is visible to the next fetch at once: discovery always asks upstream.
        var newHead = await up.CommitUpstreamAsync(work, "project.git");
        await Git(clone, "-c", $"protocol.version={protocol[^1]}", "fetch", "-q", "origin");
        Assert.Equal(newHead, (await Git(clone, "rev-parse", "origin/main")).Trim());

        // Push through Hoard lands upstream.
        await Git(clone, "checkout", "-q", "-B", "main", "origin/main");
        File.WriteAllText(Path.Combine(clone, "pushed.txt"), "from the client");
        await Git(clone, "add", ".");
        await Git(clone, "-c", "user.email=t@example.com", "-c", "user.name=test", "commit", "-q", "-m", "pushed through hoard");
        await Git(clone, "push", "-q", "origin", "main");
        Assert.Equal((await Git(clone, "rev-parse", "HEAD")).Trim(), (await Git(Path.Combine(up.Root, "project.git"), "rev-parse", "main")).Trim());
    }

    [Fact]
    public async Task Shallow_and_partial_clones_work_and_ten_concurrent_clones_cost_upstream_one_mirror_fetch()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("busy.git", commits: 5, bigFileBytes: 2_000_000);
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, up));
        var url = $"{hoard.BaseUrl}/git/up/busy.git";

        var clones = Enumerable.Range(0, 10).Select(i => Git(temp.Path, "clone", "-q", url, Path.Combine(temp.Path, "c" + i))).ToArray();
        await Task.WhenAll(clones);
        var head = (await Git(work, "rev-parse", "HEAD")).Trim();
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(head, (await Git(Path.Combine(temp.Path, "c" + i), "rev-parse", "HEAD")).Trim());
        }
        // Upstream computed one pack (the mirror's clone, with the 2 MB file); the other upload-pack POSTs are the
        // clients' v2 ls-refs, which always go upstream so refs are never stale, and answer in a few hundred bytes.
        var posts = up.Nginx.Lines.Select(l => l.Split(' ')).Where(p => p[0] == "POST" && p[1].EndsWith("/busy.git/git-upload-pack", StringComparison.Ordinal)).ToList();
        Assert.Single(posts, p => long.Parse(p[3], System.Globalization.CultureInfo.InvariantCulture) > 100_000);
        Assert.All(posts.Where(p => long.Parse(p[3], System.Globalization.CultureInfo.InvariantCulture) <= 100_000), p => Assert.True(long.Parse(p[3], System.Globalization.CultureInfo.InvariantCulture) < 10_000));

        // The ten identical clone fetches ran upload-pack once; the rest joined it or read its stored result.
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"pack_cache\",result=\"miss\"}"));
        Assert.Equal(9, hoard.Metrics.Get("hoard_git_requests_total{kind=\"pack_cache\",result=\"hit\"}") + hoard.Metrics.Get("hoard_git_requests_total{kind=\"pack_cache\",result=\"coalesced\"}"));
        // Time spent fetching mirrors, in seconds (base units), a decimal number.
        var fetchSeconds = hoard.Metrics.Render().Split('\n').Single(l => l.StartsWith("hoard_git_mirror_fetch_seconds_total{", StringComparison.Ordinal));
        var seconds = double.Parse(fetchSeconds[(fetchSeconds.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(seconds, 0.001, 60);
        // Stored without anyone's progress messages (sideband 2).
        var index = hoard.Service<Hoard.Core.Storage.CacheIndex>();
        // (The clone bundle made after the fetch is stored too; it is not a pack response.)
        var packs = index.Blobs.Select(b => File.ReadAllBytes(hoard.Service<Hoard.Core.Storage.ContentStore>().BlobPath(b.Digest)))
            .Where(b => !b.AsSpan().StartsWith("# v2 git bundle\n"u8)).ToList();
        Assert.NotEmpty(packs);
        Assert.All(packs, p => Assert.DoesNotContain(PktPayloads(p), payload => payload.Length > 0 && payload[0] == 2));

        var shallow = Path.Combine(temp.Path, "shallow");
        await Git(temp.Path, "clone", "-q", "--depth", "1", url, shallow);
        Assert.Equal("1", (await Git(shallow, "rev-list", "--count", "HEAD")).Trim());
        var partial = Path.Combine(temp.Path, "partial");
        await Git(temp.Path, "clone", "-q", "--filter=blob:none", url, partial);
        Assert.Equal(head, (await Git(partial, "rev-parse", "HEAD")).Trim());
    }

    [Fact]
    public async Task With_upstream_down_a_mirrored_repository_still_clones_from_its_last_known_refs()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("offline.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            SetGit(o, up);
            o.ConnectTimeout = TimeSpan.FromSeconds(2);
        });
        var url = $"{hoard.BaseUrl}/git/up/offline.git";
        var (c0, o0) = await Pip.RunAsync("git", ["clone", "-q", url, Path.Combine(temp.Path, "first")]);
        Assert.True(c0 == 0, o0 + string.Join("\n", hoard.Logs.Lines.Where(l => !l.Contains("Debug", StringComparison.Ordinal))));
        await up.StopNginxAsync();
        foreach (var v in new[] { "2", "0" })
        {
            var again = Path.Combine(temp.Path, "again" + v);
            var (code, output) = await Pip.RunAsync("git", ["-c", "protocol.version=" + v, "clone", "-q", url, again]);
            Assert.True(code == 0, output + string.Join("\n", hoard.Logs.Lines.Where(l => !l.Contains("Debug", StringComparison.Ordinal))));
            Assert.Equal((await Git(work, "rev-parse", "HEAD")).Trim(), (await Git(again, "rev-parse", "HEAD")).Trim());
        }
        Assert.True(hoard.Metrics.Get("hoard_stale_served_total{protocol=\"git\"}") >= 2);
    }

    [Fact]
    public async Task A_private_repository_needs_credentials_upstream_accepts_and_they_never_reach_process_arguments()
    {
        await using var up = new GitUpstream("bob", "hunter2");
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("private.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, up));
        var port = new Uri(hoard.BaseUrl).Port;
        await Git(temp.Path, "clone", "-q", $"http://bob:hunter2@127.0.0.1:{port}/git/up/private.git", Path.Combine(temp.Path, "ok"));
        Assert.Equal((await Git(work, "rev-parse", "HEAD")).Trim(), (await Git(Path.Combine(temp.Path, "ok"), "rev-parse", "HEAD")).Trim());

        // Cached now, but an anonymous client and a wrong password are still refused.
        var (code, _) = await Pip.RunAsync("git", ["clone", "-q", $"{hoard.BaseUrl}/git/up/private.git", Path.Combine(temp.Path, "anon")], new Dictionary<string, string> { ["GIT_TERMINAL_PROMPT"] = "0" });
        Assert.NotEqual(0, code);
        (code, _) = await Pip.RunAsync("git", ["clone", "-q", $"http://bob:wrong@127.0.0.1:{port}/git/up/private.git", Path.Combine(temp.Path, "wrong")], new Dictionary<string, string> { ["GIT_TERMINAL_PROMPT"] = "0" });
        Assert.NotEqual(0, code);
        Assert.DoesNotContain(hoard.Logs.Lines, l => l.Contains("hunter2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Config_git_insteadof_makes_an_unchanged_git_command_go_through_hoard()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        var work = await up.CreateRepositoryAsync("tool.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, up));
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "git", "--url", hoard.BaseUrl, "--git", $"up={up.BaseUrl}/"]);
        Assert.True(code == 0, output);
        var line = output.Trim().Split('\n')[0];
        Assert.Contains("git config --global transfer.bundleURI true\n", output, StringComparison.Ordinal);
        Assert.Contains($"git clone --bundle-uri={hoard.BaseUrl}/git/up/OWNER/REPO.git/-/bundle {hoard.BaseUrl}/git/up/OWNER/REPO.git", output, StringComparison.Ordinal);
        Assert.StartsWith($"git config --global url.{hoard.BaseUrl}/git/up/.insteadOf {up.BaseUrl}/", line, StringComparison.Ordinal);
        // Apply it to a private git config and clone by the upstream's own URL.
        var home = temp.Sub("home");
        var env = new Dictionary<string, string> { ["HOME"] = home, ["GIT_CONFIG_NOSYSTEM"] = "1", ["GIT_TERMINAL_PROMPT"] = "0" };
        var parts = line.Split(' ');
        Assert.Equal(0, (await Pip.RunAsync("git", parts[1..], env)).Code);
        (code, output) = await Pip.RunAsync("git", ["clone", "-q", $"{up.BaseUrl}/tool.git", Path.Combine(temp.Path, "viaInsteadOf")], env);
        Assert.True(code == 0, output);
        Assert.True(hoard.Metrics.Get("hoard_git_requests_total{kind=\"upload_pack\",result=\"fetched\"}") >= 1);
        Assert.Equal((await Git(work, "rev-parse", "HEAD")).Trim(), (await Git(Path.Combine(temp.Path, "viaInsteadOf"), "rev-parse", "HEAD")).Trim());
    }

    private static List<byte[]> PktPayloads(byte[] data)
    {
        var payloads = new List<byte[]>();
        var i = 0;
        while (i + 4 <= data.Length)
        {
            var length = int.Parse(System.Text.Encoding.ASCII.GetString(data, i, 4), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
            if (length < 4)
            {
                i += 4;
                continue;
            }
            payloads.Add(data[(i + 4)..(i + length)]);
            i += length;
        }
        Assert.Equal(data.Length, i);
        return payloads;
    }

    [Fact]
    public async Task A_client_allowed_one_repository_cannot_get_another_repositorys_cached_objects()
    {
        await using var up = new GitUpstream("bob", "hunter2", privatePrefix: "/secret");
        await up.StartAsync();
        await up.CreateRepositoryAsync("public.git");
        var secretWork = await up.CreateRepositoryAsync("secret.git");
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, up));
        var port = new Uri(hoard.BaseUrl).Port;
        var env = new Dictionary<string, string> { ["GIT_TERMINAL_PROMPT"] = "0" };
        await Git(temp.Path, "clone", "-q", $"http://bob:hunter2@127.0.0.1:{port}/git/up/secret.git", Path.Combine(temp.Path, "bob"));
        var secretHead = (await Git(secretWork, "rev-parse", "HEAD")).Trim();

        var mine = Path.Combine(temp.Path, "anon");
        await Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/public.git", mine);
        // The secret commit is cached in Hoard, but asking for it by id through the public repository fails,
        // and so does the secret repository itself without credentials.
        var (code, _) = await Pip.RunAsync("git", ["-C", mine, "fetch", "-q", "origin", secretHead], env);
        Assert.NotEqual(0, code);
        Assert.NotEqual(0, (await Pip.RunAsync("git", ["-C", mine, "cat-file", "-e", secretHead], env)).Code);
        (code, _) = await Pip.RunAsync("git", ["clone", "-q", $"{hoard.BaseUrl}/git/up/secret.git", Path.Combine(temp.Path, "anon-secret")], env);
        Assert.NotEqual(0, code);
    }

    [Fact]
    public async Task Git_lfs_objects_come_through_hoard_verified_and_cached_for_the_next_clone_and_the_other_cluster_nodes()
    {
        using var temp = new TempDir();
        await using var lfsServer = new LfsServer(temp.Path);
        await lfsServer.StartAsync();
        await using var up = new GitUpstream(lfsPort: lfsServer.Port);
        await up.StartAsync();
        // The real git-lfs, with its filters installed in a private HOME.
        var home = temp.Sub("home");
        var env = new Dictionary<string, string> { ["HOME"] = home, ["GIT_CONFIG_NOSYSTEM"] = "1", ["GIT_TERMINAL_PROMPT"] = "0" };
        async Task<string> G(string dir, params string[] args)
        {
            var (code, output) = await Pip.RunAsync("git", ["-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=test", .. args], env);
            Assert.True(code == 0, $"git {string.Join(' ', args)}: {output}");
            return output;
        }
        await G(home, "lfs", "install");
        await G(up.Root, "init", "-q", "--bare", "-b", "main", "lfs.git");
        await G(Path.Combine(up.Root, "lfs.git"), "config", "http.receivepack", "true");
        var work = temp.Sub("work");
        await G(work, "init", "-q", "-b", "main");
        await G(work, "lfs", "track", "*.bin");
        var data = new byte[3_000_000];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(Path.Combine(work, "model.bin"), data);
        await G(work, "add", ".");
        await G(work, "commit", "-q", "-m", "lfs file");
        await G(work, "push", "-q", $"{up.BaseUrl}/lfs.git", "main");

        // Two nodes of one cluster: the second gets the LFS object from the first, not from the LFS server.
        await using var redis = new RedisServer();
        await redis.StartAsync();
        void Clustered(HoardOptions o, int port)
        {
            SetGit(o, up);
            // The LFS server (where download hrefs point) is on another loopback port, no configured upstream.
            ConnectionPolicyTests.AllowHost(o, $"127.0.0.1:{lfsServer.Port}");
            o.Listen = [o.Advertise = $"http://127.0.0.1:{port}"];
            o.ClusterRedis = redis.Url;
            o.ClusterSecret = "git-cluster-test-secret-0123";
        }
        var (portA, portB) = (Ports.Free(), Ports.Free());
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => Clustered(o, portA));
        await using var other = await HoardHost.StartAsync(temp.Sub("other"), o => Clustered(o, portB));
        for (var i = 0; i < 2; i++)
        {
            var clone = Path.Combine(temp.Path, "clone" + i);
            await G(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/lfs.git", clone);
            Assert.Equal(data, File.ReadAllBytes(Path.Combine(clone, "model.bin")));
        }
        var oid = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
        await FetchEngineTests.WaitUntil(() => redis.CliAsync("ZCARD", "hoard:holders:" + oid).Result == "1", TimeSpan.FromSeconds(10));
        var third = Path.Combine(temp.Path, "clone2");
        await G(temp.Path, "clone", "-q", $"{other.BaseUrl}/git/up/lfs.git", third);
        Assert.Equal(data, File.ReadAllBytes(Path.Combine(third, "model.bin")));

        // Three clones through two nodes, one download from the LFS server; the object sits in the store under its oid.
        Assert.Equal(1, lfsServer.Downloads);
        Assert.True(other.Metrics.Get("hoard_peer_bytes_total") >= data.Length);
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"lfs_object\",result=\"miss\"}"));
        Assert.Equal(1, hoard.Metrics.Get("hoard_git_requests_total{kind=\"lfs_object\",result=\"hit\"}"));
        Assert.True(hoard.Service<Hoard.Core.Storage.CacheIndex>().TryGetBlob(oid, out _));
        // A made-up token gets nothing.
        var (status, _) = await RawHttp.GetAsync(hoard.BaseUrl, $"/git/up/-/lfs/{oid}?t=forged");
        Assert.Equal(401, status);
    }

    [Fact]
    public async Task Unknown_upstreams_and_bad_repository_paths_get_4xx_without_outbound_requests()
    {
        await using var up = new GitUpstream();
        await up.StartAsync();
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => SetGit(o, up));
        foreach (var path in new[] { "/git/nope/r.git/info/refs?service=git-upload-pack", "/git/up/.hidden/info/refs?service=git-upload-pack", "/git/up/r.git/HEAD", "/git/up/r.git/info/refs?service=git-shell" })
        {
            var (status, body) = await RawHttp.GetAsync(hoard.BaseUrl, path);
            Assert.True(status is >= 400 and < 500, $"{path} -> {status}");
            Assert.False(string.IsNullOrWhiteSpace(body));
        }
        Assert.Empty(up.Nginx.Lines);
    }
}
