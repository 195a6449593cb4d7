using System.CommandLine;
using System.Net.Http.Headers;
using System.Text.Json;
using Hoard.Core.Hosting;

namespace Hoard;

/// <summary>
/// What every admin command (warm, pin, unpin) needs to talk to a node: its URL (--url or HOARD_URL) and the admin
/// token (the file --admin-token-file names, or HOARD_ADMIN_TOKEN), sent as a bearer token.
/// </summary>
public sealed class AdminClient : IDisposable
{
    private AdminClient(Uri node, string token)
    {
        Node = node;
        Authorization = new AuthenticationHeaderValue("Bearer", token);
    }

    public Uri Node { get; }
    public AuthenticationHeaderValue Authorization { get; }

    /// <summary>No overall timeout: a warm streams for as long as its downloads take; the caller's Ctrl-C ends it.</summary>
    public HttpClient Http { get; } = new() { Timeout = Timeout.InfiniteTimeSpan };

    public static Option<string> UrlOption() => new("--url") { Description = "the Hoard node, e.g. http://hoard.lan:8080 (default HOARD_URL)" };

    public static Option<string> TokenFileOption() => new("--admin-token-file") { Description = "a file holding the node's admin token (default: the token in HOARD_ADMIN_TOKEN)" };

    /// <summary>The client, or null and what the user must give.</summary>
    public static (AdminClient? Client, string? Error) Create(string? url, string? tokenFile)
    {
        url = string.IsNullOrWhiteSpace(url) ? Environment.GetEnvironmentVariable("HOARD_URL") : url;
        if (string.IsNullOrWhiteSpace(url) || !Uri.TryCreate(url, UriKind.Absolute, out var node) || node.Scheme is not ("http" or "https"))
        {
            return (null, "give --url http://NODE:PORT (or HOARD_URL)");
        }
        var (token, error) = ReadToken(tokenFile);
        if (error is not null)
        {
            return (null, error);
        }
        return string.IsNullOrEmpty(token)
            ? (null, "an admin command needs the node's admin token: --admin-token-file FILE or HOARD_ADMIN_TOKEN")
            : (new AdminClient(node, token), null);
    }

    /// <summary>The admin token from the file given, else HOARD_ADMIN_TOKEN; null when neither has one.</summary>
    public static (string? Token, string? Error) ReadToken(string? tokenFile)
    {
        if (string.IsNullOrWhiteSpace(tokenFile))
        {
            return (Environment.GetEnvironmentVariable("HOARD_ADMIN_TOKEN")?.Trim() is { Length: > 0 } fromEnvironment ? fromEnvironment : null, null);
        }
        try
        {
            return (File.ReadAllText(tokenFile).Trim(), null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, $"--admin-token-file: {e.Message}");
        }
    }

    /// <summary>The URLs of the cluster's live nodes, as the node at --url knows them from its status.</summary>
    public static async Task<(List<Uri>? Nodes, string? Error)> ClusterNodesAsync(AdminClient client, CancellationToken ct)
    {
        try
        {
            using var doc = JsonDocument.Parse(await client.Http.GetStringAsync(new Uri(client.Node, StatusEndpoint.Path), ct));
            if (!doc.RootElement.TryGetProperty("cluster", out var cluster) || cluster.ValueKind != JsonValueKind.Object
                || !cluster.TryGetProperty("nodes", out var nodes) || nodes.ValueKind != JsonValueKind.Array)
            {
                return (null, $"{client.Node} is not in a cluster (it was started without --cluster-redis)");
            }
            var urls = new List<Uri>();
            foreach (var n in nodes.EnumerateArray())
            {
                // Live nodes only: a stale one (its heartbeat expired) is down or gone.
                if (n.TryGetProperty("state", out var state) && state.GetString() == "alive"
                    && n.TryGetProperty("url", out var u) && u.ValueKind == JsonValueKind.String && Uri.TryCreate(u.GetString(), UriKind.Absolute, out var uri))
                {
                    urls.Add(uri);
                }
            }
            return (urls, null);
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or TaskCanceledException)
        {
            return (null, $"{client.Node}: {e.Message}");
        }
    }

    public void Dispose() => Http.Dispose();
}
