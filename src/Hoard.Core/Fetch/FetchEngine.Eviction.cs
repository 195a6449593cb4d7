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

    private void Evict(long target)
    {
        if (_index.TotalBytes <= target)
        {
            return;
        }
        foreach (var blob in _index.EvictTo(target))
        {
            _store.Delete(blob.Digest);
            Cluster?.Evicted(blob.Digest);
            _metrics.Evicted(blob.Size);
            LogEvicted(_logger, blob.Digest, blob.Size);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Evicted sha256:{Digest} ({Size} bytes)")]
    private static partial void LogEvicted(ILogger logger, string digest, long size);
}
