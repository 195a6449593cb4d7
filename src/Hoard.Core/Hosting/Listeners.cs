using Hoard.Core.Configuration;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;

namespace Hoard.Core.Hosting;

/// <summary>Binds every --listen URL: plain HTTP, or HTTPS with the reloading <see cref="ServerCertificate"/>.</summary>
internal static class Listeners
{
    public static void Bind(KestrelServerOptions kestrel, HoardOptions options)
    {
        foreach (var url in options.Listen)
        {
            if (ListenAddress.TryParse(url, out var address) is { } error)
            {
                throw new InvalidOperationException(error); // options were validated: this is a bug, not a setting
            }
            Action<ListenOptions> configure = _ => { };
            if (address!.Https)
            {
                var certificate = kestrel.ApplicationServices.GetRequiredService<ServerCertificate>();
                // Per-connection options (not a fixed certificate): a rotated certificate reaches the next handshake.
                configure = listen => listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    OnConnection = _ => ValueTask.FromResult(certificate.ForNewConnection()),
                });
            }
            if (address.Localhost)
            {
                kestrel.ListenLocalhost(address.Port, configure);
            }
            else
            {
                kestrel.Listen(address.Address!, address.Port, configure);
            }
        }
    }
}
