using System.Net.Http.Headers;
using System.Security.Cryptography;
using Hoard.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Hoard.Tests.Integration;

/// <summary>What clients choose (credentials, names) must not decide how much memory Hoard uses.</summary>
[Collection(SerialCollection.Name)]
public sealed class AbuseTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_hundred_thousand_requests_with_distinct_made_up_credentials_grow_memory_by_less_than_50_MB()
    {
        using var temp = new TempDir();
        // A registry that refuses everyone, at once (nginx, so the upstream is never the bottleneck).
        await using var registry = new Nginx(temp.Sub("registry"), "location /v2/ { add_header WWW-Authenticate 'Basic realm=\"test\"' always; return 401; }");
        await registry.StartAsync();
        var port = Ports.Free();
        await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data"), "--access-log", "off", "--log-level", "warning",
            "--registry", $"private.test=http://127.0.0.1:{registry.Port}"]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 32 });
        var digest = "sha256:" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        var url = $"http://127.0.0.1:{port}/v2/private.test/team/app/blobs/{digest}";
        var refused = 0;

        async Task SendAsync(int count)
        {
            var next = 0;
            await Task.WhenAll(Enumerable.Range(0, 32).Select(async _ =>
            {
                while (Interlocked.Increment(ref next) <= count)
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, url);
                    var credentials = Convert.ToBase64String(RandomNumberGenerator.GetBytes(24));
                    request.Headers.Authorization = new AuthenticationHeaderValue("Basic", credentials);
                    using var response = await http.SendAsync(request);
                    if ((int)response.StatusCode == 401)
                    {
                        Interlocked.Increment(ref refused);
                    }
                }
            }));
        }

        await SendAsync(5_000); // warm: JIT, pools, the first cache entries
        var before = hoard.Memory();
        await SendAsync(100_000);
        var after = hoard.Memory();
        output.WriteLine($"RSS {before.Rss / 1048576} MB -> {after.Rss / 1048576} MB (peak {after.Peak / 1048576} MB); {refused} refused");
        Assert.Equal(105_000, refused);
        Assert.True(after.Rss - before.Rss < 50L * 1024 * 1024, $"RSS grew from {before.Rss / 1048576} MB to {after.Rss / 1048576} MB");
    }

    [Fact]
    public async Task A_client_over_its_upstream_fetch_allowance_gets_429_while_hits_are_still_served()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        for (var i = 0; i < 5; i++)
        {
            File.WriteAllBytes(Path.Combine(root, $"f{i}.bin"), RandomNumberGenerator.GetBytes(1000));
        }
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
            o.MaxUpstreamFetchesPerClient = 3;
        });
        using var http = new HttpClient();
        var statuses = new List<int>();
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.GetAsync($"{hoard.BaseUrl}/files/up/f{i}.bin");
            statuses.Add((int)response.StatusCode);
        }
        Assert.Equal([200, 200, 200, 429, 429], statuses);
        Assert.Equal(3, nginx.Lines.Length);
        await hoard.SettledAsync();
        using var hit = await http.GetAsync($"{hoard.BaseUrl}/files/up/f0.bin");
        Assert.Equal(200, (int)hit.StatusCode);
        Assert.Equal("HIT", hit.Headers.GetValues("X-Hoard-Cache").Single());
    }

    [Fact]
    public async Task Requests_wanting_a_made_up_object_fetch_the_mirror_once_and_distinct_ones_at_most_every_two_seconds()
    {
        using var temp = new TempDir();
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("repo.git");
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new Hoard.Core.Configuration.UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/repo.git", Path.Combine(temp.Path, "clone"));
        double Fetches() => hoard.Metrics.Get("hoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"up\",result=\"ok\"}");
        using var http = new HttpClient();

        async Task WantAsync(string want)
        {
            var body = System.Text.Encoding.ASCII.GetBytes($"0012command=fetch\n00010032want {want}\n0009done\n0000");
            using var request = new HttpRequestMessage(HttpMethod.Post, $"{hoard.BaseUrl}/git/up/repo.git/git-upload-pack") { Content = new ByteArrayContent(body) };
            request.Headers.TryAddWithoutValidation("Git-Protocol", "version=2");
            request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/x-git-upload-pack-request");
            try
            {
                using var response = await http.SendAsync(request);
                await response.Content.ReadAsByteArrayAsync();
            }
            catch (HttpRequestException)
            {
                // upload-pack refuses an object it does not have, and Hoard aborts the response: expected.
            }
        }

        // The same made-up object, five times: one fetch finds it is not upstream, the others are answered at once.
        var before = Fetches();
        var made = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        for (var i = 0; i < 5; i++)
        {
            await WantAsync(made);
        }
        Assert.Equal(1, Fetches() - before);

        // Distinct made-up objects: each may need a fetch, but a repository is fetched at most once every 2 s.
        before = Fetches();
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 3; i++)
        {
            await WantAsync(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20)));
        }
        var fetches = Fetches() - before;
        output.WriteLine($"{fetches} mirror fetches for 3 distinct made-up wants in {started.Elapsed.TotalSeconds:0.0} s");
        Assert.True(fetches <= 1 + Math.Floor(started.Elapsed.TotalSeconds / 2), $"{fetches} fetches in {started.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task Forty_anonymous_gzip_bombs_to_a_private_repository_are_refused_before_they_are_read()
    {
        using var temp = new TempDir();
        await using var up = new GitUpstream("bob", "hunter2");
        await up.StartAsync();
        await up.CreateRepositoryAsync("private.git");
        var port = Ports.Free();
        await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data"), "--access-log", "off",
            "--git", $"up=http://127.0.0.1:{up.Port}/"]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        // 64 KB on the wire, 64 MB once gunzipped.
        byte[] bomb;
        using (var packed = new MemoryStream())
        {
            using (var gzip = new System.IO.Compression.GZipStream(packed, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
            {
                gzip.Write(new byte[64 * 1024 * 1024]);
            }
            bomb = packed.ToArray();
        }
        var before = hoard.Memory();
        using var http = new HttpClient();
        var statuses = await Task.WhenAll(Enumerable.Range(0, 40).Select(async _ =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{port}/git/up/private.git/git-upload-pack") { Content = new ByteArrayContent(bomb) };
            request.Content.Headers.TryAddWithoutValidation("Content-Encoding", "gzip");
            request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/x-git-upload-pack-request");
            try
            {
                using var response = await http.SendAsync(request);
                return (int)response.StatusCode;
            }
            catch (HttpRequestException)
            {
                return 0; // refused before the body was read: the server may close while the client still sends
            }
        }));
        var after = hoard.Memory();
        output.WriteLine($"{bomb.Length / 1024} KB bombs, statuses {string.Join(",", statuses.Distinct())}; RSS {before.Rss / 1048576} MB -> peak {after.Peak / 1048576} MB");
        Assert.All(statuses, s => Assert.True(s is 401 or 0, $"status {s}"));
        Assert.Contains(401, statuses);
        Assert.True(after.Peak < 400L * 1024 * 1024, $"peak RSS {after.Peak / 1048576} MB");
    }

    [Fact]
    public async Task A_flood_of_requests_for_a_missing_name_reaches_upstream_once()
    {
        using var temp = new TempDir();
        await using var nginx = new Nginx(temp.Sub("up"));
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));
        using var http = new HttpClient();
        for (var round = 0; round < 3; round++)
        {
            var statuses = await Task.WhenAll(Enumerable.Range(0, 10).Select(async _ => (int)(await http.GetAsync(hoard.BaseUrl + "/files/up/no-such-release.tar.gz")).StatusCode));
            Assert.All(statuses, s => Assert.Equal(404, s));
        }
        Assert.Equal(1, nginx.Count("/no-such-release.tar.gz", status: 404));
    }
}
