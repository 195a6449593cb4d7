using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A token server for docker-registry's token auth (the flow Docker Hub and ghcr.io use): ES256 JWTs with the
/// signing certificate in x5c. Repositories under "public/" are readable anonymously; alice:s3cret may do anything.
/// The registry is the real one; only the token issuer is written here, as Docker Hub's is not reachable.
/// </summary>
public sealed class TokenServer : IAsyncDisposable
{
    public const string Service = "hoard-test-registry";
    public const string Issuer = "hoard-test-issuer";
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly X509Certificate2 _cert;
    private WebApplication? _app;
    private int _issued;

    public TokenServer(string dir)
    {
        var request = new CertificateRequest("CN=hoard-test-token", _key, HashAlgorithmName.SHA256);
        _cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(2));
        CertBundle = Path.Combine(dir, "token-root.pem");
        File.WriteAllText(CertBundle, _cert.ExportCertificatePem());
    }

    public string CertBundle { get; }
    public string Realm { get; private set; } = "";
    public int Issued => Volatile.Read(ref _issued);

    public async Task StartAsync()
    {
        (_app, var baseUrl) = await TestWebApp.StartAsync(app => app.MapGet("/token", (HttpContext ctx) => Issue(ctx)));
        Realm = baseUrl + "/token";
    }

    private IResult Issue(HttpContext ctx)
    {
        var header = ctx.Request.Headers.Authorization.ToString();
        string? user = null;
        if (header.StartsWith("Basic ", StringComparison.Ordinal))
        {
            var pair = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..]));
            if (pair != "alice:s3cret")
            {
                return Results.Unauthorized();
            }
            user = "alice";
        }
        var access = new List<object>();
        foreach (var scope in ctx.Request.Query["scope"])
        {
            var parts = (scope ?? "").Split(':');
            if (parts.Length == 3 && parts[0] == "repository")
            {
                var granted = user is not null ? parts[2].Split(',') : parts[1].StartsWith("public/", StringComparison.Ordinal) ? ["pull"] : [];
                access.Add(new { type = "repository", name = parts[1], actions = granted });
            }
        }
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var head = B64(JsonSerializer.SerializeToUtf8Bytes(new { alg = "ES256", typ = "JWT", x5c = new[] { Convert.ToBase64String(_cert.RawData) } }));
        var claims = B64(JsonSerializer.SerializeToUtf8Bytes(new { iss = Issuer, sub = user ?? "", aud = Service, exp = now + 300, nbf = now - 10, iat = now, jti = Guid.NewGuid().ToString("N"), access }));
        var signature = B64(_key.SignData(Encoding.ASCII.GetBytes(head + "." + claims), HashAlgorithmName.SHA256));
        Interlocked.Increment(ref _issued);
        return Results.Json(new { token = $"{head}.{claims}.{signature}", expires_in = 300 });
    }

    private static string B64(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        _key.Dispose();
        _cert.Dispose();
    }
}
