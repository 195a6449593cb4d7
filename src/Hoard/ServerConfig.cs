using System.Net.Http.Headers;
using System.Text.Json;
using Hoard.Core.Configuration;
using Hoard.Core.Hosting;

namespace Hoard;

/// <summary>
/// `hoard config` on a client machine: the upstreams as the server describes them at /_hoard/config, for a machine
/// that has no copy of the server's flags.
/// </summary>
public static class ServerConfig
{
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(15);

    /// <summary>The server's description, or an error of one line saying why there is none.</summary>
    public static async Task<(ClientConfigDocument? Document, string? Error)> FetchAsync(Uri hoard, CancellationToken ct)
    {
        var url = new Uri(hoard.GetLeftPart(UriPartial.Path).TrimEnd('/') + ClientConfigEndpoint.Path);
        var (body, error) = await ReadAsync(url, ct);
        if (body is null)
        {
            return (null, Describe(url, error!));
        }
        ClientConfigDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(body, ClientConfigJson.Default.ClientConfigDocument);
        }
        catch (JsonException e)
        {
            return (null, Describe(url, "the answer is not Hoard's configuration JSON (" + e.Message + ")"));
        }
        return document is null
            ? (null, Describe(url, "the answer is JSON null, not Hoard's configuration"))
            : Validate(document) is { } invalid ? (null, Describe(url, invalid)) : (document, null);
    }

    /// <summary>Upstreams of a container registry, as `ContainerConfig` takes them.</summary>
    public static IReadOnlyList<UpstreamSpec> Registries(ClientConfigDocument document) =>
        document.Registries.Select(r => new UpstreamSpec(r.Name, new Uri(r.Url))).ToList();

    public static IReadOnlyList<UpstreamSpec> Git(ClientConfigDocument document) =>
        document.Git.Select(g => new UpstreamSpec(g.Name, new Uri(g.Url))).ToList();

    private static async Task<(byte[]? Body, string? Error)> ReadAsync(Uri url, CancellationToken ct)
    {
        using var http = new HttpClient { Timeout = AnswerTimeout };
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode)
            {
                return (null, $"it answered {(int)response.StatusCode} (is it a Hoard server, of a version that serves {ClientConfigEndpoint.Path}?)");
            }
            if (response.Content.Headers.ContentLength > ClientConfigEndpoint.MaxBytes)
            {
                return (null, $"the answer is larger than {ClientConfigEndpoint.MaxBytes} bytes");
            }
            await using var body = await response.Content.ReadAsStreamAsync(ct);
            // Bounded whatever Content-Length said (or did not say): one byte more than allowed is enough to refuse.
            var buffer = new byte[ClientConfigEndpoint.MaxBytes + 1];
            var read = 0;
            int n;
            while (read < buffer.Length && (n = await body.ReadAsync(buffer.AsMemory(read), ct)) > 0)
            {
                read += n;
            }
            return read > ClientConfigEndpoint.MaxBytes
                ? (null, $"the answer is larger than {ClientConfigEndpoint.MaxBytes} bytes")
                : (buffer[..read], null);
        }
        catch (HttpRequestException e)
        {
            return (null, e.Message);
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, $"no answer within {AnswerTimeout.TotalSeconds:0} s");
        }
        catch (IOException e)
        {
            return (null, e.Message);
        }
    }

    /// <summary>
    /// Names become file names (containerd's certs.d/NAME) and TOML strings, URLs become git config: what a server
    /// sends is held to what a server could have been configured with.
    /// </summary>
    private static string? Validate(ClientConfigDocument document)
    {
        var names = document.Registries.Select(r => r.Name).Concat(document.Git.Select(g => g.Name));
        if (names.FirstOrDefault(n => !UpstreamSpec.IsValidName(n)) is { } badName)
        {
            return $"the upstream name '{OneLine(badName)}' is not one Hoard accepts";
        }
        var urls = document.Registries.Select(r => r.Url).Concat(document.Git.Select(g => g.Url));
        if (urls.FirstOrDefault(u => !Uri.TryCreate(u, UriKind.Absolute, out var parsed) || parsed.Scheme is not ("http" or "https") || parsed.UserInfo.Length > 0) is { } badUrl)
        {
            return $"the upstream URL '{OneLine(badUrl)}' is not an http(s) URL without credentials";
        }
        return null;
    }

    private static string Describe(Uri url, string reason) => $"cannot read the server's configuration at {url}: {OneLine(reason)}";

    /// <summary>Errors are one line: exception messages and a server's text may hold newlines.</summary>
    private static string OneLine(string text) => string.Join(' ', text.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
