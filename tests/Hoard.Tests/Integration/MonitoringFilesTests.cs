using System.Text.Json;
using System.Text.RegularExpressions;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>
/// deploy/prometheus and deploy/grafana: the alerts pass promtool's check and their own unit tests, and every metric
/// the alerts and the dashboard name is one a running Hoard (a cluster node) exports, in a format promtool accepts.
/// </summary>
public sealed partial class MonitoringFilesTests
{
    [Fact]
    public async Task The_alert_rules_pass_promtool_check_and_their_unit_tests()
    {
        var dir = RepoFiles.PathOf("deploy/prometheus");
        var check = await Pip.RunAsync("promtool", ["check", "rules", Path.Combine(dir, "alerts.yml")]);
        Assert.True(check.Code == 0, check.Output);
        Assert.Contains("SUCCESS: 7 rules found", check.Output, StringComparison.Ordinal);
        var unit = await Pip.RunAsync("promtool", ["test", "rules", Path.Combine(dir, "alerts.test.yml")]);
        Assert.True(unit.Code == 0, unit.Output);
        Assert.Contains("SUCCESS", unit.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_metric_the_alerts_and_the_dashboard_use_is_exported_by_a_running_cluster_node()
    {
        using var temp = new TempDir();
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var node = await ClusterTests.StartNodeAsync(temp.Sub("node"), redis, _ => { });
        using var http = new HttpClient();
        var exposition = "";
        await FetchEngineTests.WaitUntil(() =>
        {
            exposition = http.GetStringAsync(node.BaseUrl + "/metrics").Result;
            return exposition.Contains("\nhoard_cluster_nodes 1\n", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(20));

        // The exposition itself is what Prometheus's linter accepts (HELP and TYPE for every family, names, units).
        var metricsFile = Path.Combine(temp.Path, "metrics.txt");
        await File.WriteAllTextAsync(metricsFile, exposition);
        var lint = await Pip.RunAsync("sh", ["-c", $"promtool check metrics < '{metricsFile}'"]);
        Assert.True(lint.Code == 0, lint.Output);

        // Which build answers, and since when (uptime on the dashboard).
        Assert.Matches("\nhoard_build_info\\{version=\"[0-9.]+\",commit=\"[0-9a-f]{40}\"\\} 1\n", exposition);
        Assert.Matches("\nprocess_start_time_seconds [0-9]+\n", exposition);
        // .NET runtime figures (GC, thread pool) for when memory or latency goes wrong.
        Assert.Matches("\ndotnet_gc_collections_total\\{generation=\"2\"\\} [0-9]+\n", exposition);
        Assert.Matches("\ndotnet_gc_heap_size_bytes [0-9]+\n", exposition);
        Assert.Matches("\ndotnet_threadpool_threads [0-9]+\n", exposition);

        var families = TypeLine().Matches(exposition).Select(m => (Name: m.Groups[1].Value, Type: m.Groups[2].Value)).ToDictionary(f => f.Name, f => f.Type);
        var dashboard = JsonDocument.Parse(await File.ReadAllTextAsync(RepoFiles.PathOf("deploy/grafana/hoard.json")));
        var dashboardExprs = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray()).Select(t => t.GetProperty("expr").GetString()!).ToList();
        Assert.True(dashboardExprs.Count >= 13, "the dashboard has its panels' queries");
        var alertLines = (await File.ReadAllLinesAsync(RepoFiles.PathOf("deploy/prometheus/alerts.yml"))).Where(l => !l.TrimStart().StartsWith('#'));

        var used = dashboardExprs.Concat(alertLines).SelectMany(e => MetricName().Matches(e).Select(m => m.Value)).ToHashSet();
        Assert.True(used.Count >= 15, string.Join(", ", used));
        foreach (var name in used)
        {
            var family = HistogramSuffix().Replace(name, "");
            Assert.True(families.ContainsKey(name) || (family != name && families.GetValueOrDefault(family) == "histogram"),
                $"{name} is used by a dashboard panel or an alert but {node.BaseUrl}/metrics has no such family");
        }
        // The dashboard's panels cover what an operator asks first (issue 12, point 6).
        foreach (var title in new[] { "Hit ratio by protocol", "Bytes saved", "Upstream errors", "Upstream latency", "Store fill", "Evictions", "Downloads in flight", "Cluster nodes", "Peer traffic", "Version and uptime" })
        {
            Assert.Contains(dashboard.RootElement.GetProperty("panels").EnumerateArray(), p => p.GetProperty("title").GetString()!.StartsWith(title, StringComparison.Ordinal));
        }
    }

    [GeneratedRegex(@"^# TYPE (hoard_[a-z0-9_]+) (counter|gauge|histogram)$", RegexOptions.Multiline)]
    private static partial Regex TypeLine();

    [GeneratedRegex(@"\bhoard_[a-z0-9_]+")]
    private static partial Regex MetricName();

    [GeneratedRegex("_(bucket|sum|count)$")]
    private static partial Regex HistogramSuffix();
}
