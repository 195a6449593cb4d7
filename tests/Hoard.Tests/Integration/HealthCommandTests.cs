using System.Net;
using System.Net.Sockets;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>`hoard health`, the container image's HEALTHCHECK: which URL it asks, and what makes it exit 0 or 1.</summary>
public sealed class HealthCommandTests
{
    [Theory]
    [InlineData(null, "http://127.0.0.1:8080/")]
    [InlineData("", "http://127.0.0.1:8080/")]
    [InlineData("http://0.0.0.0:9000", "http://127.0.0.1:9000/")]
    [InlineData("http://*:9000", "http://127.0.0.1:9000/")]
    [InlineData("http://localhost:81", "http://127.0.0.1:81/")]
    [InlineData("https://0.0.0.0:8443, http://[::]:9000", "http://[::1]:9000/")]
    [InlineData("https://10.1.2.3:8443", "https://10.1.2.3:8443/")]
    [InlineData("http://[fd00::5]:8080", "http://[fd00::5]:8080/")]
    public void The_url_comes_from_the_first_plain_http_listener_with_a_wildcard_asked_on_loopback(string? listen, string expected)
    {
        var (url, error) = HealthCommand.FromListen(listen);
        Assert.Null(error);
        Assert.Equal(expected, url!.ToString());
    }

    [Fact]
    public void A_listen_value_serve_would_refuse_is_an_error()
    {
        var (url, error) = HealthCommand.FromListen("http://hoard.lan:8080");
        Assert.Null(url);
        Assert.Contains("HOARD_LISTEN", error, StringComparison.Ordinal);
        Assert.Null(HealthCommand.Parse("ftp://127.0.0.1/").Url);
    }

    [Fact]
    public async Task Healthy_on_200_and_unhealthy_on_another_status_a_refused_connection_or_no_answer()
    {
        using var temp = new TempDir();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), _ => { });
        var (healthy, message) = await HealthCommand.ProbeAsync(new Uri(hoard.BaseUrl), TimeSpan.FromSeconds(5), checkCertificate: true, CancellationToken.None);
        Assert.True(healthy, message);

        await using var nginx = new Nginx(temp.Sub("empty")); // no /healthz there: 404
        await nginx.StartAsync();
        (healthy, message) = await HealthCommand.ProbeAsync(new Uri(nginx.BaseUrl), TimeSpan.FromSeconds(5), checkCertificate: true, CancellationToken.None);
        Assert.False(healthy);
        Assert.Contains("answered 404", message, StringComparison.Ordinal);

        (healthy, message) = await HealthCommand.ProbeAsync(new Uri($"http://127.0.0.1:{Ports.Free()}"), TimeSpan.FromSeconds(5), checkCertificate: true, CancellationToken.None);
        Assert.False(healthy);
        Assert.Contains("refused", message, StringComparison.OrdinalIgnoreCase);

        using var silent = new TcpListener(IPAddress.Loopback, 0); // accepts, never answers
        silent.Start();
        var port = ((IPEndPoint)silent.LocalEndpoint).Port;
        (healthy, message) = await HealthCommand.ProbeAsync(new Uri($"http://127.0.0.1:{port}"), TimeSpan.FromMilliseconds(300), checkCertificate: true, CancellationToken.None);
        Assert.False(healthy);
        Assert.Contains("no answer within", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_command_exits_0_for_a_live_hoard_found_through_HOARD_LISTEN_and_1_otherwise()
    {
        using var temp = new TempDir();
        var port = Ports.Free();
        await using var hoard = HoardProcess.Start(["serve", "--data", temp.Sub("data")], new Dictionary<string, string> { ["HOARD_LISTEN"] = $"http://127.0.0.1:{port}" });
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));

        // As in the image: the server listens on every address, the probe asks loopback.
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "health"], new Dictionary<string, string> { ["HOARD_LISTEN"] = $"http://0.0.0.0:{port}" });
        Assert.True(code == 0, output);
        Assert.Contains($"http://127.0.0.1:{port}/healthz: ok", output, StringComparison.Ordinal);

        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "health", "--url", $"http://127.0.0.1:{Ports.Free()}", "--timeout", "2s"]);
        Assert.Equal(1, code);
        Assert.StartsWith("hoard: ", output, StringComparison.Ordinal);

        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "health", "--timeout", "soon"]);
        Assert.Equal(1, code); // not 2: Docker reserves it
        Assert.Contains("--timeout 'soon'", output, StringComparison.Ordinal);
    }
}
