using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Hoard.Core.Hosting;
using Hoard.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace Hoard.Tests.Integration;

/// <summary>HTTPS listeners: real pip over TLS, a certificate chain, rotation by symlink swap, validation at start.</summary>
public sealed class TlsTests
{
    [Fact]
    public async Task Pip_installs_over_https_and_a_rotated_certificate_reaches_new_connections_without_a_restart()
    {
        using var temp = new TempDir();
        var pki = await TestCertificates.CreateAsync(temp.Sub("pki"));
        var (cert1, key1) = await pki.IssueServerAsync(temp.Sub("v1"), "hoard-test-one", 1001);
        // certbot's layout: live/ holds symlinks that a renewal points at new files.
        var live = temp.Sub("live");
        var certLink = Path.Combine(live, "cert.pem");
        var keyLink = Path.Combine(live, "key.pem");
        File.CreateSymbolicLink(certLink, cert1);
        File.CreateSymbolicLink(keyLink, key1);

        var index = new PackageIndex(temp.Sub("upstream"));
        index.AddWheel("tls-demo", "1.0");
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root);
        await nginx.StartAsync();
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o =>
        {
            PipTests.SetPypi(o, nginx.BaseUrl + "/simple/");
            o.Listen = ["https://127.0.0.1:0", "http://127.0.0.1:0"];
            o.TlsCert = certLink;
            o.TlsKey = keyLink;
        }, time);
        var https = hoard.Addresses.Single(a => a.StartsWith("https://", StringComparison.Ordinal));
        var http = hoard.Addresses.Single(a => a.StartsWith("http://", StringComparison.Ordinal));
        var port = new Uri(https).Port;

        using (var pip = await Pip.CreateAsync())
        {
            // Only the root is trusted: the install works only if Hoard sends the intermediate from the cert file.
            var (code, output) = await Pip.RunAsync("python3", ["-m", "pip", "--python", pip.Python, "install", "--no-cache-dir", "--disable-pip-version-check",
                "--no-input", "--timeout", "20", "--retries", "0", "--cert", pki.RootCa, "-i", https + "/simple/", "tls-demo"],
                // requests lets these variables override pip's --cert (psf/requests#3829): empty, they do not.
                new Dictionary<string, string> { ["REQUESTS_CA_BUNDLE"] = "", ["CURL_CA_BUNDLE"] = "" });
            Assert.True(code == 0, output);
            var (_, version) = await pip.RunPythonAsync("import tls_demo; print(tls_demo.VERSION)");
            Assert.Equal("1.0", version.Trim());
        }
        using (var client = new HttpClient())
        {
            Assert.Equal("ok", (await client.GetStringAsync(http + "/healthz")).Trim());
        }
        Assert.Equal("hoard-test-one", (await ServedCertificateAsync(port, pki.RootCa)).GetNameInfo(X509NameType.SimpleName, false));

        // Renewal, half done: the certificate link points at the new certificate, the key link still at the old key.
        var (cert2, key2) = await pki.IssueServerAsync(temp.Sub("v2"), "hoard-test-two", 2002);
        SwapSymlink(certLink, cert2);
        // Files are looked at by handshakes, at most once per check interval: not before it has passed.
        Assert.Equal("hoard-test-one", (await ServedCertificateAsync(port, pki.RootCa)).GetNameInfo(X509NameType.SimpleName, false));
        Assert.False(hoard.Logs.Contains("keeping the current certificate"));
        time.Advance(ServerCertificate.CheckInterval);
        Assert.Equal("hoard-test-one", (await ServedCertificateAsync(port, pki.RootCa)).GetNameInfo(X509NameType.SimpleName, false));
        Assert.True(hoard.Logs.Contains("keeping the current certificate"));
        Assert.Equal("hoard-test-one", (await ServedCertificateAsync(port, pki.RootCa)).GetNameInfo(X509NameType.SimpleName, false));

        // Renewal done: a new connection gets the new certificate, with no restart.
        SwapSymlink(keyLink, key2);
        time.Advance(ServerCertificate.CheckInterval);
        var served = await ServedCertificateAsync(port, pki.RootCa);
        Assert.Equal("07D2", served.SerialNumber);
        Assert.Equal("hoard-test-two", served.GetNameInfo(X509NameType.SimpleName, false));
        Assert.True(hoard.Logs.Contains("new connections get CN=hoard-test-two"));
    }

    [Fact]
    public async Task Https_without_a_certificate_or_with_a_broken_one_exits_2_naming_the_setting()
    {
        using var temp = new TempDir();
        var data = temp.Sub("data");
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "serve", "--data", data, "--listen", "https://127.0.0.1:8443"]);
        Assert.Equal(2, code);
        Assert.Contains("--tls-cert FILE and --tls-key FILE", output, StringComparison.Ordinal);

        var cert = Path.Combine(temp.Path, "cert.pem");
        var key = Path.Combine(temp.Path, "key.pem");
        File.WriteAllText(cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");
        File.WriteAllText(key, "");
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "serve", "--data", data, "--listen", "http://127.0.0.1:8080,https://127.0.0.1:8443", "--tls-cert", cert, "--tls-key", key]);
        Assert.Equal(2, code);
        Assert.Contains($"--tls-cert '{cert}'", output, StringComparison.Ordinal);
        Assert.Contains("cannot load", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(data, "index.db")), "nothing starts with a bad setting");
    }

    /// <summary>The certificate a new TLS connection is given, validated against the test root only.</summary>
    private static async Task<X509Certificate2> ServedCertificateAsync(int port, string rootCa)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(System.Net.IPAddress.Loopback, port);
        await using var tls = new SslStream(tcp.GetStream());
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(X509CertificateLoader.LoadCertificateFromFile(rootCa));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "127.0.0.1", CertificateChainPolicy = policy });
        return X509CertificateLoader.LoadCertificate(tls.RemoteCertificate!.GetRawCertData());
    }

    /// <summary>Points a symlink somewhere else in one rename, as certbot and cert-manager do.</summary>
    private static void SwapSymlink(string link, string target)
    {
        var next = link + ".next";
        File.CreateSymbolicLink(next, target);
        File.Move(next, link, overwrite: true);
    }
}
