using System.Collections.Concurrent;
using System.Diagnostics;
using Hoard.Core.Configuration;
using Hoard.Core.Metrics;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Git;

/// <summary>
/// Non-shallow bare mirrors of upstream repositories under {data}/git, holding the refs clones need (heads and tags
/// by default, see <see cref="HoardOptions.GitRefs"/>) 1:1 with upstream; objects of other refs (pull requests) are
/// fetched when a client wants them. One clone or fetch per repository at a time; callers that find one running
/// wait for it and check again instead of fetching twice. Readers (upload-pack) keep working while a fetch runs:
/// git writes objects before it moves refs.
/// </summary>
public sealed partial class GitMirror(HoardOptions options, HoardMetrics metrics, Fetch.FetchEngine engine, TimeProvider time, ILogger<GitMirror> logger)
{
    private readonly ConcurrentDictionary<string, Task<bool>> _fetches = new(StringComparer.Ordinal);
    private readonly string _root = Path.Combine(Path.GetFullPath(options.DataDir), "git");

    /// <summary>The mirrors' disk use, counted toward --max-size; callers hold a lease while they use a mirror.</summary>
    public GitMirrorSpace Space { get; } = new(Path.Combine(Path.GetFullPath(options.DataDir), "git"), time, logger);

    public SemaphoreSlim Processes { get; } = new(options.GitMaxProcesses);

    /// <summary>
    /// Slots for upload-packs that answer other cluster nodes: a pool of their own, so two nodes each holding their
    /// slots while fetching from the other cannot wait on each other.
    /// </summary>
    public SemaphoreSlim PeerProcesses { get; } = new(options.GitMaxProcesses);

    /// <summary>The cluster, when there is one: other nodes' mirrors to start new ones from; set at start-up.</summary>
    public IGitMirrorPeers? Peers { get; set; }

    /// <summary>The upstream name and repository path of a mirror directory (the inverse of <see cref="PathOf"/>).</summary>
    public (string Upstream, string Repository) NameOf(string mirror)
    {
        var relative = Path.GetRelativePath(_root, mirror).Replace(Path.DirectorySeparatorChar, '/');
        var slash = relative.IndexOf('/', StringComparison.Ordinal);
        var repository = relative[(slash + 1)..];
        return (relative[..slash], repository.EndsWith(".bare", StringComparison.Ordinal) ? repository[..^".bare".Length] : repository);
    }

    /// <summary>
    /// Wanted objects a fetch did not bring (made up, or of a ref deleted since), per mirror, for a minute: a client
    /// asking for them again gets upload-pack's "not our ref" without another fetch. Bounded: clients choose the ids.
    /// </summary>
    private readonly MemoryCache _absent = new(new MemoryCacheOptions { SizeLimit = 50_000, CompactionPercentage = 0.25 });
    private static readonly TimeSpan AbsentFor = TimeSpan.FromMinutes(1);

    public bool KnownAbsent(string mirror, IEnumerable<string> objects) => objects.All(o => _absent.TryGetValue(mirror + "|" + o, out _));

