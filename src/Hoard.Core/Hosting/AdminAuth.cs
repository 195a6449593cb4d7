using System.Security.Cryptography;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Hosting;

/// <summary>
/// The check every admin endpoint (purge today; pin, warm, evict later) makes before it does anything:
/// <c>Authorization: Bearer TOKEN</c>, TOKEN being the content of --admin-token-file. Without a configured token
/// admin endpoints are off (403); a missing or wrong token gets 401 with WWW-Authenticate. Tokens are compared as
/// SHA-256 digests in constant time, so neither the length nor a common prefix shows in the response time.
/// </summary>
public sealed partial class AdminAuth
{
    public const string DisabledMessage = "admin endpoints are disabled: start Hoard with --admin-token-file";

    private readonly byte[]? _tokenDigest;
    private readonly ILogger _logger;

    public AdminAuth(HoardOptions options, ILogger<AdminAuth> logger)
    {
        _tokenDigest = options.AdminToken is { } token ? SHA256.HashData(Encoding.UTF8.GetBytes(token)) : null;
        _logger = logger;
    }

    /// <summary>Whether the request carries the admin token (for optional extras: nothing is written, nothing logged).</summary>
    public bool Presents(HttpContext ctx) =>
        _tokenDigest is not null && BearerToken(ctx.Request.Headers.Authorization.ToString()) is { } presented
        && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _tokenDigest);

    /// <summary>True when the request may go on; otherwise its 403 or 401 answer has been written.</summary>
    public async Task<bool> AuthorizeAsync(HttpContext ctx)
    {
        if (_tokenDigest is null)
        {
            LogRefused(_logger, ctx.Request.Method, ctx.Request.Path.Value ?? "", ctx.Connection.RemoteIpAddress?.ToString() ?? "-", "admin endpoints are disabled");
            await HttpErrors.WriteAsync(ctx, StatusCodes.Status403Forbidden, DisabledMessage);
            return false;
        }
        var presented = BearerToken(ctx.Request.Headers.Authorization.ToString());
        if (presented is not null && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)), _tokenDigest))
        {
            return true;
        }
        // RFC 6750: no credentials get the bare challenge, wrong ones say invalid_token.
        ctx.Response.Headers.WWWAuthenticate = presented is null ? "Bearer realm=\"hoard\"" : "Bearer realm=\"hoard\", error=\"invalid_token\"";
        LogRefused(_logger, ctx.Request.Method, ctx.Request.Path.Value ?? "", ctx.Connection.RemoteIpAddress?.ToString() ?? "-", presented is null ? "no bearer token" : "wrong token");
        await HttpErrors.WriteAsync(ctx, StatusCodes.Status401Unauthorized, "admin endpoint: send Authorization: Bearer <the token in --admin-token-file>");
        return false;
    }

    private static string? BearerToken(string header)
    {
        const string Scheme = "Bearer ";
        return header.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase) && header[Scheme.Length..].Trim() is { Length: > 0 } token ? token : null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Admin request {Method} {Path} from {Remote} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string method, string path, string remote, string reason);
}
