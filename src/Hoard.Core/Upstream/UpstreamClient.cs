using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Metrics;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Upstream;

/// <summary>
/// One outbound request. Only the fetch engine and the front-ends' index loaders build these. The protocol (pypi,
/// files, oci, git, as <see cref="Fetch.ArtifactRequest.Protocol"/>) says which upstream the name is: names are
/// unique per protocol only, and the metrics keep the two apart.
/// </summary>
public sealed record UpstreamCall(string Protocol, string UpstreamName, Uri Url)
{
    /// <summary>Index pages may arrive compressed; files must arrive as upstream stores them.</summary>
    public bool Decompress { get; init; }
    public string? Accept { get; init; }
    public long RangeStart { get; init; }
    public string? IfRange { get; init; }
    public string? IfNoneMatch { get; init; }
    public string? IfModifiedSince { get; init; }

    /// <summary>Retries with backoff before any body byte was read; only index requests get them.</summary>
    public int Retries { get; init; }

    /// <summary>GET unless told otherwise (HEAD resolves a tag without downloading anything).</summary>
    public HttpMethod Method { get; init; } = HttpMethod.Get;

    /// <summary>Extra request headers passed as given (a client's Authorization for git, Git-Protocol).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    /// <summary>A request body, streamed once and never retried (git push).</summary>
    public HttpContent? Body { get; init; }

    /// <summary>Credentials for this request and what to do on a 401 (registries' token flow). Null: URL user info only.</summary>
    public IUpstreamAuth? Auth { get; init; }
}

/// <summary>How an upstream wants to be authenticated. Implementations cache what they obtain.</summary>
public interface IUpstreamAuth
{
    /// <summary>Adds credentials to a request about to be sent.</summary>
    ValueTask ApplyAsync(HttpRequestMessage request, CancellationToken ct);

    /// <summary>Upstream answered 401. True when new credentials were obtained and the request should be sent once more.</summary>
    ValueTask<bool> RefreshAsync(HttpResponseMessage unauthorized, CancellationToken ct);
}

/// <summary>Why an upstream request failed, with the status a client should see.</summary>
public sealed class UpstreamException(string reason, int clientStatus, string message, Exception? inner = null, int upstreamStatus = 0)
    : Exception(message, inner)
{
    /// <summary>The status upstream answered with, when it answered.</summary>
    public int UpstreamStatus { get; } = upstreamStatus;

    /// <summary>connect, forbidden_host, timeout, status, body, too_large, size_mismatch, digest_mismatch</summary>
    public string Reason { get; } = reason;
    public int ClientStatus { get; } = clientStatus;
}

/// <summary>
/// The pooled outbound HTTP client. Connect and first-byte timeouts here; the body's idle timeout is enforced by
/// the reader (there is no total timeout, so a 2 GB wheel is never cut off for being big). HTTP(S)_PROXY and
/// NO_PROXY come from the environment through the default proxy; --ca-bundle adds trusted roots. Every connection,
/// redirects included, passes the <see cref="ConnectionPolicy"/>. Redirects are followed by the handler, which drops
/// the Authorization header on each one, so credentials never reach the host a redirect leads to.
/// </summary>
public sealed partial class UpstreamClient : IDisposable
{
    private readonly HttpMessageInvoker _raw;
    private readonly HttpMessageInvoker _decompressing;
    private readonly HoardOptions _options;
    private readonly HoardMetrics _metrics;
    private readonly ILogger _logger;
    private static readonly string UserAgent = "hoard/" + (typeof(UpstreamClient).Assembly.GetName().Version?.ToString(3) ?? "0");

    public UpstreamClient(HoardOptions options, HoardMetrics metrics, ILogger<UpstreamClient> logger)
    {
        _options = options;
        _metrics = metrics;
        _logger = logger;
        var extraRoots = options.CaBundle is null ? null : LoadBundle(options.CaBundle);
        var policy = new ConnectionPolicy(options, HttpClient.DefaultProxy);
        var proxy = new ConnectionPolicy.GuardedProxy(HttpClient.DefaultProxy, policy);
        _raw = new HttpMessageInvoker(CreateHandler(options, extraRoots, DecompressionMethods.None, policy, proxy), disposeHandler: true);
        _decompressing = new HttpMessageInvoker(CreateHandler(options, extraRoots, DecompressionMethods.All, policy, proxy), disposeHandler: true);
    }

