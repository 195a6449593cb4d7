using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace Hoard.Core.Metrics;

/// <summary>
/// Where a response's bytes came from; the value of Cache-Status and of the metrics' outcome label. New values go at
/// the end: the per-request counters and the header tables are indexed by value.
/// </summary>
public enum CacheOutcome
{
    None,
    Hit,
    Miss,
    Coalesced,
    Revalidated,
    Stale,
    /// <summary>Not cached by design or by necessity: a push passed through, or the store cannot write.</summary>
    Bypass,
    /// <summary>Hoard (or upstream, through it) failed the request: a 5xx, or a body cut off.</summary>
    Error,
    /// <summary>A download whose bytes came from another node of the cluster.</summary>
    Peer,
    /// <summary>
    /// What exists, asked upstream every time so clients see it current: git info/refs and ls-refs, an LFS batch,
    /// an image's tag list.
    /// </summary>
    Discovery,
}

/// <summary>
/// Prometheus counters kept as plain longs. The per-request counters are fixed arrays indexed by
/// enum so the hot path does one Interlocked.Add; the rarer labelled series (per upstream) use a dictionary.
/// Every series that names an upstream also names its protocol: upstream names are unique per protocol only (a
/// Gitea configured both as registry "gitea" and as git upstream "gitea"), so the name alone would merge the two.
/// </summary>
public sealed partial class HoardMetrics
{
    public static readonly string[] Protocols = ["pypi", "files", "oci", "git", "admin"];

    /// <summary>hoard_build_info{version,commit} 1: which build answers (the commit the SDK recorded at build time).</summary>
    private static readonly string BuildInfo = MakeBuildInfo();

    private static string MakeBuildInfo() =>
        "# HELP hoard_build_info The running build: its version and the git commit it was built from.\n# TYPE hoard_build_info gauge\n"
        + $"hoard_build_info{{version=\"{Hosting.BuildVersion.Version}\",commit=\"{Hosting.BuildVersion.Commit ?? "unknown"}\"}} 1\n";

    private static readonly int OutcomeCount = Enum.GetValues<CacheOutcome>().Length;

