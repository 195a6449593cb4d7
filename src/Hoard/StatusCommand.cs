using System.CommandLine;
using System.Globalization;
using System.Net.Http.Json;
using Hoard.Core.Configuration;
using Hoard.Core.Hosting;
using StackExchange.Redis;

namespace Hoard;

/// <summary>
/// `hoard status`: one node's state from its /_hoard/status (--url), and the cluster's live nodes and the blobs each
/// holds from its Redis (--cluster-redis); either or both.
/// </summary>
public static class StatusCommand
{
    public static Command Build()
    {
        var command = new Command("status", "Show a node's store, hit ratio, bytes saved, downloads in flight and upstream health (--url), and the cluster's live nodes (--cluster-redis / HOARD_CLUSTER_REDIS).");
        var url = new Option<string>("--url") { Description = "a Hoard node, e.g. http://hoard.lan:8080 (default HOARD_URL)" };
        var redis = new Option<string>("--cluster-redis") { Description = "redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss://… (default HOARD_CLUSTER_REDIS)" };
        var tokenFile = AdminClient.TokenFileOption();
        tokenFile.Description += "; with a token, pins and artifact names are shown too";
        command.Options.Add(url);
        command.Options.Add(redis);
        command.Options.Add(tokenFile);
        command.SetAction(async (parse, ct) =>
        {
            var node = NonEmpty(parse.GetValue(url) ?? Environment.GetEnvironmentVariable("HOARD_URL"));
            var cluster = NonEmpty(parse.GetValue(redis) ?? Environment.GetEnvironmentVariable("HOARD_CLUSTER_REDIS"));
            if (node is null && cluster is null)
            {
                await Console.Error.WriteLineAsync("hoard: give --url http://NODE:PORT (a node's status), --cluster-redis redis://HOST:PORT (the cluster's nodes), or both");
                return 2;
            }
            var code = 0;
            if (node is not null)
            {
                var (token, error) = AdminClient.ReadToken(parse.GetValue(tokenFile));
                if (error is not null)
                {
                    await Console.Error.WriteLineAsync("hoard: " + error);
                    return 2;
                }
                code = Math.Max(code, await NodeAsync(node, token, ct));
            }
            if (cluster is not null)
            {
                code = Math.Max(code, await ClusterAsync(cluster));
            }
            return code;
        });
        return command;
    }

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    private static async Task<int> NodeAsync(string url, string? token, CancellationToken ct)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
        {
            await Console.Error.WriteLineAsync($"hoard: --url '{url}': expected http://HOST:PORT or https://HOST:PORT");
            return 2;
        }
        NodeStatus? status;
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            if (token is not null)
            {
                http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            }
            status = await http.GetFromJsonAsync(new Uri(baseUrl, StatusEndpoint.Path + (token is null ? "" : "?artifacts=1")), StatusJson.Default.NodeStatus, ct);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException or NotSupportedException)
        {
            await Console.Error.WriteLineAsync($"hoard: {baseUrl}: {e.Message}");
            return 1;
        }
        if (status is null)
        {
            await Console.Error.WriteLineAsync($"hoard: {baseUrl}: an empty answer");
            return 1;
        }
        Console.Write(Describe(baseUrl, status));
        return 0;
    }

    /// <summary>The node's status as a person reads it.</summary>
    public static string Describe(Uri node, NodeStatus s)
    {
        static string Size(long bytes) => ValueParsers.FormatSize(bytes);
        static string Percent(double? ratio) => ratio is { } r ? (r * 100).ToString("0.0", CultureInfo.InvariantCulture) + "%" : "—";
        var uptime = TimeSpan.FromSeconds(s.UptimeSeconds);
        var lines = new List<string>
        {
            $"hoard {s.Version}{(s.Commit is { } c ? $" (commit {c[..Math.Min(12, c.Length)]})" : "")} at {node}, up {(int)uptime.TotalDays}d {uptime.Hours}h {uptime.Minutes}m",
            $"store: {Size(s.Store.Bytes)} of {Size(s.Store.MaxBytes)} ({Percent(s.Store.MaxBytes == 0 ? null : (double)s.Store.Bytes / s.Store.MaxBytes)}), {s.Store.Blobs} blobs, {s.Store.Keys} keys, {s.Store.GitMirrors} git mirrors ({Size(s.Store.GitMirrorBytes)})",
            $"hit ratio: {Percent(s.HitRatio)} of requests, {Percent(s.ByteHitRatio)} of bytes; saved {Size(s.Bytes.Saved)} (served {Size(s.Bytes.ServedFromStore + s.Bytes.ServedFromUpstream + s.Bytes.ServedCoalesced + s.Bytes.ServedFromPeers)}, fetched {Size(s.Bytes.FetchedFromUpstream)} from upstreams)",
        };
        foreach (var (protocol, outcomes) in s.Requests.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            lines.Add($"  {protocol}: " + string.Join(", ", outcomes.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value}")));
        }
        lines.Add($"downloads in flight: {s.DownloadsInFlight}");
        lines.Add($"pins: {s.Pins.Count}, keeping {Size(s.Pins.Bytes)} of at most {Size(s.Pins.MaxBytes)}{(s.Pins.Count > 0 && s.Pins.Pins is null ? " (names with the admin token)" : "")}");
        foreach (var pin in s.Pins.Pins ?? [])
        {
            lines.Add($"  pinned {pin.Kind} {pin.Name}: {Size(pin.Bytes)} in {pin.Blobs - pin.Missing} blobs{(pin.Missing > 0 ? $", {pin.Missing} missing (hoard pin it again)" : "")}");
        }
        foreach (var u in s.Upstreams)
        {
            lines.Add($"upstream {u.Name} ({u.Protocol}): {u.Requests} requests, {u.Failed} failed, {Size(u.Bytes)} downloaded{(u.Requests > 0 && u.Failed * 2 > u.Requests ? "  <- failing" : "")}");
        }
        if (s.ClusterNodes is { } nodes)
        {
            lines.Add($"cluster: {nodes} live node(s)");
        }
        if (s.Cluster is { } cluster)
        {
            if (!cluster.RedisReachable)
            {
                lines.Add("cluster: Redis cannot be reached; the nodes last seen:");
            }
            foreach (var n in cluster.Nodes)
            {
                var beat = n.HeartbeatAgeSeconds is { } age ? $", heartbeat {age.ToString("0", CultureInfo.InvariantCulture)} s ago" : "";
                var store = n.StoreBytes is { } bytes ? $", store {Size(bytes)} ({n.StoreBlobs} blobs)" : "";
                var traffic = n.Self ? " (this node)" : $", served to it {Size(n.ServedToBytes)}, fetched from it {Size(n.FetchedFromBytes)}";
                lines.Add($"  node {n.Id}  {n.Url ?? "(no address)"}  {n.State}{beat}{store}{traffic}");
            }
        }
        return string.Join('\n', lines) + "\n";
    }

    private static async Task<int> ClusterAsync(string url)
    {
        if (Hoard.Core.Cluster.RedisUrl.Problem(url) is not null)
        {
            await Console.Error.WriteLineAsync("hoard: --cluster-redis redis://[USER:PASSWORD@]HOST:PORT[/DB] (or rediss:// for TLS) is needed");
            return 2;
        }
        try
        {
            var config = Hoard.Core.Cluster.RedisUrl.Parse(url);
            config.ConnectTimeout = 3000;
            await using var mux = await ConnectionMultiplexer.ConnectAsync(config);
            var nodes = await Hoard.Core.Cluster.ClusterNode.StatusAsync(mux.GetDatabase(), mux.GetServers()[0]);
            Console.WriteLine($"{nodes.Count} live node(s)");
            foreach (var (id, nodeUrl, blobs) in nodes)
            {
                Console.WriteLine($"{id}  {nodeUrl}  {blobs} blob(s)");
            }
            return 0;
        }
        catch (RedisException e)
        {
            await Console.Error.WriteLineAsync("hoard: " + e.Message);
            return 1;
        }
    }
}
