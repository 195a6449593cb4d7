using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>What a running download asks of the engine: the index, the flights and the cluster stay the engine's.</summary>
internal interface IFillHost
{
    IClusterPeers? Cluster { get; }

    /// <summary>Upstream's ETag for a stale key being revalidated.</summary>
    string? StaleETag(string key);

    /// <summary>Upstream answered 304: the stale entry is fresh again.</summary>
    void Revalidated(EntryRecord stale);

    /// <summary>Renames the verified temp file in and records the blob under its keys.</summary>
    (BlobRecord? Blob, Exception? Failure) Commit(string tempPath, string digest, long size, List<EntryTemplate> keys, bool anonymous);

    /// <summary>The download has written this many bytes: room for them, if the store is full.</summary>
    void MakeRoom(long written);

    /// <summary>A blob was committed (the evictor may need waking).</summary>
    void Committed();

    /// <summary>The store failed a write: serve without storing for a while.</summary>
    void StorageDegraded();

    void RememberFailure(string flightKey, int status, string message, TimeSpan ttl);

    /// <summary>The download has ended: the next request for it starts a new one.</summary>
    void Finished(Fill fill);
}
