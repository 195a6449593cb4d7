using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;

namespace Hoard.Core.Metrics;

/// <summary>
/// The same figures as System.Diagnostics.Metrics instruments (meter "Hoard"), for `dotnet-counters`, an
/// OpenTelemetry collector or any MeterListener. They are observable instruments: read when a listener collects,
/// from the counters /metrics renders, so the hot path keeps its one Interlocked.Add (bench/metrics-cost: 30 ns a
/// request against 131 ns through the OpenTelemetry SDK's aggregation and 210 ns and 80 bytes with prometheus-net).
/// /metrics keeps Hoard's own writer: promtool checks it in the tests, and OpenTelemetry's Prometheus exporter for
/// ASP.NET Core is still a prerelease package.
/// </summary>
public sealed partial class HoardMetrics : IDisposable
{
    public const string MeterName = "Hoard";

    private Meter? _meter;

    /// <summary>The meter, once <see cref="PublishInstruments"/> made it (a listener tells this node's from another's).</summary>
    public Meter? Meter => _meter;
    private readonly ConcurrentDictionary<string, KeyValuePair<string, object?>[]> _tagsOfSeries = new(StringComparer.Ordinal);

    [GeneratedRegex("""(\w+)="((?:[^"\\]|\\.)*)"?""")]
    private static partial Regex LabelPattern();

    /// <summary>Creates the meter's instruments once (the host does, at start); before that nothing is published.</summary>
    public void PublishInstruments()
    {
        if (_meter is not null)
        {
            return;
        }
        var meter = new Meter(MeterName, Hosting.BuildVersion.Version);
        meter.CreateObservableCounter("hoard_requests_total", ObserveRequests, description: "Requests answered, by protocol and cache outcome.");
        meter.CreateObservableCounter("hoard_served_bytes_total", ObserveServed, "By", "Bytes sent to clients, by source: store, upstream (a download of its own), coalesced (a download another request started), peer.");
        meter.CreateObservableGauge("hoard_downloads_in_flight", () => InFlightGauge?.Invoke() ?? 0, description: "Downloads running now.");
        meter.CreateObservableGauge("hoard_store_bytes", () => StoreGauge?.Invoke().Bytes ?? 0, "By", "Bytes of blobs in the store.");
        meter.CreateObservableGauge("hoard_store_max_bytes", () => StoreMaxBytes, "By", "--max-size.");
        foreach (var (name, help, labelled) in CounterFamilies)
        {
            var family = name;
            if (MicrosecondFamilies.Contains(family))
            {
                meter.CreateObservableCounter(family, () => ObserveFamily(family, v => v / 1e6), "s", help);
            }
            else
            {
                meter.CreateObservableCounter(family, () => ObserveFamily(family, v => v), description: help);
            }
        }
        _meter = meter;
    }

    private IEnumerable<Measurement<long>> ObserveRequests()
    {
        for (var p = 0; p < Protocols.Length; p++)
        {
            for (var o = 0; o < OutcomeCount; o++)
            {
                var n = Interlocked.Read(ref _requests[p * OutcomeCount + o]);
                if (n > 0)
                {
                    yield return new Measurement<long>(n, new("protocol", Protocols[p]), new("outcome", ((CacheOutcome)o).ToString().ToLowerInvariant()));
                }
            }
        }
    }

    private IEnumerable<Measurement<long>> ObserveServed()
    {
        var (store, upstream, coalesced, peer) = ServedBytes();
        yield return new Measurement<long>(store, new KeyValuePair<string, object?>("source", "store"));
        yield return new Measurement<long>(upstream, new KeyValuePair<string, object?>("source", "upstream"));
        yield return new Measurement<long>(coalesced, new KeyValuePair<string, object?>("source", "coalesced"));
        yield return new Measurement<long>(peer, new KeyValuePair<string, object?>("source", "peer"));
    }

    private IEnumerable<Measurement<T>> ObserveFamily<T>(string family, Func<long, T> scale) where T : struct
    {
        foreach (var (series, counter) in _labelled)
        {
            if (Family(series) == family)
            {
                yield return new Measurement<T>(scale(counter.Value), TagsOf(series));
            }
        }
    }

    /// <summary>A series' labels as tags, parsed once per series (the names are Hoard's own; values were escaped when written).</summary>
    private KeyValuePair<string, object?>[] TagsOf(string series) => _tagsOfSeries.GetOrAdd(series, static s =>
    {
        var brace = s.IndexOf('{', StringComparison.Ordinal);
        return brace < 0 ? [] : LabelPattern().Matches(s[brace..]).Select(m => new KeyValuePair<string, object?>(m.Groups[1].Value, m.Groups[2].Value.Replace("\\\"", "\"").Replace("\\\\", "\\"))).ToArray();
    });

    public void Dispose() => _meter?.Dispose();
}
