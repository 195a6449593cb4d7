using System.CommandLine;
using System.Net;
using Hoard.Core.Configuration;

namespace Hoard;

/// <summary>
/// `hoard health`: GET /healthz of a running Hoard; exit 0 if it answered 200, 1 otherwise. It is the container
/// image's HEALTHCHECK, where there is no curl or shell. (Docker reserves exit code 2: every failure is 1 here.)
/// </summary>
public static class HealthCommand
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);

    public static Command Build()
    {
        var command = new Command("health", "Ask a running Hoard whether it is alive (GET /healthz): exit 0 if it answered 200, 1 if not. For a container's HEALTHCHECK.");
        var url = new Option<string>("--url")
        {
            Description = "Hoard's base URL (default: the first http:// URL of HOARD_LISTEN, else its first https:// one, else "
                + HoardOptions.DefaultListen + "; 0.0.0.0 and [::] are asked on 127.0.0.1 and [::1]; certificates of such a derived https:// URL are not checked)",
        };
        var timeout = new Option<string>("--timeout") { Description = $"how long to wait for the answer (default {DefaultTimeout.TotalSeconds:0}s)" };
        command.Options.Add(url);
        command.Options.Add(timeout);
        command.SetAction(async (parse, ct) =>
        {
            var wait = DefaultTimeout;
            if (parse.GetValue(timeout) is { } text && !(ValueParsers.TryParseDuration(text, out wait) && wait > TimeSpan.Zero))
            {
                await Console.Error.WriteLineAsync($"hoard: --timeout '{text}': expected a duration such as 5s");
                return 1;
            }
            var explicitUrl = parse.GetValue(url);
            var (target, error) = explicitUrl is not null ? Parse(explicitUrl) : FromListen(Environment.GetEnvironmentVariable("HOARD_LISTEN"));
            if (target is null)
            {
                await Console.Error.WriteLineAsync("hoard: " + error);
                return 1;
            }
            var (healthy, message) = await ProbeAsync(target, wait, checkCertificate: explicitUrl is not null, ct);
            await (healthy ? Console.Out : Console.Error).WriteLineAsync((healthy ? "" : "hoard: ") + message);
            return healthy ? 0 : 1;
        });
        return command;
    }

    /// <summary>The base URL to ask, from a HOARD_LISTEN value (null or empty: Hoard's default listener).</summary>
    public static (Uri? Url, string? Error) FromListen(string? listen)
    {
        var items = (string.IsNullOrWhiteSpace(listen) ? HoardOptions.DefaultListen : listen)
            .Split([',', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var addresses = new List<ListenAddress>();
        foreach (var item in items)
        {
            if (ListenAddress.TryParse(item, out var address) is { } error)
            {
                return (null, "HOARD_LISTEN: " + error);
            }
            addresses.Add(address!);
        }
        if (addresses.Count == 0)
        {
            return (null, "HOARD_LISTEN names no URL");
        }
        // Plain http first: it needs no certificate, and a node serving both answers the same on either.
        var chosen = addresses.FirstOrDefault(a => !a.Https) ?? addresses[0];
        var host = chosen.Localhost || chosen.Address is null || chosen.Address.Equals(IPAddress.Any) ? "127.0.0.1"
            : chosen.Address.Equals(IPAddress.IPv6Any) ? "[::1]"
            : chosen.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{chosen.Address}]"
            : chosen.Address.ToString();
        return (new Uri($"{(chosen.Https ? "https" : "http")}://{host}:{chosen.Port}/"), null);
    }

    /// <summary>An explicit --url, checked: http(s) and absolute.</summary>
    public static (Uri? Url, string? Error) Parse(string text) =>
        Uri.TryCreate(text.Trim(), UriKind.Absolute, out var parsed) && parsed.Scheme is "http" or "https"
            ? (parsed, null)
            : (null, $"--url '{text}': expected http(s)://HOST[:PORT]");

    /// <summary>GET BASE/healthz: healthy if the answer is 200, within the timeout.</summary>
    public static async Task<(bool Healthy, string Message)> ProbeAsync(Uri baseUrl, TimeSpan timeout, bool checkCertificate, CancellationToken ct)
    {
        var url = new Uri(baseUrl.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/healthz");
        using var handler = new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false };
        if (!checkCertificate)
        {
            // Only for a URL made from Hoard's own listeners (127.0.0.1, which no certificate names): the probe sends
            // nothing secret and reads nothing but the status, and it asks the process beside it, not a remote server.
#pragma warning disable CA5359
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
#pragma warning restore CA5359
        }
        using var http = new HttpClient(handler) { Timeout = timeout };
        try
        {
            using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, ct);
            return response.StatusCode == HttpStatusCode.OK
                ? (true, $"{url}: ok")
                : (false, $"{url} answered {(int)response.StatusCode}");
        }
        catch (HttpRequestException e)
        {
            return (false, $"{url}: {e.Message}");
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return (false, $"{url}: no answer within {timeout.TotalSeconds:0.#} s");
        }
    }
}
