using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>
/// The engine's side of a download (<see cref="FillRunner"/> runs it): committing the verified file under the
/// digest's lock, and the index, flight and failure bookkeeping the runner asks for.
/// </summary>
public sealed partial class FetchEngine : IFillHost
{
    string? IFillHost.StaleETag(string key) => _index.LoadUpstreamETag(key);

    void IFillHost.Revalidated(EntryRecord stale) => _index.Touch(stale, NowMs);

    (BlobRecord? Blob, Exception? Failure) IFillHost.Commit(string tempPath, string digest, long size, List<EntryTemplate> keys, bool anonymous) =>
        CommitBlob(tempPath, digest, size, keys, anonymous);

    void IFillHost.MakeRoom(long written) => MakeRoom(written);

    void IFillHost.Committed()
    {
        _index.FollowMovedPins();
        EvictIfNeeded();
    }

    void IFillHost.StorageDegraded() => Interlocked.Exchange(ref _storageDegradedUntilMs, NowMs + 30_000);

    void IFillHost.RememberFailure(string flightKey, int status, string message, TimeSpan ttl) => RememberFailure(flightKey, status, message, ttl);

    void IFillHost.Finished(Fill fill) => _flights.TryRemove(new KeyValuePair<string, Fill>(fill.Request.FlightKey, fill));

    /// <summary>
    /// Renames the verified file in and records it, under the digest's lock: an eviction of the same digest (row out,
    /// then file deleted) happens wholly before or wholly after, never between, so it can never delete the file of a
    /// blob committed again meanwhile.
    /// </summary>
    private (BlobRecord? Blob, Exception? Failure) CommitBlob(string tempPath, string digest, long size, List<EntryTemplate> aliases, bool anonymous)
    {
        lock (_index.LockFor(digest))
        {
            try
            {
                _store.Commit(tempPath, digest);
            }
            catch (IOException e)
            {
                return (null, e);
            }
            try
            {
                return (_index.Commit(digest, size, NowMs, aliases, anonymous), null);
            }
            catch (Exception e) when (e is Microsoft.Data.Sqlite.SqliteException or IOException)
            {
                // The index could not record it (the disk filled up at this very step): like any other write failure,
                // the clients keep their bytes and nothing unindexed stays in the store. The renamed file goes back to
                // its temp name, where late readers still find it until the temp file is cleaned up.
                if (!_index.TryGetBlob(digest, out _))
                {
                    UnCommit(tempPath, digest);
                }
                return (null, e);
            }
        }
    }

    private void UnCommit(string tempPath, string digest)
    {
        try
        {
            File.Move(_store.BlobPath(digest), tempPath);
        }
        catch (IOException)
        {
            _store.Delete(digest);
        }
    }
}
