using System.Diagnostics;
using System.Diagnostics.Metrics;
using Hoard.Core.Metrics;
using OpenTelemetry;
using OpenTelemetry.Metrics;

// What counting one answered request costs (a counter by protocol and outcome, and a duration histogram by the same),
// on every thread at once, three ways: Hoard's counters (HoardMetrics.Request), System.Diagnostics.Metrics instruments
// aggregated by the OpenTelemetry SDK (what its Prometheus exporter reads), and prometheus-net.
var threads = args.Length > 0 ? int.Parse(args[0]) : Environment.ProcessorCount;
const int PerThread = 5_000_000;
string[] protocols = ["pypi", "oci", "git", "files"];
string[] outcomes = ["hit", "miss", "coalesced", "revalidated"];

var hoard = new HoardMetrics();
var hoardProtocols = protocols.Select(HoardMetrics.ProtocolIndex).ToArray();
var hoardOutcomes = new[] { CacheOutcome.Hit, CacheOutcome.Miss, CacheOutcome.Coalesced, CacheOutcome.Revalidated };

using var meter = new Meter("bench");
var otelCounter = meter.CreateCounter<long>("hoard_requests");
var otelHistogram = meter.CreateHistogram<double>("hoard_request_duration", "s");
using var provider = Sdk.CreateMeterProviderBuilder().AddMeter("bench")
    .AddReader(new PeriodicExportingMetricReader(new NullExporter(), exportIntervalMilliseconds: 10_000)).Build();

var registry = Prometheus.Metrics.NewCustomRegistry();
var factory = Prometheus.Metrics.WithCustomRegistry(registry);
var promCounter = factory.CreateCounter("hoard_requests_total", "requests", "protocol", "outcome");
var promHistogram = factory.CreateHistogram("hoard_request_duration_seconds", "durations", new Prometheus.HistogramConfiguration { LabelNames = ["protocol", "outcome"] });

Measure("Hoard (Interlocked + own histogram)", (p, o, s) => hoard.Request(hoardProtocols[p], hoardOutcomes[o], s));
Measure("System.Diagnostics.Metrics + OpenTelemetry SDK", (p, o, s) =>
{
    var tags = new TagList { { "protocol", protocols[p] }, { "outcome", outcomes[o] } };
    otelCounter.Add(1, tags);
    otelHistogram.Record(s, tags);
});
Measure("prometheus-net (WithLabels per call)", (p, o, s) =>
{
    promCounter.WithLabels(protocols[p], outcomes[o]).Inc();
    promHistogram.WithLabels(protocols[p], outcomes[o]).Observe(s);
});

void Measure(string name, Action<int, int, double> record)
{
    for (var warm = 0; warm < 2; warm++)
    {
        var allocated = GC.GetTotalAllocatedBytes(precise: true);
        var clock = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var (p, o) = (t % 4, t % 2);
            for (var i = 0; i < PerThread; i++)
            {
                record(p, (o + i) & 3, 0.0004 + (i & 7) * 0.001);
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        clock.Stop();
        var calls = (double)threads * PerThread;
        if (warm == 1)
        {
            var bytes = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            Console.WriteLine($"| {name} | {clock.Elapsed.TotalNanoseconds * threads / calls:0.0} | {calls / clock.Elapsed.TotalSeconds / 1e6:0.0} | {bytes / calls:0.0} |");
        }
    }
}

internal sealed class NullExporter : BaseExporter<Metric>
{
    public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
}
