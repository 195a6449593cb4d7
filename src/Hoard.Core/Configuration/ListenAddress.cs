using System.Net;

namespace Hoard.Core.Configuration;

/// <summary>
/// One --listen URL: http:// or https://, a host that is an IP address, "localhost" or a wildcard, and a port.
/// Kestrel's own URL strings would bind a host name it cannot resolve to every address with only a warning;
/// here a host name is an error at start, so nobody believes Hoard listens on one interface when it listens on all.
/// </summary>
public sealed record ListenAddress(bool Https, IPAddress? Address, bool Localhost, int Port)
{
    public static string? TryParse(string text, out ListenAddress? address)
    {
        address = null;
        // Kestrel's wildcard spellings are no valid URI host: read them as "every IPv4 address".
        var normalized = text.Trim().Replace("://*:", "://0.0.0.0:", StringComparison.Ordinal).Replace("://+:", "://0.0.0.0:", StringComparison.Ordinal);
        if (!Uri.TryCreate(normalized, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https") || url.AbsolutePath != "/" || url.Query.Length > 0)
        {
            return $"--listen '{text}': expected http://HOST:PORT or https://HOST:PORT";
        }
        var https = url.Scheme == "https";
        var port = url.Port; // 80 or 443 when none is written
        var host = url.Host;
        if (host is "0.0.0.0")
        {
            address = new ListenAddress(https, IPAddress.Any, false, port);
        }
        else if (host is "[::]")
        {
            address = new ListenAddress(https, IPAddress.IPv6Any, false, port);
        }
        else if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
        {
            address = new ListenAddress(https, null, true, port);
        }
        else if (IPAddress.TryParse(host.Trim('[', ']'), out var ip))
        {
            address = new ListenAddress(https, ip, false, port);
        }
        else
        {
            return $"--listen '{text}': the host must be an IP address, localhost or 0.0.0.0 (a host name is not bound to one interface)";
        }
        return null;
    }
}
