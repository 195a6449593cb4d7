using System.Text.RegularExpressions;
using Hoard.Core.Storage;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Git;

/// <summary>
/// What the git mirrors under {data}/git take on disk and when each was last used, so that they count toward
/// --max-size and are evicted whole, least recently used first, alongside blobs. A mirror in use (a fetch, an
/// upload-pack, a check) holds a lease and is never evicted under it; an evicted mirror is re-created on demand.
/// One lock for all: leases are taken per git request, which costs far more than the lock.
/// </summary>
public sealed partial class GitMirrorSpace(string root, TimeProvider time, ILogger logger) : IEvictableSpace
{
    private sealed class Mirror
    {
        public long Bytes;
        public long LastUsedMs;
        public long PersistedUsedMs;
        public int Leases;
    }

    /// <summary>Touched on use (at most once a minute), so a restart knows which mirrors were used last.</summary>
    private const string UsedMarker = "hoard-used";

    /// <summary>A clone bundle being made, inside its mirror; one a crash left is removed at start.</summary>
    public const string BundlePrefix = "hoard-bundle-";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Mirror> _mirrors = new(StringComparer.Ordinal);
    private long _bytes;

    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>Called with a mirror's directory once it has been evicted (the cluster drops its holder record).</summary>
    public Action<string>? Evicted { get; set; }

    /// <summary>The directories of the mirrors on disk.</summary>
    public List<string> Mirrors
    {
        get
        {
            lock (_lock)
            {
                return [.. _mirrors.Where(m => m.Value.Bytes > 0).Select(m => m.Key)];
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _mirrors.Count(m => m.Value.Bytes > 0);
            }
        }
    }

    private long NowMs => time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Start-up: finds the mirrors on disk and their sizes, and removes clones and evictions a crash left.</summary>
    public void Scan()
    {
        if (!Directory.Exists(root))
        {
            return;
        }
        var pending = new Stack<(string Dir, int Depth)>([(root, 0)]);
        while (pending.TryPop(out var item))
        {
            foreach (var dir in Directory.EnumerateDirectories(item.Dir))
            {
                var name = Path.GetFileName(dir);
                if (LeftOver().IsMatch(name))
                {
                    Directory.Delete(dir, recursive: true);
                }
                else if (File.Exists(Path.Combine(dir, "HEAD")) && Directory.Exists(Path.Combine(dir, "objects")))
                {
                    foreach (var bundle in Directory.EnumerateFiles(dir, BundlePrefix + "*"))
                    {
                        File.Delete(bundle);
                    }
                    var marker = Path.Combine(dir, UsedMarker);
                    var used = new DateTimeOffset(File.Exists(marker) ? File.GetLastWriteTimeUtc(marker) : Directory.GetLastWriteTimeUtc(dir)).ToUnixTimeMilliseconds();
                    lock (_lock)
                    {
                        _mirrors[dir] = new Mirror { LastUsedMs = used, PersistedUsedMs = used };
                    }
                    Measure(dir);
                }
                else if (item.Depth < 12)
                {
                    pending.Push((dir, item.Depth + 1));
                }
            }
        }
    }

    /// <summary>Marks the mirror used now and keeps it from eviction until the lease is disposed.</summary>
    public Lease Use(string mirror)
    {
        var now = NowMs;
        bool persist;
        lock (_lock)
        {
            if (!_mirrors.TryGetValue(mirror, out var m))
            {
                _mirrors[mirror] = m = new Mirror();
            }
            m.Leases++;
            m.LastUsedMs = now;
            persist = m.Bytes > 0 && now - m.PersistedUsedMs > 60_000;
            if (persist)
            {
                m.PersistedUsedMs = now;
            }
        }
        if (persist)
        {
            try
            {
                File.WriteAllBytes(Path.Combine(mirror, UsedMarker), []);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Only the order of evictions after a restart depends on it; the lease is taken either way.
            }
        }
        return new Lease(this, mirror);
    }

