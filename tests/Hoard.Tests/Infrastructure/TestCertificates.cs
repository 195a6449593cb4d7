namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A test PKI made by the real openssl: a root CA, an intermediate CA, and server certificates for 127.0.0.1
/// signed by the intermediate, so a server must send its chain for clients that trust only the root.
/// </summary>
public sealed class TestCertificates
{
    private readonly string _dir;

    private TestCertificates(string dir) => _dir = dir;

    public string RootCa => Path.Combine(_dir, "root.pem");

    public static async Task<TestCertificates> CreateAsync(string dir)
    {
        var pki = new TestCertificates(dir);
        await pki.OpenSslAsync("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=Hoard Test Root", "-keyout", "root.key", "-out", "root.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        await pki.OpenSslAsync("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=Hoard Test Intermediate", "-keyout", "intermediate.key", "-out", "intermediate.csr");
        File.WriteAllText(Path.Combine(dir, "intermediate.ext"), "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n");
        await pki.OpenSslAsync("x509", "-req", "-in", "intermediate.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "100",
            "-days", "2", "-extfile", "intermediate.ext", "-out", "intermediate.pem");
        File.WriteAllText(Path.Combine(dir, "server.ext"), "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
        return pki;
    }

    /// <summary>Writes DIR/cert.pem (leaf, then the intermediate) and DIR/key.pem for a new server certificate.</summary>
    public async Task<(string Cert, string Key)> IssueServerAsync(string dir, string commonName, int serial)
    {
        Directory.CreateDirectory(dir);
        var key = Path.Combine(dir, "key.pem");
        var csr = Path.Combine(dir, "server.csr");
        var leaf = Path.Combine(dir, "leaf.pem");
        await OpenSslAsync("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + commonName, "-keyout", key, "-out", csr);
        await OpenSslAsync("x509", "-req", "-in", csr, "-CA", "intermediate.pem", "-CAkey", "intermediate.key", "-set_serial", serial.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-days", "2", "-extfile", "server.ext", "-out", leaf);
        var cert = Path.Combine(dir, "cert.pem");
        File.WriteAllText(cert, File.ReadAllText(leaf) + File.ReadAllText(Path.Combine(_dir, "intermediate.pem")));
        return (cert, key);
    }

    private async Task OpenSslAsync(params string[] args)
    {
        var (code, output) = await Pip.RunAsync("sh", ["-c", "cd \"$0\" && exec openssl \"$@\"", _dir, .. args]);
        Assert.True(code == 0, "openssl " + string.Join(' ', args) + ": " + output);
    }
}
