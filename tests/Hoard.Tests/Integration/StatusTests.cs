using System.Net.Http.Json;
using Hoard.Core.Hosting;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>`hoard status --url` for one node, and the /_hoard/status it reads.</summary>
public sealed class StatusTests
{
    [Fact]
    public async Task Status_of_a_single_node_shows_store_hit_ratio_bytes_saved_and_upstream_health()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var file = new byte[300_000];
        Random.Shared.NextBytes(file);
        await File.WriteAllBytesAsync(Path.Combine(root, "tool.tar.gz"), file);
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        await using var hoard = await HoardHost.StartAsync(temp.Sub("data"), o => PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/"));
        using var http = new HttpClient();
        // A miss, then two hits: two of three requests and two thirds of the bytes did not need upstream.
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(file, await http.GetByteArrayAsync(hoard.BaseUrl + "/files/up/tool.tar.gz"));
        }
        await hoard.SettledAsync();

        var status = await http.GetFromJsonAsync(hoard.BaseUrl + StatusEndpoint.Path, StatusJson.Default.NodeStatus);
        Assert.NotNull(status);
        await FetchEngineTests.WaitUntil(() => Hoard.Core.Hosting.StatusEndpoint.Describe(hoard.Options, hoard.Service<Hoard.Core.Fetch.FetchEngine>(), hoard.Metrics).Bytes.ServedFromStore == 2 * file.Length, TimeSpan.FromSeconds(5));
        status = await http.GetFromJsonAsync(hoard.BaseUrl + StatusEndpoint.Path, StatusJson.Default.NodeStatus);
        Assert.Equal(2.0 / 3, status!.HitRatio!.Value, 3);
        Assert.Equal(2.0 / 3, status.ByteHitRatio!.Value, 3);
        Assert.Equal(2L * file.Length, status.Bytes.Saved);
        Assert.Equal(file.Length, status.Bytes.FetchedFromUpstream);
        Assert.Equal(1, status.Store.Blobs);
        Assert.Equal(new Dictionary<string, long> { ["hit"] = 2, ["miss"] = 1 }, status.Requests["files"]);
        Assert.Contains(status.Upstreams, u => u.Name == "up" && u.Protocol == "files" && u.Requests == 1 && u.Failed == 0 && u.Bytes == file.Length);

        // The same figures as System.Diagnostics.Metrics instruments (meter "Hoard"), read by a MeterListener.
        var observed = new Dictionary<string, long>();
        using (var listener = new System.Diagnostics.Metrics.MeterListener())
        {
            listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter == hoard.Metrics.Meter)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
                observed[instrument.Name + "{" + string.Join(",", tags.ToArray().Select(t => $"{t.Key}={t.Value}")) + "}"] = value);
            listener.Start();
            listener.RecordObservableInstruments();
        }
        Assert.Equal(2, observed["hoard_requests_total{protocol=files,outcome=hit}"]);
        Assert.Equal(1, observed["hoard_requests_total{protocol=files,outcome=miss}"]);
        Assert.Equal(2L * file.Length, observed["hoard_served_bytes_total{source=store}"]);
        Assert.Equal(file.Length, observed["hoard_upstream_bytes_total{protocol=files,upstream=up}"]);

        // Each answered request's duration, by protocol and outcome.
        var metrics = hoard.Metrics.Render();
        Assert.Contains("hoard_request_duration_seconds_count{protocol=\"files\",outcome=\"hit\"} 2\n", metrics, StringComparison.Ordinal);
        Assert.Contains("hoard_request_duration_seconds_bucket{protocol=\"files\",outcome=\"miss\",le=\"+Inf\"} 1\n", metrics, StringComparison.Ordinal);

        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "status", "--url", hoard.BaseUrl]);
        Assert.True(code == 0, output);
        Assert.Matches(@"^hoard \d+\.\d+\.\d+ \(commit [0-9a-f]{12}\) at http://127\.0\.0\.1:\d+/, up 0d 0h \d+m\n", output);
        Assert.Contains("store: ", output, StringComparison.Ordinal);
        Assert.Contains(" 1 blobs, 1 keys, ", output, StringComparison.Ordinal);
        Assert.Contains("hit ratio: 66.7% of requests, 66.7% of bytes; saved ", output, StringComparison.Ordinal);
        Assert.Contains("  files: hit 2, miss 1\n", output, StringComparison.Ordinal);
        Assert.Contains("downloads in flight: 0\n", output, StringComparison.Ordinal);
        Assert.Contains("upstream up (files): 1 requests, 0 failed, ", output, StringComparison.Ordinal);

        // With nothing to ask, a clear usage line and exit 2.
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "status"], new Dictionary<string, string> { ["HOARD_URL"] = "", ["HOARD_CLUSTER_REDIS"] = "" });
        Assert.Equal(2, code);
        Assert.Contains("give --url", output, StringComparison.Ordinal);
    }
}