    private static SocketsHttpHandler CreateHandler(HoardOptions options, X509Certificate2Collection? roots, DecompressionMethods decompression, ConnectionPolicy policy, IWebProxy proxy)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = true,
            Proxy = proxy,
            ConnectCallback = policy.ConnectAsync,
            AllowAutoRedirect = true,
            MaxAutomaticRedirections = 5,
            AutomaticDecompression = decompression,
            UseCookies = false,
            ConnectTimeout = options.ConnectTimeout,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(90),
            MaxConnectionsPerServer = 64,
        };
        if (roots is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, chain, errors) => ValidateWithExtraRoots(cert, chain, errors, roots),
            };
        }
        return handler;
    }

    private static X509Certificate2Collection LoadBundle(string path)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(path);
        return roots;
    }

    private static bool ValidateWithExtraRoots(X509Certificate? cert, X509Chain? chain, SslPolicyErrors errors, X509Certificate2Collection roots)
    {
        if (errors == SslPolicyErrors.None)
        {
            return true;
        }
        if (cert is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }
        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        // Private CAs rarely publish revocation lists; an online check would fail every chain they sign.
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        custom.ChainPolicy.CustomTrustStore.AddRange(roots);
        if (chain is not null)
        {
            foreach (var element in chain.ChainElements)
            {
                custom.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }
        return custom.Build(new X509Certificate2(cert));
    }

    /// <summary>
    /// Sends a GET and returns once response headers arrived. Statuses other than 2xx and 304 become an
    /// <see cref="UpstreamException"/> carrying the status a client should see.
    /// </summary>
    public Task<HttpResponseMessage> SendAsync(UpstreamCall call, CancellationToken ct) => WithRetriesAsync(call, SendOnceAsync, ct);

    /// <summary>Retries with backoff, as <see cref="UpstreamCall.Retries"/> allows: failures to connect or answer, and 5xx.</summary>
    private async Task<HttpResponseMessage> WithRetriesAsync(UpstreamCall call, Func<UpstreamCall, CancellationToken, Task<HttpResponseMessage>> send, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return await send(call, ct);
            }
            catch (UpstreamException e) when (attempt < call.Retries && e.Reason != "forbidden_host" && (e.Reason != "status" || e.ClientStatus >= 500) && !ct.IsCancellationRequested)
            {
                var delay = TimeSpan.FromMilliseconds(200 * Math.Pow(2, attempt) + Random.Shared.Next(0, 100));
                LogRetry(_logger, call.UpstreamName, Redact(call.Url), attempt + 1, e.Message);
                await Task.Delay(delay, ct);
            }
        }
    }

    private async Task<HttpResponseMessage> SendOnceAsync(UpstreamCall call, CancellationToken ct)
    {
        var response = await SendAuthenticatedAsync(call, ct);
        var status = (int)response.StatusCode;
        if (status is >= 200 and < 300 or 304)
        {
            return response;
        }
        response.Dispose();
        _metrics.UpstreamError(call.Protocol, call.UpstreamName, "status");
        var clientStatus = status switch
        {
            404 or 410 => 404,
            401 or 403 or 429 => status,
            _ => 502,
        };
        throw new UpstreamException("status", clientStatus, $"upstream '{call.UpstreamName}' answered {status} for {Redact(call.Url)}", upstreamStatus: status);
    }

    /// <summary>Sends once, and once more if the auth hook obtained new credentials after a 401.</summary>
    private async Task<HttpResponseMessage> SendAuthenticatedAsync(UpstreamCall call, CancellationToken ct)
    {
        for (var attempt = 0; ; attempt++)
        {
            var response = await SendRawAsync(call, ct);
            if (response.StatusCode != HttpStatusCode.Unauthorized || call.Auth is null || attempt > 0)
            {
                return response;
            }
            bool refreshed;
            try
            {
                refreshed = await call.Auth.RefreshAsync(response, ct);
            }
            catch
            {
                response.Dispose();
                throw;
            }
            if (!refreshed)
            {
                return response;
            }
            response.Dispose();
        }
    }

    private async Task<HttpResponseMessage> SendRawAsync(UpstreamCall call, CancellationToken ct)
    {
        using var request = BuildRequest(call);
        if (call.Auth is not null)
        {
            await call.Auth.ApplyAsync(request, ct);
        }
        using var firstByte = CancellationTokenSource.CreateLinkedTokenSource(ct);
        firstByte.CancelAfter(_options.FirstByteTimeout);
        var started = Stopwatch.GetTimestamp();
        HttpResponseMessage response;
        try
        {
            var invoker = call.Decompress ? _decompressing : _raw;
            response = await invoker.SendAsync(request, firstByte.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            _metrics.UpstreamRequest(call.Protocol, call.UpstreamName, "timeout", Stopwatch.GetElapsedTime(started));
            _metrics.UpstreamError(call.Protocol, call.UpstreamName, "timeout");
            throw new UpstreamException("timeout", 504, $"upstream '{call.UpstreamName}' did not answer within {_options.FirstByteTimeout.TotalSeconds:0.#}s");
        }
        catch (HttpRequestException e) when (FindForbidden(e) is { } forbidden)
        {
            _metrics.UpstreamRequest(call.Protocol, call.UpstreamName, "error", Stopwatch.GetElapsedTime(started));
            _metrics.UpstreamError(call.Protocol, call.UpstreamName, "forbidden_host");
            LogForbidden(_logger, call.UpstreamName, Redact(call.Url), forbidden.Message);
            throw new UpstreamException("forbidden_host", 502, $"upstream '{call.UpstreamName}': {forbidden.Message}", e);
        }
        catch (HttpRequestException e)
        {
            _metrics.UpstreamRequest(call.Protocol, call.UpstreamName, "error", Stopwatch.GetElapsedTime(started));
            _metrics.UpstreamError(call.Protocol, call.UpstreamName, "connect");
            LogUnreachable(_logger, call.UpstreamName, call.Method.Method, Redact(call.Url), e.InnerException?.Message ?? e.Message);
            throw new UpstreamException("connect", 502, $"upstream '{call.UpstreamName}' is unreachable: {e.Message}", e);
        }
        var status = (int)response.StatusCode;
        _metrics.UpstreamRequest(call.Protocol, call.UpstreamName, status switch { 304 => "304", < 300 => "2xx", < 400 => "3xx", < 500 => "4xx", _ => "5xx" }, Stopwatch.GetElapsedTime(started));
        LogUpstream(_logger, call.UpstreamName, call.Method.Method, Redact(call.Url), status, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return response;
    }

    /// <summary>
    /// A request whose status the caller interprets itself (a registry HEAD, tags/list): no exception for 4xx/5xx,
    /// but connect and timeout failures still throw <see cref="UpstreamException"/> (after the call's retries: a HEAD
    /// that decides a pull is worth a second try when a connection fails).
    /// </summary>
    public Task<HttpResponseMessage> SendUncheckedAsync(UpstreamCall call, CancellationToken ct) => WithRetriesAsync(call, SendAuthenticatedAsync, ct);

    private static HttpRequestMessage BuildRequest(UpstreamCall call)
    {
        var url = call.Url;
        var request = new HttpRequestMessage(call.Method, url);
        if (UrlCredentials.Basic(url) is { } basic)
        {
            request.RequestUri = UrlCredentials.WithoutUserInfo(url);
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", basic);
        }
        request.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
        foreach (var (name, value) in call.Headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        if (call.Body is not null)
        {
            request.Content = call.Body;
        }
        if (call.Accept is not null)
        {
            request.Headers.TryAddWithoutValidation("Accept", call.Accept);
        }
        if (call.RangeStart > 0)
        {
            request.Headers.Range = new RangeHeaderValue(call.RangeStart, null);
            if (call.IfRange is not null)
            {
                request.Headers.TryAddWithoutValidation("If-Range", call.IfRange);
            }
        }
        if (call.IfNoneMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-None-Match", call.IfNoneMatch);
        }
        if (call.IfModifiedSince is not null)
        {
            request.Headers.TryAddWithoutValidation("If-Modified-Since", call.IfModifiedSince);
        }
        return request;
    }

    /// <summary>
    /// Reads a body Hoard must hold whole (JSON it parses), refusing it with a "too_large" <see cref="UpstreamException"/>
    /// once it passes <paramref name="limit"/> bytes, counted after decompression.
    /// </summary>
    public async Task<byte[]> ReadBoundedAsync(UpstreamCall call, HttpResponseMessage response, long limit, string what, CancellationToken ct)
    {
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        using var buffer = new MemoryStream();
        if (response.Content.Headers.ContentLength > limit || !await TryCopyBoundedAsync(body, buffer, limit, ct))
        {
            _metrics.UpstreamError(call.Protocol, call.UpstreamName, "too_large");
            throw new UpstreamException("too_large", 502, $"upstream '{call.UpstreamName}' sent {what} larger than {ValueParsers.FormatSize(limit)}; not read");
        }
        return buffer.ToArray();
    }

    /// <summary>Copies at most <paramref name="limit"/> bytes; false (and the copy stopped) when the source has more.</summary>
    public static async Task<bool> TryCopyBoundedAsync(Stream source, Stream destination, long limit, CancellationToken ct)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            long copied = 0;
            int n;
            while ((n = await source.ReadAsync(buffer, ct)) > 0)
            {
                copied += n;
                if (copied > limit)
                {
                    return false;
                }
                await destination.WriteAsync(buffer.AsMemory(0, n), ct);
            }
            return true;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static ForbiddenUpstreamHostException? FindForbidden(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is ForbiddenUpstreamHostException forbidden)
            {
                return forbidden;
            }
        }
        return null;
    }

    /// <summary>A URL fit for logs: user info removed.</summary>
    public static string Redact(Uri url) => UrlCredentials.WithoutUserInfo(url).ToString();

    public void Dispose()
    {
        _raw.Dispose();
        _decompressing.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream}: {Method} {Url} failed: {Error}")]
    private static partial void LogUnreachable(ILogger logger, string upstream, string method, string url, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream}: retry {Attempt} of {Url}: {Error}")]
    private static partial void LogRetry(ILogger logger, string upstream, string url, int attempt, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream}: refused a connection for {Url}: {Reason}")]
    private static partial void LogForbidden(ILogger logger, string upstream, string url, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Upstream {Upstream}: {Method} {Url} -> {Status} in {Ms:0.0} ms")]
    private static partial void LogUpstream(ILogger logger, string upstream, string method, string url, int status, double ms);
}