    private void Release(string mirror)
    {
        lock (_lock)
        {
            if (_mirrors.TryGetValue(mirror, out var m) && --m.Leases == 0 && m.Bytes == 0)
            {
                _mirrors.Remove(mirror);
            }
        }
    }

    /// <summary>Sums the mirror's files (after a fetch or a repack changed them).</summary>
    public void Measure(string mirror)
    {
        long size = 0;
        if (Directory.Exists(mirror))
        {
            try
            {
                size = new DirectoryInfo(mirror).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
            }
            catch (IOException)
            {
                // A file went while counting (git replaces packs): counted at the next fetch.
                return;
            }
        }
        lock (_lock)
        {
            if (_mirrors.TryGetValue(mirror, out var m))
            {
                Interlocked.Add(ref _bytes, size - m.Bytes);
                m.Bytes = size;
            }
        }
    }

    /// <summary>Mirrors a pin keeps (`hoard pin --git`): replaced whole by the engine whenever pins change.</summary>
    private HashSet<string> _pinned = new(StringComparer.Ordinal);

    public void SetPinned(IReadOnlyCollection<string> names)
    {
        var ids = names.Select(IdOf).OfType<string>().ToHashSet(StringComparer.Ordinal);
        lock (_lock)
        {
            _pinned = ids;
        }
    }

    public long BytesOf(string name)
    {
        lock (_lock)
        {
            return IdOf(name) is { } id && _mirrors.TryGetValue(id, out var m) ? m.Bytes : 0;
        }
    }

    /// <summary>Relative to the mirrors' root ("up/team/app.git"): pins name mirrors so, not by absolute path.</summary>
    public string NameOf(string id) => Path.GetRelativePath(root, id);

    /// <summary>The mirror's directory for a name, or null for one that would lie outside the root (a tampered row).</summary>
    private string? IdOf(string name)
    {
        var id = Path.GetFullPath(Path.Combine(root, name));
        return id.StartsWith(Path.GetFullPath(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal) ? id : null;
    }

    public (string Id, long LastUsedMs)? LeastRecentlyUsed()
    {
        lock (_lock)
        {
            (string, long)? oldest = null;
            foreach (var (path, m) in _mirrors)
            {
                if (m.Leases == 0 && m.Bytes > 0 && !_pinned.Contains(path) && (oldest is null || m.LastUsedMs < oldest.Value.Item2))
                {
                    oldest = (path, m.LastUsedMs);
                }
            }
            return oldest;
        }
    }

    /// <summary>Renames the mirror out of the way (atomic: no reader ever sees half of it), then deletes it.</summary>
    public bool TryEvict(string id)
    {
        string trash;
        long bytes;
        lock (_lock)
        {
            // Pinned since the evictor chose it (it chose before evicting the blobs used before it): kept.
            if (!_mirrors.TryGetValue(id, out var m) || m.Leases > 0 || _pinned.Contains(id))
            {
                return false;
            }
            trash = Path.Combine(root, ".evicted-" + Guid.NewGuid().ToString("N"));
            try
            {
                Directory.Move(id, trash);
            }
            catch (IOException)
            {
                return false;
            }
            _mirrors.Remove(id);
            bytes = m.Bytes;
            Interlocked.Add(ref _bytes, -bytes);
        }
        LogEvicted(logger, Path.GetRelativePath(root, id), bytes);
        Evicted?.Invoke(id);
        _ = Task.Run(() => Directory.Delete(trash, recursive: true));
        return true;
    }

    public readonly struct Lease(GitMirrorSpace space, string mirror) : IDisposable
    {
        public void Dispose() => space.Release(mirror);
    }

    /// <summary>What a crash can leave beside the mirrors: a clone being made (NAME.tmp-GUID), an eviction being deleted.</summary>
    [GeneratedRegex("(\\.tmp-[0-9a-f]{32}$)|(^\\.evicted-[0-9a-f]{32}$)")]
    private static partial Regex LeftOver();

    [LoggerMessage(Level = LogLevel.Information, Message = "Evicted git mirror {Mirror} ({Bytes} bytes), least recently used")]
    private static partial void LogEvicted(ILogger logger, string mirror, long bytes);
}
