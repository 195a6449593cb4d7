using System.Net.Http.Headers;
using Hoard.Core.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Hoard.Core.Warm;

/// <summary>What one warm request came back with.</summary>
/// <param name="Outcome">X-Hoard-Cache: HIT, MISS, COALESCED, PEER, STALE, …; null when the answer had none.</param>
/// <param name="Digest">The stored blob behind the answer (hex), when the answer names it: X-Hoard-Digest, an ETag that is
/// a sha256, or Docker-Content-Digest. A download whose digest was not known in advance names it only once stored.</param>
public readonly record struct SelfAnswer(int Status, string? Outcome, long Bytes, string? Error, string? Digest = null)
{
    public bool Ok => Status is >= 200 and < 300 && Error is null;

    /// <summary>This node held it before (a hit, or a stored copy revalidated or served stale).</summary>
    public bool WasCached => Outcome is "HIT" or "REVALIDATED" or "STALE";
}

/// <summary>
/// Warming asks this node for each artifact exactly as a client would, over its own listener: the same routes, keys,
/// authorisation, single flight, peers and verification, so a warmed artifact is the one the next client gets and no
/// second fetch path exists. A stored artifact's answer is dropped after the headers (nothing to bring in); a download
/// is read to its end, so its verification is known before it is counted as fetched.
/// </summary>
public sealed class SelfClient : IDisposable
{
    private readonly IServer _server;
    private readonly Func<ServerCertificate> _certificate;
    private HttpClient? _http;
    private Uri? _base;

    /// <param name="certificate">This node's TLS certificate, asked for only when the listener used is HTTPS.</param>
    public SelfClient(IServer server, Func<ServerCertificate> certificate)
    {
        _server = server;
        _certificate = certificate;
    }

    /// <summary>This node's own address: the first plain HTTP listener (else HTTPS), a wildcard host as loopback.</summary>
    public Uri BaseUrl => _base ??= PickBase(_server.Features.Get<IServerAddressesFeature>()?.Addresses ?? []);

    internal static Uri PickBase(ICollection<string> addresses)
    {
        var chosen = addresses.FirstOrDefault(a => a.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) ?? addresses.FirstOrDefault()
            ?? throw new InvalidOperationException("Hoard is not listening yet");
        var uri = new Uri(chosen.Replace("://+", "://127.0.0.1", StringComparison.Ordinal).Replace("://*", "://127.0.0.1", StringComparison.Ordinal));
        var builder = new UriBuilder(uri);
        builder.Host = uri.Host switch
        {
            "0.0.0.0" or "localhost" => "127.0.0.1",
            "[::]" or "::" => "[::1]",
            _ => uri.Host,
        };
        return builder.Uri;
    }

    private HttpClient Http => _http ?? InitHttp();

    /// <summary>The first warm makes the client; several items starting at once must not each make (and leak) one.</summary>
    private HttpClient InitHttp()
    {
        var made = MakeHttp();
        if (Interlocked.CompareExchange(ref _http, made, null) is { } other)
        {
            made.Dispose();
            return other;
        }
        return made;
    }

    private HttpClient MakeHttp() => new HttpClient(new SocketsHttpHandler
    {
        // Only this node's own certificate is accepted: the connection goes to our own listener.
        SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString() == _certificate().Current.GetCertHashString() },
        AutomaticDecompression = System.Net.DecompressionMethods.None,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan, // downloads can be long; cancellation comes from the warm's caller
        DefaultRequestHeaders = { UserAgent = { new ProductInfoHeaderValue("hoard-warm", BuildVersion.Version) } },
    };

    /// <summary>GETs a path of this node; reads the body (reporting bytes as they come) unless it was already stored.</summary>
    public Task<SelfAnswer> GetAsync(string pathAndQuery, string? accept, Action<long>? progress, CancellationToken ct) =>
        SendAsync(pathAndQuery, accept, progress, keep: null, long.MaxValue, ct);

    /// <summary>GETs a small document (a page, a manifest) whole; bodies over <paramref name="limit"/> are an error.</summary>
    public async Task<(SelfAnswer Answer, byte[]? Body)> GetDocumentAsync(string pathAndQuery, string? accept, int limit, CancellationToken ct)
    {
        using var copy = new MemoryStream();
        var answer = await SendAsync(pathAndQuery, accept, null, copy, limit, ct);
        return (answer, answer.Ok ? copy.ToArray() : null);
    }

