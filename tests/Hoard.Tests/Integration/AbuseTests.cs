using System.Net.Http.Headers;
using System.Security.Cryptography;
using Hoard.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Hoard.Tests.Integration;

/// <summary>What clients choose (credentials, names) must not decide how much memory Hoard uses.</summary>
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
    public async Task Requests_wanting_made_up_objects_fetch_the_mirror_at_most_once_every_two_seconds()
    {
        using var temp = new TempDir();
        await using var up = new GitUpstream();
        await up.StartAsync();
        await up.CreateRepositoryAsync("repo.git");
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => o.Git.Add(new Hoard.Core.Configuration.UpstreamSpec("up", new Uri($"http://127.0.0.1:{up.Port}/"))));
        await GitUpstream.Git(temp.Path, "clone", "-q", $"{hoard.BaseUrl}/git/up/repo.git", Path.Combine(temp.Path, "clone"));
        double Fetches() => hoard.Metrics.Get("hoard_git_mirror_fetches_total{upstream=\"up\",result=\"ok\"}");
        var before = Fetches();

        using var http = new HttpClient();
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 3; i++)
        {
            var want = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
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
        var fetches = Fetches() - before;
        output.WriteLine($"{fetches} mirror fetches for 3 made-up wants in {started.Elapsed.TotalSeconds:0.0} s");
        Assert.True(fetches >= 1);
        Assert.True(fetches <= 1 + Math.Floor(started.Elapsed.TotalSeconds / 2), $"{fetches} fetches in {started.Elapsed.TotalSeconds:0.0} s");
    }
}
