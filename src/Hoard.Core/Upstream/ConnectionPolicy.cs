using System.Net;
using System.Net.Sockets;
using Hoard.Core.Configuration;

namespace Hoard.Core.Upstream;

/// <summary>
/// Where Hoard may connect. Upstreams hand Hoard URLs (redirects, absolute index links, LFS hrefs, token realms);
/// an upstream that is hostile, or merely compromised, must not be able to point Hoard at the machines around it
/// (SSRF). A connection is allowed to the scheme+host+port of a configured upstream, to an --allow-upstream-host
/// entry, and otherwise only to public addresses. The check runs in the socket connect itself, on the addresses
/// just resolved and then connected to, so a name that resolves differently a moment later (DNS rebinding)
/// cannot slip past it, and every path that opens a connection (redirects included) goes through it.
/// </summary>
public sealed class ConnectionPolicy
{
    private readonly HashSet<(string Scheme, string Host, int Port)> _upstreams = [];
    private readonly List<AllowedUpstreamHost> _allowed;
    private readonly HashSet<(string Host, int Port)> _proxies = [];

    public ConnectionPolicy(HoardOptions options, IWebProxy? proxy)
    {
        foreach (var spec in options.Pypi.Concat(options.Files).Concat(options.Registries).Concat(options.Git))
        {
            _upstreams.Add((spec.Url.Scheme, AllowedUpstreamHost.NormalizeHost(spec.Url.IdnHost), spec.Url.Port));
        }
        _allowed = [.. options.AllowUpstreamHosts];
        if (proxy is not null)
        {
            // The operator's proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) is trusted like an upstream. IWebProxy only
            // answers "which proxy for this URL", so ask it for one URL of each scheme.
            foreach (var probe in new[] { new Uri("http://hoard-proxy-probe.invalid/"), new Uri("https://hoard-proxy-probe.invalid/") })
            {
                if (!proxy.IsBypassed(probe) && proxy.GetProxy(probe) is { } proxyUri)
                {
                    _proxies.Add((AllowedUpstreamHost.NormalizeHost(proxyUri.IdnHost), proxyUri.Port));
                }
            }
        }
    }

    /// <summary>Null when Hoard may connect to host:port at these addresses; otherwise why not, in one sentence.</summary>
    public string? Refusal(string scheme, string host, int port, IReadOnlyList<IPAddress> addresses)
    {
        var name = AllowedUpstreamHost.NormalizeHost(host);
        if (IsAllowedByName(scheme, name, port))
        {
            return null;
        }
        foreach (var address in addresses)
        {
            if (ForbiddenRange(address) is { } range && !IsAllowListed(AllowedUpstreamHost.NormalizeHost(address.ToString()), port))
            {
                var shown = name == AllowedUpstreamHost.NormalizeHost(address.ToString()) ? name : $"{name} ({address})";
                return $"Hoard does not connect to {shown} port {port}: a {range} address that is not a configured upstream (allow it with --allow-upstream-host)";
            }
        }
        return null;
    }

    /// <summary>A configured upstream or an allow-listed host: no address check (the operator named it).</summary>
    private bool IsAllowedByName(string scheme, string normalizedHost, int port) =>
        _upstreams.Contains((scheme, normalizedHost, port)) || _proxies.Contains((normalizedHost, port)) || IsAllowListed(normalizedHost, port);

    private bool IsAllowListed(string normalizedHost, int port) => _allowed.Exists(a => a.Matches(normalizedHost, port));

    /// <summary>The kind of non-public range an address is in, or null for a public address.</summary>
    public static string? ForbiddenRange(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }
        Span<byte> b = stackalloc byte[16];
        address.TryWriteBytes(b, out var length);
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            if (address.Equals(IPAddress.IPv6Any))
            {
                return "unspecified";
            }
            if (address.Equals(IPAddress.IPv6Loopback))
            {
                return "loopback";
            }
            if (address.IsIPv6LinkLocal)
            {
                return "link-local";
            }
            if (address.IsIPv6UniqueLocal || address.IsIPv6SiteLocal)
            {
                return "private";
            }
            // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last four bytes.
            if (b[..12].SequenceEqual((ReadOnlySpan<byte>)[0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0]))
            {
                return ForbiddenRange(new IPAddress(b[12..16]));
            }
            return null;
        }
        if (length != 4)
        {
            return "unknown";
        }
        return (b[0], b[1]) switch
        {
            (0, _) => "unspecified",
            (127, _) => "loopback",
            (169, 254) => "link-local",
            (10, _) or (172, >= 16 and <= 31) or (192, 168) => "private",
            (100, >= 64 and <= 127) => "shared (CGNAT)",
            _ => null,
        };
    }

    /// <summary>
    /// SocketsHttpHandler.ConnectCallback: resolves the host, checks every address, connects only to those. A
    /// connection to the operator's proxy is not checked here: <see cref="GuardedProxy"/> checked the target.
    /// </summary>
    public async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var endpoint = context.DnsEndPoint;
        var host = endpoint.Host.Trim('[', ']');
        var addresses = IPAddress.TryParse(host, out var literal) ? [literal] : await Dns.GetHostAddressesAsync(host, ct);
        var scheme = context.InitialRequestMessage.RequestUri?.Scheme ?? "";
        if (Refusal(scheme, endpoint.Host, endpoint.Port, addresses) is { } refusal)
        {
            throw new ForbiddenUpstreamHostException(refusal);
        }
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, endpoint.Port, ct);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// With a proxy, the proxy resolves and connects, so the check is on the target URL before it is handed over: a
    /// target this policy refuses is not proxied but sent direct, where <see cref="ConnectAsync"/> refuses it.
    /// A name that does not resolve here is left to the proxy (behind many proxies only the proxy resolves names).
    /// </summary>
    public sealed class GuardedProxy(IWebProxy inner, ConnectionPolicy policy) : IWebProxy
    {
        public ICredentials? Credentials
        {
            get => inner.Credentials;
            set => inner.Credentials = value;
        }

        public Uri? GetProxy(Uri destination) => inner.GetProxy(destination);

        public bool IsBypassed(Uri host) => inner.IsBypassed(host) || !policy.MayProxy(host);
    }

    private bool MayProxy(Uri target)
    {
        var name = AllowedUpstreamHost.NormalizeHost(target.IdnHost);
        if (IsAllowedByName(target.Scheme, name, target.Port))
        {
            return true;
        }
        IPAddress[] addresses;
        if (IPAddress.TryParse(name, out var literal))
        {
            addresses = [literal];
        }
        else
        {
            try
            {
                // IWebProxy is synchronous; this runs only when a proxy is configured and the target is not an upstream.
                addresses = Dns.GetHostAddresses(name);
            }
            catch (SocketException)
            {
                return true;
            }
        }
        return Refusal(target.Scheme, name, target.Port, addresses) is null;
    }
}

/// <summary>A connection the <see cref="ConnectionPolicy"/> refused.</summary>
public sealed class ForbiddenUpstreamHostException(string message) : IOException(message);
