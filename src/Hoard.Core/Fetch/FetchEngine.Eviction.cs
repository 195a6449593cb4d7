using Microsoft.Extensions.Logging;

namespace Hoard.Core.Fetch;

/// <summary>
/// Eviction: one background evictor keeps the store between a low-water mark (90% of --max-size) and a high-water mark
/// (95%): a commit past the high mark wakes it, and it evicts down to the low mark, in batches, while requests go on.
/// A download waits for eviction only when the store plus what it has written would pass --max-size itself.
/// </summary>
public sealed partial class FetchEngine
{
    /// <summary>How often a download makes room in the store for the bytes it has written.</summary>
    private const long EvictionStep = 8L * 1024 * 1024;

    private long HighWater => _options.MaxSizeBytes / 100 * 95;
    private long LowWater => _options.MaxSizeBytes / 100 * 90;

    private readonly SemaphoreSlim _evictorWake = new(0, 1);
    private Task? _evictor;

    /// <summary>Makes room for a download's bytes: only when the store would actually pass its limit (the disk is full).</summary>
    private void MakeRoom(long written)
    {
        if (StoreBytes + written > _options.MaxSizeBytes)
        {
            Evict(Math.Max(0, _options.MaxSizeBytes - written));
        }
        EvictIfNeeded();
    }

    private long StoreBytes => _index.TotalBytes + (Mirrors?.Bytes ?? 0);

    /// <summary>Wakes the background evictor when the store is past its high-water mark; never waits for it.</summary>
    public void EvictIfNeeded()
    {
        if (StoreBytes <= HighWater)
        {
            return;
        }
        if (_evictor is null)
        {
            lock (_evictorWake)
            {
                _evictor ??= Task.Run(EvictorAsync);
            }
        }
        if (_evictorWake.CurrentCount == 0)
        {
            try
            {
                _evictorWake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Woken already.
            }
        }
    }

    private async Task EvictorAsync()
    {
        try
        {
            while (true)
            {
                await _evictorWake.WaitAsync(_shutdown.Token);
                try
                {
                    Evict(LowWater);
                }
                catch (Exception e) when (e is IOException or Microsoft.Data.Sqlite.SqliteException or UnauthorizedAccessException)
                {
                    LogEvictionFailed(_logger, e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Shutting down.
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Eviction failed: {Error}")]
    private static partial void LogEvictionFailed(ILogger logger, string error);

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
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var (blobs, bytes) = (_index.BlobCount, _index.TotalBytes);
            EvictLocked(target, Over);
            LogEvictionPass(_logger, blobs - _index.BlobCount, bytes - _index.TotalBytes, target, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Evicted {Blobs} blobs ({Bytes} bytes), least recently used first, down to {Target} bytes in {Ms:0} ms")]
    private static partial void LogEvictionPass(ILogger logger, int blobs, long bytes, long target, double ms);

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

    [LoggerMessage(Level = LogLevel.Debug, Message = "Evicted sha256:{Digest} ({Size} bytes)")]
    private static partial void LogEvicted(ILogger logger, string digest, long size);
}
