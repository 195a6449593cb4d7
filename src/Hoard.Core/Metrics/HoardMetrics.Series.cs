using System.Globalization;
using System.Text;

namespace Hoard.Core.Metrics;

// The series types and the runtime figures that Render writes, apart so the main file stays readable.
public sealed partial class HoardMetrics
{
    /// <summary>.NET runtime figures an operator looks at when memory or latency goes wrong: GC and thread pool.</summary>
    private static void RenderRuntime(StringBuilder sb)
    {
        sb.Append("# HELP dotnet_gc_collections_total Garbage collections by generation.\n# TYPE dotnet_gc_collections_total counter\n");
        for (var gen = 0; gen <= GC.MaxGeneration; gen++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"dotnet_gc_collections_total{{generation=\"{gen}\"}} {GC.CollectionCount(gen)}\n");
        }
        var info = GC.GetGCMemoryInfo();
        Single(sb, "dotnet_gc_heap_size_bytes", "gauge", "Managed heap size after the last collection.", info.HeapSizeBytes);
        Single(sb, "dotnet_gc_pause_seconds_total", "counter", "Time the process has spent paused for garbage collection.", GC.GetTotalPauseDuration().TotalSeconds);
        Single(sb, "dotnet_gc_allocated_bytes_total", "counter", "Bytes allocated on the managed heap.", GC.GetTotalAllocatedBytes());
        Single(sb, "dotnet_threadpool_threads", "gauge", "Thread-pool threads now.", ThreadPool.ThreadCount);
        Single(sb, "dotnet_threadpool_queue_length", "gauge", "Work items waiting for a thread-pool thread.", ThreadPool.PendingWorkItemCount);
        Single(sb, "dotnet_threadpool_completed_items_total", "counter", "Work items the thread pool has run.", ThreadPool.CompletedWorkItemCount);
    }

    /// <summary>Families whose counters hold microseconds and are exposed in seconds.</summary>
    private static readonly HashSet<string> MicrosecondFamilies = new(StringComparer.Ordinal) { "hoard_git_mirror_fetch_seconds_total" };

    private static string Exposed(string family, long value) =>
        MicrosecondFamilies.Contains(family) ? (value / 1e6).ToString("0.######", CultureInfo.InvariantCulture) : value.ToString(CultureInfo.InvariantCulture);

    private static string Family(string series) => series.IndexOf('{', StringComparison.Ordinal) is var i and > 0 ? series[..i] : series;

    /// <summary>One labelled series, as a handle a hot path keeps instead of naming the series on every add.</summary>
    public sealed class Counter
    {
        private long _value;

        public long Value => Interlocked.Read(ref _value);

        public void Add(long value) => Interlocked.Add(ref _value, value);
    }

    private sealed class Histogram
    {
        private static readonly double[] Bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
        private readonly long[] _counts = new long[Bounds.Length + 1];
        private long _sumMicros;

        public long Count => _counts.Sum();

        public void Observe(double seconds)
        {
            var i = 0;
            while (i < Bounds.Length && seconds > Bounds[i])
            {
                i++;
            }
            Interlocked.Increment(ref _counts[i]);
            Interlocked.Add(ref _sumMicros, (long)(seconds * 1e6));
        }

        public void Render(StringBuilder sb, string name, string labels)
        {
            long cumulative = 0;
            for (var i = 0; i < Bounds.Length; i++)
            {
                cumulative += Interlocked.Read(ref _counts[i]);
                sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{labels},le=\"{Bounds[i]}\"}} {cumulative}\n");
            }
            cumulative += Interlocked.Read(ref _counts[^1]);
            sb.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n");
            sb.Append(CultureInfo.InvariantCulture, $"{name}_sum{{{labels}}} {Interlocked.Read(ref _sumMicros) / 1e6}\n");
            sb.Append(CultureInfo.InvariantCulture, $"{name}_count{{{labels}}} {cumulative}\n");
        }
    }
}