    public void RememberAbsent(string mirror, IEnumerable<string> objects)
    {
        foreach (var o in objects)
        {
            _absent.Set(mirror + "|" + o, true, new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = AbsentFor });
        }
    }

    /// <summary>Mirrors whose last fetch failed: how many times in a row, and when one may be tried again.</summary>
    private readonly ConcurrentDictionary<string, (int Failures, long RetryAt)> _failed = new(StringComparer.Ordinal);

    private void RecordOutcome(string mirror, bool ok)
    {
        if (ok)
        {
            _failed.TryRemove(mirror, out _);
            return;
        }
        var failures = _failed.TryGetValue(mirror, out var last) ? last.Failures + 1 : 1;
        var backoff = TimeSpan.FromSeconds(Math.Min(300, 10 * Math.Pow(2, Math.Min(failures - 1, 10))));
        if (_failed.Count > 10_000)
        {
            // Bounded: forget the failures whose back-off is over.
            foreach (var (key, value) in _failed)
            {
                if (Stopwatch.GetTimestamp() > value.RetryAt)
                {
                    _failed.TryRemove(new KeyValuePair<string, (int, long)>(key, value));
                }
            }
        }
        _failed[mirror] = (failures, Stopwatch.GetTimestamp() + (long)(backoff.TotalSeconds * Stopwatch.Frequency));
    }

    /// <summary>The shortest time between two fetches of one mirror.</summary>
    public static readonly TimeSpan MinFetchInterval = TimeSpan.FromSeconds(2);

    /// <summary>When each mirror's last fetch ended (a timestamp); bounded, see <see cref="RememberFetch"/>.</summary>
    private readonly ConcurrentDictionary<string, long> _lastFetchEnded = new(StringComparer.Ordinal);

    private void RememberFetch(string mirror)
    {
        if (_lastFetchEnded.Count > 10_000)
        {
            // Only recent fetches matter: forget the ones older than the interval.
            foreach (var (key, at) in _lastFetchEnded)
            {
                if (Stopwatch.GetElapsedTime(at) > MinFetchInterval)
                {
                    _lastFetchEnded.TryRemove(new KeyValuePair<string, long>(key, at));
                }
            }
        }
        _lastFetchEnded[mirror] = Stopwatch.GetTimestamp();
    }

    /// <summary>The mirror's directory for a validated repository path; never outside {data}/git.</summary>
    public string PathOf(UpstreamSpec upstream, string repository)
    {
        // One directory per repository name, never two names to one: `x.git` is kept as it is (the common case, and
        // where older versions put it); `x` becomes `x.bare`, not `x.git`, because on many servers `x` and `x.git` are
        // different repositories, and one's mirror must never answer for the other.
        var path = Path.GetFullPath(Path.Combine(_root, upstream.Name, repository.EndsWith(".git", StringComparison.Ordinal) ? repository : repository + ".bare"));
        if (!path.StartsWith(_root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw new InvalidOperationException("repository path escapes the mirror root");
        }
        return path;
    }

    public bool Exists(string mirror) => File.Exists(Path.Combine(mirror, "HEAD"));

    /// <summary>Objects (and want-ref refs) the mirror lacks. The check runs git, so it waits for a process slot.</summary>
    public async Task<List<string>> MissingAsync(string mirror, IReadOnlyList<string> objects, IReadOnlyList<string> refs, CancellationToken ct)
    {
        if (objects.Count + refs.Count == 0)
        {
            return []; // nothing to look up: no git process, so no wait for a slot
        }
        await Processes.WaitAsync(ct);
        try
        {
            return await MissingHoldingSlotAsync(mirror, objects, refs, ct);
        }
        finally
        {
            Processes.Release();
        }
    }

    /// <summary>As <see cref="MissingAsync"/>, for a caller that already holds a process slot.</summary>
    private async Task<List<string>> MissingHoldingSlotAsync(string mirror, IReadOnlyList<string> objects, IReadOnlyList<string> refs, CancellationToken ct)
    {
        var missing = new List<string>();
        if (!Exists(mirror))
        {
            missing.AddRange(objects);
            missing.AddRange(refs);
            return missing;
        }
        if (objects.Count > 0)
        {
            using var p = Process.Start(GitProcess.Start(["-C", mirror, "cat-file", "--batch-check"]))!;
            var read = p.StandardOutput.ReadToEndAsync(ct);
            foreach (var oid in objects)
            {
                await p.StandardInput.WriteLineAsync(oid.AsMemory(), ct);
            }
            p.StandardInput.Close();
            var output = await read;
            await p.WaitForExitAsync(ct);
            missing.AddRange(output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.EndsWith(" missing", StringComparison.Ordinal)).Select(l => l.Split(' ')[0]));
        }
        if (refs.Count > 0)
        {
            // One process for all of them (the caller bounds how many): the refs that exist, by exact name.
            var (_, output, _) = await GitProcess.RunAsync(["-C", mirror, "for-each-ref", "--format=%(refname)", .. refs], null, ct);
            var present = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
            missing.AddRange(refs.Where(r => !present.Contains(r)));
        }
        return missing;
    }

    /// <summary>A refresh's outcome: whether the fetch succeeded, and whether it was one started for another request (its wants, not these).</summary>
    public readonly record struct Refresh(bool Ok, bool Joined);

    /// <summary>
    /// Clones or fetches the mirror, joining one already running for this repository. A repository whose last fetch
    /// failed is not tried again until its back-off has passed (10 s, doubling up to 5 minutes): a broken upstream costs
    /// one fetch per back-off, not one per request. Maintenance and eviction run after the waiting clients have
    /// their answer, never in front of them.
    /// </summary>
    public async Task<Refresh> RefreshAsync(UpstreamSpec upstream, string repository, string mirror, string? authorization, IReadOnlyList<string> wants)
    {
        if (_failed.TryGetValue(mirror, out var failed) && Stopwatch.GetTimestamp() < failed.RetryAt)
        {
            LogBackingOff(logger, upstream.Name, repository, Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), failed.RetryAt).TotalSeconds);
            return new(false, false);
        }
        var created = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var task = _fetches.GetOrAdd(mirror, created.Task);
        if (!ReferenceEquals(task, created.Task))
        {
            return new(await task, true);
        }
        _ = Task.Run(async () =>
        {
            var ok = false;
            try
            {
                using (Space.Use(mirror))
                {
                    ok = await FetchAsync(upstream, repository, mirror, authorization, wants);
                    Space.Measure(mirror);
                }
                RecordOutcome(mirror, ok);
                if (ok)
                {
                    Peers?.MirrorHeld(upstream.Name, repository, held: true);
                }
            }
            catch (Exception e)
            {
                LogFetchFailed(logger, upstream.Name, repository, e.Message);
                RecordOutcome(mirror, ok: false);
            }
            finally
            {
                _fetches.TryRemove(new KeyValuePair<string, Task<bool>>(mirror, created.Task));
                created.TrySetResult(ok);
            }
            try
            {
                if (ok)
                {
                    await MaintainAsync(upstream, repository, mirror);
                }
                // The mirror grew: the store (blobs and mirrors) makes room, least recently used first.
                engine.EvictIfNeeded();
            }
            catch (Exception e)
            {
                LogAfterFetchFailed(logger, upstream.Name, repository, e.Message);
            }
        });
        return new(await created.Task, false);
    }

    /// <summary>Mirrors whose maintenance is running: one at a time each.</summary>
    private readonly ConcurrentDictionary<string, bool> _maintaining = new(StringComparer.Ordinal);

    /// <summary>The longest a mirror's maintenance (a repack, on a big repository) may take before it is killed.</summary>
    private static readonly TimeSpan MaintenanceLimit = TimeSpan.FromMinutes(30);

    /// <summary>
    /// `git maintenance run --auto` (gc when loose objects or packs pile up), after a fetch, in a process slot and under
    /// a lease, after the clients that waited for the fetch have been answered.
    /// </summary>
    private async Task MaintainAsync(UpstreamSpec upstream, string repository, string mirror)
    {
        if (!_maintaining.TryAdd(mirror, true))
        {
            return;
        }
        try
        {
            await Processes.WaitAsync();
            try
            {
                using var lease = Space.Use(mirror);
                using var limit = new CancellationTokenSource(MaintenanceLimit, time);
                var (code, _, error) = await GitProcess.RunAsync(["-C", mirror, "maintenance", "run", "--auto", "--quiet"], null, limit.Token);
                if (code != 0)
                {
                    LogAfterFetchFailed(logger, upstream.Name, repository, "git maintenance: " + error.Trim());
                }
                Space.Measure(mirror);
            }
            catch (OperationCanceledException)
            {
                LogAfterFetchFailed(logger, upstream.Name, repository, $"git maintenance took longer than {MaintenanceLimit.TotalMinutes:0} minutes; killed");
            }
            finally
            {
                Processes.Release();
            }
        }
        finally
        {
            _maintaining.TryRemove(mirror, out _);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git mirror {Upstream}/{Repository}: after the fetch: {Error}")]
    private static partial void LogAfterFetchFailed(ILogger logger, string upstream, string repository, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git mirror {Upstream}/{Repository}: last fetch failed; not trying again for {Seconds:0} s")]
    private static partial void LogBackingOff(ILogger logger, string upstream, string repository, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Git mirror {Upstream}/{Repository} updated in {Ms:0} ms")]
    private static partial void LogFetched(ILogger logger, string upstream, string repository, double ms);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git mirror {Upstream}/{Repository}: fetch failed: {Error}")]
    private static partial void LogFetchFailed(ILogger logger, string upstream, string repository, string error);
}
