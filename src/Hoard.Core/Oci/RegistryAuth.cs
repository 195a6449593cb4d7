using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Hoard.Core.Access;
using Hoard.Core.Configuration;
using Hoard.Core.Upstream;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Oci;

/// <summary>
/// A registry's credentials and its token flow (distribution's token spec): on a 401 with a Bearer challenge, fetch
/// a token from the realm (anonymously, or with Basic credentials) and retry; on a Basic challenge, send Basic.
/// Tokens are cached per registry, credential and repository until they expire, in a cache of bounded size: clients
/// choose the credentials, so a flood of made-up ones must not grow memory.
/// </summary>
public sealed partial class RegistryAuthenticator(UpstreamClient upstream, TimeProvider time, ILogger<RegistryAuthenticator> logger) : IDisposable
{
    /// <summary>A token response is a few KB; anything near this is not one.</summary>
    private const long MaxTokenResponseBytes = 1024 * 1024;
    private const int MaxTokens = 20_000;
    private readonly UpstreamClient _upstream = upstream;
    private readonly TimeProvider _time = time;
    private readonly ILogger _logger = logger;
    private readonly MemoryCache _tokens = new(new MemoryCacheOptions { SizeLimit = MaxTokens, CompactionPercentage = 0.25 });

    /// <summary>Registries that asked for Basic (a property of the registry, not of a client: bounded by the configuration).</summary>
    private readonly ConcurrentDictionary<string, bool> _basic = new(StringComparer.Ordinal);

    public void Dispose() => _tokens.Dispose();

    /// <summary>The Basic credentials configured in a registry URL's user info, base64, or null.</summary>
    public static string? ConfiguredCredentials(UpstreamSpec registry) => UrlCredentials.Basic(registry.Url);

    public IUpstreamAuth For(UpstreamSpec registry, string repository, string? basicCredentials) =>
        new Auth(this, registry.Name, registry.Url, repository, basicCredentials);

    private sealed class Auth(RegistryAuthenticator owner, string registry, Uri registryUrl, string repository, string? basic) : IUpstreamAuth
    {
        private readonly string _scopeKey = $"{registry}|{CredentialIds.Of(basic)}|repository:{repository}:pull";

        public ValueTask ApplyAsync(HttpRequestMessage request, CancellationToken ct)
        {
            var now = owner._time.GetUtcNow().ToUnixTimeMilliseconds();
            if (owner._tokens.TryGetValue(_scopeKey, out (string Token, long ExpiresMs) token) && token.ExpiresMs > now)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);
            }
            else if (basic is not null && owner._basic.ContainsKey(registry))
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic", basic);
            }
            return ValueTask.CompletedTask;
        }

        public async ValueTask<bool> RefreshAsync(HttpResponseMessage unauthorized, CancellationToken ct)
        {
            foreach (var challenge in unauthorized.Headers.WwwAuthenticate)
            {
                if (challenge.Scheme.Equals("Basic", StringComparison.OrdinalIgnoreCase))
                {
                    if (basic is null)
                    {
                        return false;
                    }
                    owner._basic[registry] = true;
                    return true;
                }
                if (challenge.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase) && challenge.Parameter is { } parameter)
                {
                    return await FetchTokenAsync(Parse(parameter), ct);
                }
            }
            return false;
        }

        private async Task<bool> FetchTokenAsync(Dictionary<string, string> challenge, CancellationToken ct)
        {
            if (!challenge.TryGetValue("realm", out var realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUrl) || realmUrl.Scheme is not ("https" or "http"))
            {
                return false;
            }
            if (basic is not null && realmUrl.Scheme == Uri.UriSchemeHttp && !string.Equals(realmUrl.IdnHost, registryUrl.IdnHost, StringComparison.OrdinalIgnoreCase))
            {
                // The realm comes from the registry's 401: a registry (or anyone between it and Hoard, over plain
                // http) could name any host, and Basic credentials sent there in clear text are simply handed over.
                LogRealmRefused(owner._logger, registry, UpstreamClient.Redact(realmUrl));
                return false;
            }
            var query = new StringBuilder();
            if (challenge.TryGetValue("service", out var service))
            {
                query.Append("service=").Append(Uri.EscapeDataString(service));
            }
            var scope = challenge.TryGetValue("scope", out var s) ? s : $"repository:{repository}:pull";
            query.Append(query.Length > 0 ? "&" : "").Append("scope=").Append(Uri.EscapeDataString(scope));
            var url = new UriBuilder(realmUrl) { Query = query.ToString() }.Uri;
            var call = new UpstreamCall("oci", registry, url) { Auth = basic is null ? null : new BasicOnly(basic) };
            using var response = await owner._upstream.SendUncheckedAsync(call, ct);
            if ((int)response.StatusCode is >= 500 or 429)
            {
                // The token server is down, not refusing: an outage (serve what clients were granted), not a denial.
                throw new UpstreamException("token", 502, $"the token server of '{registry}' answered {(int)response.StatusCode}", upstreamStatus: (int)response.StatusCode);
            }
            if (!response.IsSuccessStatusCode)
            {
                return false;
            }
            var body = await owner._upstream.ReadBoundedAsync(call, response, MaxTokenResponseBytes, "a token response", ct);
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(body);
            }
            catch (JsonException)
            {
                return false;
            }
            using var _ = doc;
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return false;
            }
            var token = root.TryGetProperty("token", out var t) ? t.GetString() : root.TryGetProperty("access_token", out var a) ? a.GetString() : null;
            if (string.IsNullOrEmpty(token))
            {
                return false;
            }
            var lifetime = root.TryGetProperty("expires_in", out var e) && e.TryGetInt32(out var seconds) ? seconds : 60;
            var expires = owner._time.GetUtcNow().ToUnixTimeMilliseconds() + Math.Max(5, lifetime - 10) * 1000L;
            owner._tokens.Set(_scopeKey, (token, expires), new MemoryCacheEntryOptions { Size = 1, AbsoluteExpiration = DateTimeOffset.FromUnixTimeMilliseconds(expires) });
            return true;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Registry {Registry}: not sending credentials to the plain-http token realm {Realm} on another host; the request goes on without a token")]
    private static partial void LogRealmRefused(ILogger logger, string registry, string realm);

    /// <summary>Basic credentials sent up front (to a token realm).</summary>
    private sealed class BasicOnly(string basic) : IUpstreamAuth
    {
        public ValueTask ApplyAsync(HttpRequestMessage request, CancellationToken ct)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", basic);
            return ValueTask.CompletedTask;
        }

        public ValueTask<bool> RefreshAsync(HttpResponseMessage unauthorized, CancellationToken ct) => ValueTask.FromResult(false);
    }

    /// <summary>Parses realm="…",service="…",scope="…" (quoted values may contain commas).</summary>
    internal static Dictionary<string, string> Parse(string parameter)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        while (i < parameter.Length)
        {
            while (i < parameter.Length && (parameter[i] == ',' || char.IsWhiteSpace(parameter[i])))
            {
                i++;
            }
            var eq = parameter.IndexOf('=', i);
            if (eq < 0)
            {
                break;
            }
            var key = parameter[i..eq].Trim();
            i = eq + 1;
            string value;
            if (i < parameter.Length && parameter[i] == '"')
            {
                var end = parameter.IndexOf('"', i + 1);
                end = end < 0 ? parameter.Length : end;
                value = parameter[(i + 1)..end];
                i = end + 1;
            }
            else
            {
                var end = parameter.IndexOf(',', i);
                end = end < 0 ? parameter.Length : end;
                value = parameter[i..end].Trim();
                i = end;
            }
            result[key] = value;
        }
        return result;
    }
}
