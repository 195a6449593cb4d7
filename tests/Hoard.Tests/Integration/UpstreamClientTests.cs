using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>The outbound client's environment: HTTP(S)_PROXY / NO_PROXY (and the connection policy behind a proxy), and an extra CA bundle for TLS upstreams.</summary>
public sealed class UpstreamClientTests
{
    [Fact]
    public async Task Http_proxy_from_the_environment_is_used_and_no_proxy_bypasses_it()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        File.WriteAllText(Path.Combine(root, "p.bin"), "through the proxy");
        await using var upstream = new Nginx(root);
        await upstream.StartAsync();
        // A forward proxy: whatever absolute URL it is asked for, it fetches from the upstream.
        await using var proxy = new Nginx(root, $"location / {{ proxy_pass http://127.0.0.1:{upstream.Port}; }}");
        await proxy.StartAsync();

        async Task<int> FetchThroughHoard(Dictionary<string, string> env)
        {
            var port = Ports.Free();
            await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", Path.Combine(temp.Path, "data-" + port), "--files", "up=http://upstream.invalid/", "--index-retries", "0"], env);
            await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
            using var http = new HttpClient();
            using var r = await http.GetAsync($"http://127.0.0.1:{port}/files/up/p.bin");
            if (r.IsSuccessStatusCode)
            {
                Assert.Equal("through the proxy", await r.Content.ReadAsStringAsync());
            }
            return (int)r.StatusCode;
        }

        Assert.Equal(200, await FetchThroughHoard(new() { ["HTTP_PROXY"] = proxy.BaseUrl, ["http_proxy"] = proxy.BaseUrl }));
        Assert.Equal(1, proxy.Count("/p.bin"));
        Assert.Equal(502, await FetchThroughHoard(new() { ["HTTP_PROXY"] = proxy.BaseUrl, ["http_proxy"] = proxy.BaseUrl, ["NO_PROXY"] = "upstream.invalid", ["no_proxy"] = "upstream.invalid" }));
        Assert.Equal(1, proxy.Count("/p.bin"));
    }

    [Fact]
    public async Task Through_a_proxy_a_redirect_to_a_loopback_port_is_still_refused()
    {
        using var temp = new TempDir();
        using var internalService = new RecordingListener();
        await using var upstream = new Nginx(temp.Sub("up"), $"location / {{ return 302 http://127.0.0.1:{internalService.Port}/admin; }}");
        await upstream.StartAsync();
        await using var proxy = new Nginx(temp.Sub("proxy"), $"location / {{ proxy_pass http://127.0.0.1:{upstream.Port}; }}");
        await proxy.StartAsync();
        var port = Ports.Free();
        var env = new Dictionary<string, string> { ["HTTP_PROXY"] = proxy.BaseUrl, ["http_proxy"] = proxy.BaseUrl };
        await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data"), "--files", "up=http://upstream.invalid/", "--index-retries", "0"], env);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));

        using var http = new HttpClient();
        using var response = await http.GetAsync($"http://127.0.0.1:{port}/files/up/x.bin");
        Assert.Equal(502, (int)response.StatusCode);
        Assert.Contains("a loopback address", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        // The configured upstream went through the proxy; the redirect's target went nowhere, proxied or not.
        Assert.Equal(1, proxy.Count("/x.bin"));
        Assert.Equal(0, proxy.Count("/admin"));
        Assert.Equal(0, internalService.Connections);
    }

    [Fact]
    public async Task A_tls_upstream_signed_by_a_private_ca_needs_the_ca_bundle()
    {
        using var temp = new TempDir();
        var certs = temp.Sub("certs");
        async Task Openssl(params string[] args)
        {
            var (code, output) = await Pip.RunAsync("openssl", args);
            Assert.True(code == 0, output);
        }
        File.WriteAllText(Path.Combine(certs, "san.ext"), "subjectAltName=IP:127.0.0.1\n");
        await Openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", Path.Combine(certs, "ca.key"), "-out", Path.Combine(certs, "ca.pem"), "-days", "2", "-subj", "/CN=Hoard Test CA");
        await Openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", Path.Combine(certs, "srv.key"), "-out", Path.Combine(certs, "srv.csr"), "-subj", "/CN=127.0.0.1");
        await Openssl("x509", "-req", "-in", Path.Combine(certs, "srv.csr"), "-CA", Path.Combine(certs, "ca.pem"), "-CAkey", Path.Combine(certs, "ca.key"), "-CAcreateserial", "-out", Path.Combine(certs, "srv.pem"), "-days", "2", "-extfile", Path.Combine(certs, "san.ext"));

        var root = temp.Sub("up");
        File.WriteAllText(Path.Combine(root, "tls.bin"), "over tls");
        await using var nginx = new Nginx(root, $"ssl_certificate {certs}/srv.pem; ssl_certificate_key {certs}/srv.key;", listenOptions: "ssl");
        await nginx.StartAsync();
        var url = $"https://127.0.0.1:{nginx.Port}/";
        using var http = new HttpClient();

        await using (var without = await HoardHost.StartAsync(temp.Sub("data1"), o => PipTests.SetFiles(o, "up=" + url)))
        {
            using var r = await http.GetAsync(without.BaseUrl + "/files/up/tls.bin");
            Assert.Equal(502, (int)r.StatusCode);
        }
        await using var with = await HoardHost.StartAsync(temp.Sub("data2"), o =>
        {
            PipTests.SetFiles(o, "up=" + url);
            o.CaBundle = Path.Combine(certs, "ca.pem");
        });
        using var ok = await http.GetAsync(with.BaseUrl + "/files/up/tls.bin");
        Assert.Equal("over tls", await ok.Content.ReadAsStringAsync());
    }
}
