using Hoard.Core.Metrics;

namespace Hoard.Tests.Unit;

/// <summary>
/// Upstream names are unique per protocol only: one server configured as registry "gitea" and as git upstream "gitea"
/// is two upstreams, and every series naming an upstream (and the status summary built from them) keeps them apart.
/// </summary>
public sealed class MetricsTests
{
    [Fact]
    public void Two_upstreams_with_one_name_and_different_protocols_have_distinct_series()
    {
        var metrics = new HoardMetrics();
        metrics.UpstreamRequest("oci", "gitea", "5xx", TimeSpan.FromMilliseconds(3));
        metrics.UpstreamRequest("oci", "gitea", "2xx", TimeSpan.FromMilliseconds(3));
        metrics.UpstreamRequest("git", "gitea", "2xx", TimeSpan.FromSeconds(2));
        metrics.UpstreamError("oci", "gitea", "status");
        metrics.UpstreamBytes("oci", "gitea").Add(100);
        metrics.UpstreamBytes("git", "gitea").Add(7000);
        metrics.UpstreamBytes("git", "gitea").Add(1);
        metrics.Resumed("git", "gitea");
        metrics.GitMirrorFetch("gitea", "ok", TimeSpan.FromSeconds(1));

        // One handle per (protocol, upstream): a download's chunks land on its own protocol's series only.
        Assert.Same(metrics.UpstreamBytes("git", "gitea"), metrics.UpstreamBytes("git", "gitea"));
        Assert.NotSame(metrics.UpstreamBytes("git", "gitea"), metrics.UpstreamBytes("oci", "gitea"));

        var text = metrics.Render();
        Assert.Contains("\nhoard_upstream_requests_total{protocol=\"oci\",upstream=\"gitea\",result=\"5xx\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_requests_total{protocol=\"oci\",upstream=\"gitea\",result=\"2xx\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_requests_total{protocol=\"git\",upstream=\"gitea\",result=\"2xx\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_errors_total{protocol=\"oci\",upstream=\"gitea\",reason=\"status\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_bytes_total{protocol=\"oci\",upstream=\"gitea\"} 100\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_bytes_total{protocol=\"git\",upstream=\"gitea\"} 7001\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_resumes_total{protocol=\"git\",upstream=\"gitea\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_git_mirror_fetches_total{protocol=\"git\",upstream=\"gitea\",result=\"ok\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_latency_seconds_count{protocol=\"oci\",upstream=\"gitea\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_latency_seconds_count{protocol=\"git\",upstream=\"gitea\"} 1\n", text, StringComparison.Ordinal);
        // The registry's fast answers and the git server's slow one are not one distribution.
        Assert.Contains("\nhoard_upstream_latency_seconds_bucket{protocol=\"oci\",upstream=\"gitea\",le=\"0.005\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("\nhoard_upstream_latency_seconds_bucket{protocol=\"git\",upstream=\"gitea\",le=\"1\"} 0\n", text, StringComparison.Ordinal);
        // No series names an upstream without its protocol.
        Assert.DoesNotContain(text.Split('\n'), l => l.Contains("upstream=\"", StringComparison.Ordinal) && !l.Contains("protocol=\"", StringComparison.Ordinal));

        // The status summary: two upstreams, each with its own requests, failures and bytes.
        var totals = metrics.UpstreamTotals();
        Assert.Equal(2, totals.Count);
        Assert.Contains(("git", "gitea", 1L, 0L, 7001L), totals);
        Assert.Contains(("oci", "gitea", 2L, 1L, 100L), totals);
        Assert.Contains(metrics.RecentProblems(), p => p.What == "oci upstream gitea: status");
    }
}
