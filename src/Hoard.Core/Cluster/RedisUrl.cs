using StackExchange.Redis;

namespace Hoard.Core.Cluster;

/// <summary>
/// <c>redis://[USER:PASSWORD@]HOST[:PORT][/DB]</c> or <c>rediss://</c> (TLS) as StackExchange.Redis options: the
/// password, TLS and database are kept (a bare host:port string would drop them).
/// </summary>
public static class RedisUrl
{
    public static string? Problem(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("redis" or "rediss") || uri.Host.Length == 0)
        {
            return "expected redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss://… for TLS";
        }
        var db = uri.AbsolutePath.Trim('/');
        return db.Length == 0 || int.TryParse(db, out var n) && n is >= 0 and < 10_000 ? null : $"'{db}' is not a database number";
    }

    public static ConfigurationOptions Parse(string url)
    {
        var uri = new Uri(url);
        var options = new ConfigurationOptions
        {
            Ssl = uri.Scheme == "rediss",
            AbortOnConnectFail = false,
        };
        options.EndPoints.Add(uri.Host, uri.Port > 0 ? uri.Port : 6379);
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                options.Password = Uri.UnescapeDataString(uri.UserInfo);
            }
            else
            {
                var user = Uri.UnescapeDataString(uri.UserInfo[..colon]);
                options.User = user.Length == 0 ? null : user;
                options.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }
        if (uri.AbsolutePath.Trim('/') is { Length: > 0 } db)
        {
            options.DefaultDatabase = int.Parse(db, System.Globalization.CultureInfo.InvariantCulture);
        }
        return options;
    }

    /// <summary>The URL fit for logs: no password.</summary>
    public static string Redact(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.UserInfo.Length > 0 ? url.Replace(uri.UserInfo + "@", "***@", StringComparison.Ordinal) : url;
}