    private readonly long[] _requests = new long[Protocols.Length * OutcomeCount];
    private long _bytesFromCache;
    private long _bytesFromUpstream;
    private long _bytesFromPeers;
    private long _bytesCoalesced;
    private readonly ConcurrentDictionary<string, Counter> _labelled = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Protocol, string Upstream), Counter> _upstreamBytes = new();
    private readonly ConcurrentDictionary<(string Protocol, string Upstream), Histogram> _latency = new();

    public Func<(long Bytes, long Blobs, long Entries)>? StoreGauge { get; set; }

    /// <summary>--max-size: what hoard_store_bytes (plus hoard_git_mirror_bytes) is kept under.</summary>
    public long StoreMaxBytes { get; set; }

    /// <summary>Downloads running now (one per artifact, however many clients share it).</summary>
    public Func<int>? InFlightGauge { get; set; }

    /// <summary>
    /// Every counter family, declared with its help text whether or not it has a series yet: dashboards and alerts
    /// can rely on the name, and a family with no labels starts at 0 (an alert on its rate sees the first event).
    /// </summary>
    private static readonly (string Name, string Help, bool Labelled)[] CounterFamilies =
    [
        ("hoard_upstream_requests_total", "Upstream requests by protocol, upstream and result.", true),
        ("hoard_upstream_errors_total", "Upstream failures by protocol, upstream and reason (status, connect, timeout, body, too_large, digest_mismatch, ...).", true),
        ("hoard_upstream_bytes_total", "Bytes downloaded from each upstream, by protocol and upstream.", true),
        ("hoard_upstream_resumes_total", "Broken upstream bodies resumed with a Range request, by protocol and upstream.", true),
        ("hoard_oci_requests_total", "Image registry requests by registry and cache outcome.", true),
        ("hoard_git_requests_total", "Git requests by kind and result.", true),
        ("hoard_git_mirror_fetches_total", "Git mirror clones and fetches by upstream and result.", true),
        ("hoard_git_mirror_fetch_seconds_total", "Time spent in git mirror clones and fetches, in seconds, by upstream.", true),
        ("hoard_peer_bytes_total", "Bytes fetched from other cluster nodes.", false),
        ("hoard_peer_requests_total", "Requests to other cluster nodes by node and result.", true),
        ("hoard_peer_resumes_total", "Downloads from a peer resumed from another node.", false),
        ("hoard_cluster_lock_takeovers_total", "Cluster download locks taken over from a node that stopped renewing them.", false),
        ("hoard_stale_served_total", "Responses served from a stale copy because upstream could not answer, by protocol.", true),
        ("hoard_digest_mismatch_total", "Downloads whose sha256 was not what the index or cluster said (not stored), by protocol.", true),
        ("hoard_store_write_errors_total", "Store writes that failed (then served without storing for 30 s).", false),
        ("hoard_store_evictions_total", "Blobs evicted, least recently used first.", false),
        ("hoard_store_evicted_bytes_total", "Bytes of evicted blobs.", false),
    ];
    public Func<long>? AccessLogDropped { get; set; }

    /// <summary>Git mirrors on disk: they count toward --max-size beside the blobs.</summary>
    public Func<(long Bytes, int Mirrors)>? GitMirrorGauge { get; set; }

    public static int ProtocolIndex(string protocol) => Array.IndexOf(Protocols, protocol) is var i and >= 0 ? i : Protocols.Length - 1;

    public void Request(int protocol, CacheOutcome outcome) => Interlocked.Increment(ref _requests[protocol * OutcomeCount + (int)outcome]);

    /// <summary>A request answered: counted, and its duration (to the last byte) observed by protocol and outcome.</summary>
    public void Request(int protocol, CacheOutcome outcome, double seconds)
    {
        var i = protocol * OutcomeCount + (int)outcome;
        Interlocked.Increment(ref _requests[i]);
        _durations[i].Observe(seconds);
    }

    private readonly Histogram[] _durations = Enumerable.Range(0, Protocols.Length * OutcomeCount).Select(_ => new Histogram()).ToArray();

    public void ServedFromCache(long bytes) => Interlocked.Add(ref _bytesFromCache, bytes);

    public void ServedFromUpstream(long bytes) => Interlocked.Add(ref _bytesFromUpstream, bytes);

    /// <summary>Bytes sent to a client that joined a download another request started: upstream sent them once for all.</summary>
    public void ServedCoalesced(long bytes) => Interlocked.Add(ref _bytesCoalesced, bytes);

    /// <summary>Bytes sent to clients from a download whose source was another node (cluster mode).</summary>
    public void ServedFromPeer(long bytes) => Interlocked.Add(ref _bytesFromPeers, bytes);

    public long ServedFromPeerBytes => Interlocked.Read(ref _bytesFromPeers);

    /// <param name="protocol">The protocol whose upstream this is (pypi, files, oci, git): names are unique per protocol only.</param>
    public void UpstreamRequest(string protocol, string upstream, string result, TimeSpan latency)
    {
        Add($"hoard_upstream_requests_total{{protocol=\"{protocol}\",upstream=\"{upstream}\",result=\"{result}\"}}", 1);
        _latency.GetOrAdd((protocol, upstream), static _ => new Histogram()).Observe(latency.TotalSeconds);
    }

    public void UpstreamError(string protocol, string upstream, string reason)
    {
        Add($"hoard_upstream_errors_total{{protocol=\"{protocol}\",upstream=\"{upstream}\",reason=\"{reason}\"}}", 1);
        Remember($"{protocol} upstream {upstream}: {reason.Replace('_', ' ')}");
    }

    private readonly ConcurrentQueue<(DateTimeOffset At, string What)> _recent = new();

    /// <summary>The last 20 problems (upstream errors, stale serves), newest first, for the dashboard.</summary>
    public List<(DateTimeOffset At, string What)> RecentProblems() => _recent.Reverse().ToList();

    private void Remember(string what)
    {
        _recent.Enqueue((DateTimeOffset.UtcNow, what));
        while (_recent.Count > 20 && _recent.TryDequeue(out _))
        {
        }
    }

    /// <summary>
    /// hoard_upstream_bytes_total of one upstream, kept by protocol and upstream name: a download looks it up once and
    /// adds each chunk to it, with no series name built per chunk.
    /// </summary>
    public Counter UpstreamBytes(string protocol, string upstream) =>
        _upstreamBytes.GetOrAdd((protocol, upstream), static (key, self) => self.Series($"hoard_upstream_bytes_total{{protocol=\"{key.Protocol}\",upstream=\"{key.Upstream}\"}}"), this);

    /// <summary>Image requests by registry and outcome (the per-protocol counter has no registry label).</summary>
    public void OciRequest(string registry, CacheOutcome outcome) =>
        Add($"hoard_oci_requests_total{{registry=\"{registry}\",outcome=\"{outcome.ToString().ToLowerInvariant()}\"}}", 1);

    public void Git(string kind, string result) => Add($"hoard_git_requests_total{{kind=\"{kind}\",result=\"{result}\"}}", 1);

    /// <summary>
    /// A git mirror's clone or fetch. Its series carry protocol="git" although the family is git's alone, so every
    /// series that names an upstream can be matched with the others on (protocol, upstream).
    /// </summary>
    public void GitMirrorFetch(string upstream, string result, TimeSpan duration)
    {
        Add($"hoard_git_mirror_fetches_total{{protocol=\"git\",upstream=\"{upstream}\",result=\"{result}\"}}", 1);
        // Kept in microseconds, shown in seconds (base units): see MicrosecondFamilies.
        Add($"hoard_git_mirror_fetch_seconds_total{{protocol=\"git\",upstream=\"{upstream}\"}}", (long)(duration.TotalMilliseconds * 1000));
    }

    /// <summary>Live nodes seen at the last heartbeat (cluster mode), else 0.</summary>
    public int ClusterSize { get; set; }

    public void FromPeers(long bytes) => Add("hoard_peer_bytes_total", bytes);

    public void PeerFetch(string node, string result) => Add($"hoard_peer_requests_total{{node=\"{node[..8]}\",result=\"{result}\"}}", 1);

    /// <summary>A peer's body broke off and the rest came from another node with Range.</summary>
    public void PeerResumed() => Add("hoard_peer_resumes_total", 1);

    /// <summary>The node holding a digest's download lock was unreachable: its lock was released for another.</summary>
    public void LockTakenOver() => Add("hoard_cluster_lock_takeovers_total", 1);

    public void StaleServed(string protocol)
    {
        Add($"hoard_stale_served_total{{protocol=\"{protocol}\"}}", 1);
        Remember($"{protocol}: served a stale copy (upstream could not answer)");
    }

    public void DigestMismatch(string protocol) => Add($"hoard_digest_mismatch_total{{protocol=\"{protocol}\"}}", 1);

    public void StoreWriteError() => Add("hoard_store_write_errors_total", 1);

    public void Evicted(long bytes)
    {
        Add("hoard_store_evictions_total", 1);
        Add("hoard_store_evicted_bytes_total", bytes);
    }

    public void Resumed(string protocol, string upstream) => Add($"hoard_upstream_resumes_total{{protocol=\"{protocol}\",upstream=\"{upstream}\"}}", 1);

    /// <summary>Requests by protocol and outcome, those counted so far (for /_hoard/status).</summary>
    public Dictionary<string, Dictionary<string, long>> RequestCounts()
    {
        var counts = new Dictionary<string, Dictionary<string, long>>(StringComparer.Ordinal);
        for (var p = 0; p < Protocols.Length; p++)
        {
            for (var o = 1; o < OutcomeCount; o++)
            {
                var v = Interlocked.Read(ref _requests[p * OutcomeCount + o]);
                if (v > 0)
                {
                    (counts.TryGetValue(Protocols[p], out var byOutcome) ? byOutcome : counts[Protocols[p]] = new(StringComparer.Ordinal))[((CacheOutcome)o).ToString().ToLowerInvariant()] = v;
                }
            }
        }
        return counts;
    }

    /// <summary>Body bytes sent to clients, by where they came from (as hoard_served_bytes_total).</summary>
    public (long Store, long Upstream, long Coalesced, long Peer) ServedBytes() =>
        (Interlocked.Read(ref _bytesFromCache), Interlocked.Read(ref _bytesFromUpstream), Interlocked.Read(ref _bytesCoalesced), Interlocked.Read(ref _bytesFromPeers));

    /// <summary>
    /// Per upstream (a protocol and a name: the same name under two protocols is two upstreams): requests, failed
    /// requests (no answer, a timeout or a 5xx) and bytes downloaded.
    /// </summary>
    public List<(string Protocol, string Upstream, long Requests, long Failed, long Bytes)> UpstreamTotals()
    {
        var totals = new Dictionary<(string Protocol, string Upstream), (long Requests, long Failed, long Bytes)>();
        foreach (var (series, counter) in _labelled)
        {
            if (series.StartsWith("hoard_upstream_requests_total{", StringComparison.Ordinal)
                && LabelValue(series, "protocol") is { } protocol && LabelValue(series, "upstream") is { } name)
            {
                var t = totals.GetValueOrDefault((protocol, name));
                var failed = LabelValue(series, "result") is "error" or "timeout" or "5xx";
                totals[(protocol, name)] = (t.Requests + counter.Value, t.Failed + (failed ? counter.Value : 0), t.Bytes);
            }
        }
        foreach (var (key, counter) in _upstreamBytes)
        {
            var t = totals.GetValueOrDefault(key);
            totals[key] = (t.Requests, t.Failed, t.Bytes + counter.Value);
        }
        return totals.OrderBy(t => t.Key.Upstream, StringComparer.Ordinal).ThenBy(t => t.Key.Protocol, StringComparer.Ordinal)
            .Select(t => (t.Key.Protocol, t.Key.Upstream, t.Value.Requests, t.Value.Failed, t.Value.Bytes)).ToList();
    }

    private static string? LabelValue(string series, string label)
    {
        var start = series.IndexOf(label + "=\"", StringComparison.Ordinal);
        if (start < 0)
        {
            return null;
        }
        start += label.Length + 2;
        var end = series.IndexOf('"', start);
        return end < 0 ? null : series[start..end];
    }

    public long Get(string series) => _labelled.TryGetValue(series, out var counter) ? counter.Value : 0;

    public long GetRequests(string protocol, CacheOutcome outcome) =>
        Interlocked.Read(ref _requests[ProtocolIndex(protocol) * OutcomeCount + (int)outcome]);

    private void Add(string series, long value) => Series(series).Add(value);

    private Counter Series(string series) => _labelled.GetOrAdd(series, static _ => new Counter());

    /// <summary>Prometheus text exposition format 0.0.4.</summary>
    public string Render()
    {
        var sb = new StringBuilder(4096);
        sb.Append(BuildInfo);
        using (var self = System.Diagnostics.Process.GetCurrentProcess())
        {
            Single(sb, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.", new DateTimeOffset(self.StartTime.ToUniversalTime()).ToUnixTimeSeconds());
            Single(sb, "process_resident_memory_bytes", "gauge", "Resident memory size.", self.WorkingSet64);
            Single(sb, "process_cpu_seconds_total", "counter", "User and system CPU time spent.", self.TotalProcessorTime.TotalSeconds);
        }
        RenderRuntime(sb);
        sb.Append("# HELP hoard_requests_total Client requests by protocol and cache outcome.\n# TYPE hoard_requests_total counter\n");
        for (var p = 0; p < Protocols.Length; p++)
        {
            for (var o = 1; o < OutcomeCount; o++)
            {
                var v = Interlocked.Read(ref _requests[p * OutcomeCount + o]);
                sb.Append(CultureInfo.InvariantCulture, $"hoard_requests_total{{protocol=\"{Protocols[p]}\",outcome=\"{((CacheOutcome)o).ToString().ToLowerInvariant()}\"}} {v}\n");
            }
        }
        // Where each byte a client received came from: the store; a download this client started (or a pass-through),
        // which upstream sent for it; a download another client started (sent by upstream once for all of them); a
        // download from another node. Bytes saved = all served minus hoard_upstream_bytes_total.
        sb.Append("# HELP hoard_served_bytes_total Body bytes sent to clients by source: store, upstream (a download this request started, or a pass-through), coalesced (joined another request's download), peer (a download from another node).\n# TYPE hoard_served_bytes_total counter\n");
        sb.Append(CultureInfo.InvariantCulture, $"hoard_served_bytes_total{{source=\"store\"}} {Interlocked.Read(ref _bytesFromCache)}\n");
        sb.Append(CultureInfo.InvariantCulture, $"hoard_served_bytes_total{{source=\"upstream\"}} {Interlocked.Read(ref _bytesFromUpstream)}\n");
        sb.Append(CultureInfo.InvariantCulture, $"hoard_served_bytes_total{{source=\"coalesced\"}} {Interlocked.Read(ref _bytesCoalesced)}\n");
        sb.Append(CultureInfo.InvariantCulture, $"hoard_served_bytes_total{{source=\"peer\"}} {Interlocked.Read(ref _bytesFromPeers)}\n");
        if (StoreGauge is { } gauge)
        {
            var (bytes, blobs, entries) = gauge();
            Single(sb, "hoard_store_bytes", "gauge", "Bytes of committed blobs.", bytes);
            Single(sb, "hoard_store_blobs", "gauge", "Committed blobs.", blobs);
            Single(sb, "hoard_store_entries", "gauge", "Keys naming committed blobs.", entries);
        }
        if (GitMirrorGauge is { } git)
        {
            var (bytes, count) = git();
            Single(sb, "hoard_git_mirror_bytes", "gauge", "Bytes of git mirrors on disk (counted toward --max-size with hoard_store_bytes).", bytes);
            Single(sb, "hoard_git_mirrors", "gauge", "Git mirrors on disk.", count);
        }
        if (ClusterSize > 0)
        {
            Single(sb, "hoard_cluster_nodes", "gauge", "Live cluster nodes at the last heartbeat.", ClusterSize);
        }
        if (AccessLogDropped is { } dropped)
        {
            Single(sb, "hoard_access_log_dropped_total", "counter", "Access-log lines dropped because the output could not keep up.", dropped());
        }
        var families = _labelled.OrderBy(kv => kv.Key, StringComparer.Ordinal).GroupBy(kv => Family(kv.Key)).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
        foreach (var (name, help, labelled) in CounterFamilies)
        {
            sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} counter\n");
            if (families.Remove(name, out var series))
            {
                Series(sb, name, series);
            }
            else if (!labelled)
            {
                sb.Append(CultureInfo.InvariantCulture, $"{name} 0\n");
            }
        }
        foreach (var (name, series) in families)
        {
            sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} (not described)\n# TYPE {name} counter\n");
            Series(sb, name, series);
        }
        if (StoreMaxBytes > 0)
        {
            Single(sb, "hoard_store_max_bytes", "gauge", "The store's size limit (--max-size), for blobs and git mirrors together.", StoreMaxBytes);
        }
        if (InFlightGauge is { } inFlight)
        {
            Single(sb, "hoard_downloads_in_flight", "gauge", "Downloads running now, one per artifact however many clients share it.", inFlight());
        }
        sb.Append("# HELP hoard_request_duration_seconds Time from a request's arrival to its last byte sent, by protocol and cache outcome.\n# TYPE hoard_request_duration_seconds histogram\n");
        for (var p = 0; p < Protocols.Length; p++)
        {
            for (var o = 1; o < OutcomeCount; o++)
            {
                if (_durations[p * OutcomeCount + o] is { Count: > 0 } h)
                {
                    h.Render(sb, "hoard_request_duration_seconds", $"protocol=\"{Protocols[p]}\",outcome=\"{((CacheOutcome)o).ToString().ToLowerInvariant()}\"");
                }
            }
        }
        sb.Append("# HELP hoard_upstream_latency_seconds Time from upstream request to response headers, by protocol and upstream.\n# TYPE hoard_upstream_latency_seconds histogram\n");
        foreach (var ((protocol, upstream), h) in _latency.OrderBy(kv => kv.Key.Protocol, StringComparer.Ordinal).ThenBy(kv => kv.Key.Upstream, StringComparer.Ordinal))
        {
            h.Render(sb, "hoard_upstream_latency_seconds", $"protocol=\"{protocol}\",upstream=\"{upstream}\"");
        }
        return sb.ToString();
    }

    /// <summary>A family of one unlabelled series: HELP, TYPE and its value.</summary>
    private static void Single(StringBuilder sb, string name, string type, string help, object value) =>
        sb.Append(CultureInfo.InvariantCulture, $"# HELP {name} {help}\n# TYPE {name} {type}\n{name} {value}\n");

    private static void Series(StringBuilder sb, string family, List<KeyValuePair<string, Counter>> series)
    {
        foreach (var (line, counter) in series)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{line} {Exposed(family, counter.Value)}\n");
        }
    }
}