    /// <summary>
    /// One GET: an error answer becomes its status and first line; a hit not being kept is dropped after its headers;
    /// otherwise the body is read to its end (so a download's verification is known), into <paramref name="keep"/> when
    /// given, at most <paramref name="limit"/> bytes of it.
    /// </summary>
    private async Task<SelfAnswer> SendAsync(string pathAndQuery, string? accept, Action<long>? progress, MemoryStream? keep, long limit, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(BaseUrl, pathAndQuery));
        if (accept is not null)
        {
            request.Headers.TryAddWithoutValidation("Accept", accept);
        }
        try
        {
            using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            var outcome = response.Headers.TryGetValues("X-Hoard-Cache", out var values) ? values.FirstOrDefault() : null;
            var status = (int)response.StatusCode;
            if (!response.IsSuccessStatusCode)
            {
                return new SelfAnswer(status, outcome, 0, $"{status}: {await ReadErrorAsync(response, ct)}");
            }
            var digest = DigestOf(response);
            if (outcome is "HIT" && keep is null)
            {
                return new SelfAnswer(status, outcome, response.Content.Headers.ContentLength ?? 0, null, digest);
            }
            if (response.Content.Headers.ContentLength > limit)
            {
                return new SelfAnswer(502, outcome, 0, $"larger than {limit} bytes");
            }
            await using var body = await response.Content.ReadAsStreamAsync(ct);
            var buffer = new byte[keep is null ? 81_920 : 16_384];
            long total = 0;
            int n;
            while ((n = await body.ReadAsync(buffer, ct)) > 0)
            {
                total += n;
                if (total > limit)
                {
                    return new SelfAnswer(502, outcome, 0, $"larger than {limit} bytes");
                }
                keep?.Write(buffer, 0, n);
                progress?.Invoke(n);
            }
            return new SelfAnswer(status, outcome, total, null, digest);
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            // A body cut off: the node aborts a response whose download failed (upstream broke, digest mismatch).
            return new SelfAnswer(502, null, 0, "the download failed: " + e.Message);
        }
    }

    /// <summary>
    /// The digest of what a path is stored as, asked after it was warmed: a download whose digest was unknown in advance
    /// (a file without a hash, a clone bundle) names it only once committed, which follows its last byte closely.
    /// </summary>
    public async Task<string?> StoredDigestAsync(string pathAndQuery, string? accept, CancellationToken ct)
    {
        var downloads = 0;
        for (var attempt = 0; attempt < 50; attempt++)
        {
            var answer = await GetAsync(pathAndQuery, accept, null, ct);
            if (!answer.Ok)
            {
                return null;
            }
            if (answer.Digest is { } digest && answer.WasCached)
            {
                return digest;
            }
            // Joined the download still committing (cheap: local bytes), or fetched again because it was evicted
            // meanwhile: a second such fetch means the store cannot keep it, and asking on would only download more.
            if (answer.Outcome is "MISS" or "PEER" && ++downloads >= 2)
            {
                return null;
            }
            await Task.Delay(100, ct);
        }
        return null;
    }

    private static string? DigestOf(HttpResponseMessage response)
    {
        static string? Hex(string? value)
        {
            value = value?.Trim('"', ' ');
            if (value is not null && value.StartsWith("sha256:", StringComparison.Ordinal))
            {
                value = value[7..];
            }
            return value is { Length: 64 } && value.All(char.IsAsciiHexDigitLower) ? value : null;
        }
        return (response.Headers.TryGetValues("X-Hoard-Digest", out var own) ? Hex(own.FirstOrDefault()) : null)
            ?? Hex(response.Headers.ETag?.Tag)
            ?? (response.Headers.TryGetValues("Docker-Content-Digest", out var oci) ? Hex(oci.FirstOrDefault()) : null);
    }

    /// <summary>The first line of an error answer (Hoard's errors are one line of text or an OCI error document).</summary>
    private static async Task<string> ReadErrorAsync(HttpResponseMessage response, CancellationToken ct)
    {
        // At most 4 KB of it: an error relayed from a hostile or broken upstream may be any size.
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        var buffer = new byte[4096];
        var length = 0;
        int n;
        while (length < buffer.Length && (n = await body.ReadAsync(buffer.AsMemory(length), ct)) > 0)
        {
            length += n;
        }
        var text = System.Text.Encoding.UTF8.GetString(buffer, 0, length);
        if (text.StartsWith("{\"errors\"", StringComparison.Ordinal))
        {
            // The registry API's error document: its first message is the reason.
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(text);
                if (doc.RootElement.GetProperty("errors")[0].GetProperty("message").GetString() is { Length: > 0 } message)
                {
                    text = message;
                }
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or KeyNotFoundException or IndexOutOfRangeException or InvalidOperationException)
            {
                // not the document it looked like: the text as it is
            }
        }
        text = text.Length > 300 ? text[..300] : text;
        var line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim();
        return string.IsNullOrEmpty(line) ? response.ReasonPhrase ?? "error" : line;
    }

    public void Dispose() => _http?.Dispose();
}
