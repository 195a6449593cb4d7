using Microsoft.Extensions.Logging;

namespace Hoard.Core.Fetch;

/// <summary>Eviction: what keeps the store under its limit, during downloads and after each commit.</summary>
public sealed partial class FetchEngine
{
    /// <summary>How often a download makes room in the store for the bytes it has written.</summary>
    private const long EvictionStep = 8L * 1024 * 1024;

    /// <summary>Evicts so the store plus the bytes a download has written stay under the limit.</summary>
    private void MakeRoom(long written) => Evict(Math.Max(0, _options.MaxSizeBytes - written));

    public void EvictIfNeeded() => Evict(_options.MaxSizeBytes);

    /// <summary>
    /// Evicts least recently used first, blobs and git mirrors (<see cref="Mirrors"/>) in one order: blobs used
    /// before the oldest idle mirror, then that mirror, and so on until the store is under the target.
    /// </summary>
    private void Evict(long target)
    {
        long Over() => _index.TotalBytes + (Mirrors?.Bytes ?? 0) - target;
        if (Over() <= 0)
        {
            return;
        }
        // One eviction at a time: two would pick the same oldest mirror, and the loser would evict blobs out of order.
        lock (_evictionLock)
        {
            EvictLocked(target, Over);
        }
    }

    private readonly Lock _evictionLock = new();

    private void EvictLocked(long target, Func<long> Over)
    {
        while (Over() > 0)
        {
            var oldest = Mirrors?.LeastRecentlyUsed();
            EvictBlobs(target - (Mirrors?.Bytes ?? 0), oldest?.LastUsedMs ?? long.MaxValue);
            if (Over() <= 0)
            {
                return;
            }
            if (oldest is not { } mirror || !Mirrors!.TryEvict(mirror.Id))
            {
                // No idle mirror left (or it was taken meanwhile): what remains to free is blobs, whatever their age.
                EvictBlobs(target - (Mirrors?.Bytes ?? 0), long.MaxValue);
                return;
            }
        }
    }

    /// <summary>Tests: called for each evicted blob after its row is gone and before its file is deleted.</summary>
    internal Action<string>? EvictionStep_ForTests { get; set; }

    private void EvictBlobs(long target, long usedBeforeMs)
    {
        foreach (var blob in _index.EvictTo(Math.Max(0, target), usedBeforeMs, blob =>
        {
            EvictionStep_ForTests?.Invoke(blob.Digest);
            _store.Delete(blob.Digest);
        }))
        {
            Cluster?.Evicted(blob.Digest);
            _metrics.Evicted(blob.Size);
            LogEvicted(_logger, blob.Digest, blob.Size);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Evicted sha256:{Digest} ({Size} bytes)")]
    private static partial void LogEvicted(ILogger logger, string digest, long size);
}
