using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Storage;

/// <summary>
/// Eviction: one background evictor keeps the store between a low-water mark (90% of --max-size) and a high-water mark
/// (95%): a commit past the high mark wakes it, and it evicts down to the low mark, in batches, while requests go on.
/// A download waits for eviction only when the store plus what it has written would pass --max-size itself.
/// Blobs and git mirrors (<see cref="Mirrors"/>) leave in one least-recently-used order.
/// </summary>
public sealed partial class Evictor(CacheIndex index, ContentStore store, long maxSizeBytes, ILogger logger, CancellationToken shutdown)
{
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly Lock _evictionLock = new();
    private Task? _running;

    private long HighWater => maxSizeBytes / 100 * 95;
    private long LowWater => maxSizeBytes / 100 * 90;

    /// <summary>Git mirrors: disk space that counts toward --max-size and is evicted with blobs; set at start-up.</summary>
    public IEvictableSpace? Mirrors { get; set; }

    /// <summary>Called for each evicted blob, after its file is gone (metrics, the cluster's holder records).</summary>
    public Action<BlobRecord>? Evicted { get; set; }

    /// <summary>Tests: called for each evicted blob after its row is gone and before its file is deleted.</summary>
    internal Action<string>? Step_ForTests { get; set; }

    public long StoreBytes => index.TotalBytes + (Mirrors?.Bytes ?? 0);

    /// <summary>Makes room for a download's bytes: only when the store would actually pass its limit (the disk is full).</summary>
    public void MakeRoom(long written)
    {
        if (StoreBytes + written > maxSizeBytes)
        {
            Evict(Math.Max(0, maxSizeBytes - written));
        }
        EvictIfNeeded();
    }

    /// <summary>Wakes the background evictor when the store is past its high-water mark; never waits for it.</summary>
    public void EvictIfNeeded()
    {
        if (StoreBytes <= HighWater)
        {
            return;
        }
        if (_running is null)
        {
            lock (_wake)
            {
                _running ??= Task.Run(RunAsync);
            }
        }
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Woken already.
            }
        }
    }

    private async Task RunAsync()
    {
        try
        {
            while (true)
            {
                await _wake.WaitAsync(shutdown);
                try
                {
                    Evict(LowWater);
                }
                catch (Exception e) when (e is IOException or Microsoft.Data.Sqlite.SqliteException or UnauthorizedAccessException)
                {
                    LogEvictionFailed(logger, e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Shutting down.
        }
    }

    /// <summary>
    /// Evicts least recently used first, blobs and git mirrors in one order: blobs used before the oldest idle mirror,
    /// then that mirror, and so on until the store is under the target.
    /// </summary>
    private void Evict(long target)
    {
        long Over() => StoreBytes - target;
        if (Over() <= 0)
        {
            return;
        }
        // One eviction at a time: two would pick the same oldest mirror, and the loser would evict blobs out of order.
        lock (_evictionLock)
        {
            var started = Stopwatch.GetTimestamp();
            var (blobs, bytes) = (index.BlobCount, index.TotalBytes);
            EvictLocked(target, Over);
            LogEvictionPass(logger, blobs - index.BlobCount, bytes - index.TotalBytes, target, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    private void EvictLocked(long target, Func<long> over)
    {
        while (over() > 0)
        {
            var oldest = Mirrors?.LeastRecentlyUsed();
            EvictBlobs(target - (Mirrors?.Bytes ?? 0), oldest?.LastUsedMs ?? long.MaxValue);
            if (over() <= 0)
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

    private void EvictBlobs(long target, long usedBeforeMs)
    {
        foreach (var blob in index.EvictTo(Math.Max(0, target), usedBeforeMs, blob =>
        {
            Step_ForTests?.Invoke(blob.Digest);
            store.Delete(blob.Digest);
        }))
        {
            Evicted?.Invoke(blob);
            LogEvicted(logger, blob.Digest, blob.Size);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Eviction failed: {Error}")]
    private static partial void LogEvictionFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Evicted {Blobs} blobs ({Bytes} bytes), least recently used first, down to {Target} bytes in {Ms:0} ms")]
    private static partial void LogEvictionPass(ILogger logger, int blobs, long bytes, long target, double ms);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Evicted sha256:{Digest} ({Size} bytes)")]
    private static partial void LogEvicted(ILogger logger, string digest, long size);
}
