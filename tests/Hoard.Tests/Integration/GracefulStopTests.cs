using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using Hoard.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Hoard.Tests.Integration;

/// <summary>SIGTERM: readiness turns 503, no new connections, downloads in flight finish, exit code 0.</summary>
public sealed class GracefulStopTests
{
    [Fact]
    public async Task Sigterm_mid_download_refuses_new_connections_lets_the_client_finish_whole_and_exits_0()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var data = new byte[8 * 1024 * 1024];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(Path.Combine(root, "big.bin"), data);
        await using var nginx = new Nginx(root, "limit_rate 2m;"); // about 4 s for the whole file
        await nginx.StartAsync();
        var port = Ports.Free();
        var accessLog = Path.Combine(temp.Path, "access.log");
        await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data"),
            "--files", $"up={nginx.BaseUrl}/", "--shutdown-timeout", "60s", "--access-log", accessLog]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
        var baseUrl = $"http://127.0.0.1:{port}";
        using (var probe = new HttpClient())
        {
            Assert.Equal("ready", (await probe.GetStringAsync(baseUrl + "/readyz")).Trim());
        }

        using var http = new HttpClient();
        using var response = await http.GetAsync(baseUrl + "/files/up/big.bin", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(data.Length, response.Content.Headers.ContentLength);
        await using var body = await response.Content.ReadAsStreamAsync();
        var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (received.Length < 512 * 1024)
        {
            received.Write(buffer, 0, await body.ReadAsync(buffer));
        }

        await hoard.TerminateAsync();
        // Kestrel unbinds as soon as the stop begins (the test below sees /readyz answer 503 in the moment before).
        var refused = false;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!refused)
        {
            Assert.True(DateTime.UtcNow < deadline, "new connections were still accepted 10 s after SIGTERM");
            try
            {
                using var fresh = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero });
                using var ready = await fresh.GetAsync(baseUrl + "/readyz");
            }
            catch (HttpRequestException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused or SocketError.ConnectionReset })
            {
                // Refused, or reset: a connection the kernel had queued as the listener closed is reset, not served.
                refused = true;
            }
            await Task.Delay(20);
        }
        Assert.True(received.Length < data.Length, "the download was still running when new connections were refused");

        await body.CopyToAsync(received);
        Assert.Equal(data.Length, received.Length);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(received.ToArray()));
        Assert.Equal(0, await hoard.ExitCodeAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("Stopping: /readyz answers 503", hoard.Output, StringComparison.Ordinal);
        Assert.Contains("Stored files/up/big.bin", hoard.Output, StringComparison.Ordinal);
        Assert.Contains(File.ReadAllLines(accessLog), l => l.Contains($"GET /files/up/big.bin 200 miss {data.Length} ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Readyz_answers_503_from_the_moment_stopping_begins_while_healthz_stays_ok()
    {
        using var temp = new TempDir();
        var hoard = await HoardHost.StartAsync(temp.Sub("data"), _ => { });
        using var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero });
        Assert.Equal("ready", (await http.GetStringAsync(hoard.BaseUrl + "/readyz")).Trim());
        (int Ready, int Healthy)? duringStop = null;
        // Runs when stopping begins, before Kestrel stops listening: what a load balancer polling then would see.
        hoard.Service<IHostApplicationLifetime>().ApplicationStopping.Register(() =>
        {
            using var ready = http.Send(new HttpRequestMessage(HttpMethod.Get, hoard.BaseUrl + "/readyz"));
            using var healthy = http.Send(new HttpRequestMessage(HttpMethod.Get, hoard.BaseUrl + "/healthz"));
            duringStop = ((int)ready.StatusCode, (int)healthy.StatusCode);
        });
        await hoard.DisposeAsync();
        Assert.Equal((503, 200), duringStop);
    }

    [Fact]
    public async Task The_access_log_shows_the_bytes_sent_to_a_client_that_left_early_not_the_content_length()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        const int size = 32 * 1024 * 1024;
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(Path.Combine(root, "big.bin"), data);
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));
        using (var http = new HttpClient())
        {
            Assert.Equal(size, (await http.GetByteArrayAsync(hoard.BaseUrl + "/files/up/big.bin")).Length);
        }
        await hoard.SettledAsync();

        // A client that reads 1 MB of the cached file and resets the connection.
        var uri = new Uri(hoard.BaseUrl);
        using (var tcp = new TcpClient())
        {
            await tcp.ConnectAsync(uri.Host, uri.Port);
            var stream = tcp.GetStream();
            await stream.WriteAsync("GET /files/up/big.bin HTTP/1.1\r\nHost: hoard\r\n\r\n"u8.ToArray());
            var buffer = new byte[64 * 1024];
            long read = 0;
            while (read < 1024 * 1024)
            {
                read += await stream.ReadAsync(buffer);
            }
            tcp.Client.LingerState = new LingerOption(true, 0);
        }

        string[] hits = [];
        await FetchEngineTests.WaitUntil(() => (hits = hoard.AccessLogLines.Where(l => l.Contains("GET /files/up/big.bin 200 hit ", StringComparison.Ordinal)).ToArray()).Length == 1, TimeSpan.FromSeconds(20));
        var bytes = long.Parse(hits[0].Split(" 200 hit ")[1].Split(' ')[0], CultureInfo.InvariantCulture);
        Assert.InRange(bytes, 1024 * 1024 - 64 * 1024, size - 1);
        Predicate<string> missLine = l => l.Contains($"GET /files/up/big.bin 200 miss {size} ", StringComparison.Ordinal);
        Assert.Contains(await hoard.AccessLogAsync(missLine), missLine);
    }
}
