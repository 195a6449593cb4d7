using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Hoard.Core.Configuration;

/// <summary>
/// An --allow-upstream-host entry: a host (a name or an address) Hoard may connect to although its addresses are
/// loopback, link-local or private, on one port, or on any port when none is given.
/// </summary>
public sealed record AllowedUpstreamHost(string Host, int? Port)
{
    /// <summary>Parses HOST, HOST:PORT, [V6] or [V6]:PORT (a bare IPv6 address has no port). Returns an error, or null.</summary>
    public static string? TryParse(string text, out AllowedUpstreamHost? allowed)
    {
        allowed = null;
        var value = text.Trim();
        string host;
        string? port = null;
        if (value.StartsWith('['))
        {
            var close = value.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < value.Length && value[close + 1] != ':'))
            {
                return $"--allow-upstream-host '{text}': expected HOST, HOST:PORT or [IPV6]:PORT";
            }
            host = value[1..close];
            port = close + 1 < value.Length ? value[(close + 2)..] : null;
        }
        else if (value.Count(c => c == ':') > 1)
        {
            if (!IPAddress.TryParse(value, out _))
            {
                return $"--allow-upstream-host '{text}': an IPv6 address with a port is written [ADDRESS]:PORT";
            }
            host = value;
        }
        else
        {
            var colon = value.IndexOf(':', StringComparison.Ordinal);
            host = colon < 0 ? value : value[..colon];
            port = colon < 0 ? null : value[(colon + 1)..];
        }
        int? number = null;
        if (port is not null)
        {
            if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var p) || p is < 1 or > 65535)
            {
                return $"--allow-upstream-host '{text}': the port must be 1-65535";
            }
            number = p;
        }
        if (host.Length == 0 || Uri.CheckHostName(host) == UriHostNameType.Unknown)
        {
            return $"--allow-upstream-host '{text}': '{host}' is not a host name or address";
        }
        allowed = new AllowedUpstreamHost(NormalizeHost(host), number);
        return null;
    }

    /// <summary>
    /// One spelling per host, so names compare as strings: addresses in their canonical form (an IPv4-mapped IPv6
    /// address as IPv4), names in lower case without a trailing dot or IPv6 brackets.
    /// </summary>
    public static string NormalizeHost(string host)
    {
        var bare = host.Trim('[', ']');
        if (IPAddress.TryParse(bare, out var address))
        {
            if (address.IsIPv4MappedToIPv6)
            {
                address = address.MapToIPv4();
            }
            // A zone id (fe80::1%eth0) names an interface, not another host.
            if (address.AddressFamily == AddressFamily.InterNetworkV6)
            {
                address.ScopeId = 0;
            }
            return address.ToString();
        }
        return bare.TrimEnd('.').ToLowerInvariant();
    }

    public bool Matches(string normalizedHost, int port) =>
        string.Equals(Host, normalizedHost, StringComparison.Ordinal) && (Port is null || Port == port);

    public override string ToString() => Port is { } p ? (Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{p}" : $"{Host}:{p}") : Host;
}
