namespace Hoard.Core.Storage;

/// <summary>
/// Least-recently-used order in O(1), without a lock on the hit path. Blobs sit in a doubly linked list in the order
/// they were put at the head. A hit only writes the blob's LastAccessMs and sets its Referenced flag. The evictor
/// looks at the tail: a tail used since it was queued (Referenced) has the flag cleared and moves to the head, and the
/// next tail is looked at; a tail not used since is the least recently used blob of all, because every other blob
/// was queued later and was used at or after its queueing. Each hit costs at most one later move.
/// (docker distribution's lru.go is the same list and map, moved on every hit under a lock.)
/// </summary>
public sealed partial class CacheIndex
{
    private readonly Lock _lruLock = new();
    private BlobRecord? _lruHead;
    private BlobRecord? _lruTail;

    /// <summary>
    /// How many blobs one eviction step removes: one SQLite transaction, one set of digest locks. Small enough that a
    /// commit waiting for one of those locks waits for 64 file deletions at most.
    /// </summary>
    private const int EvictionBatch = 64;

    private void LruAdd(BlobRecord blob)
    {
        lock (_lruLock)
        {
            LruAddLocked(blob);
        }
    }

    private void LruAddLocked(BlobRecord blob)
    {
        if (blob.InLru || blob.Pinned)
        {
            return;
        }
        blob.Referenced = false;
        blob.LruPrev = null;
        blob.LruNext = _lruHead;
        if (_lruHead is not null)
        {
            _lruHead.LruPrev = blob;
        }
        _lruHead = blob;
        _lruTail ??= blob;
        blob.InLru = true;
    }

    /// <summary>Puts a blob back at the tail, where it was taken from (it is still the least recently used).</summary>
    private void LruAddTailLocked(BlobRecord blob)
    {
        if (blob.InLru || blob.Pinned)
        {
            return;
        }
        blob.LruNext = null;
        blob.LruPrev = _lruTail;
        if (_lruTail is not null)
        {
            _lruTail.LruNext = blob;
        }
        _lruTail = blob;
        _lruHead ??= blob;
        blob.InLru = true;
    }

    private void LruRemoveLocked(BlobRecord blob)
    {
        if (!blob.InLru)
        {
            return;
        }
        if (blob.LruPrev is null)
        {
            _lruHead = blob.LruNext;
        }
        else
        {
            blob.LruPrev.LruNext = blob.LruNext;
        }
        if (blob.LruNext is null)
        {
            _lruTail = blob.LruPrev;
        }
        else
        {
            blob.LruNext.LruPrev = blob.LruPrev;
        }
        blob.LruPrev = blob.LruNext = null;
        blob.InLru = false;
    }

    /// <summary>
    /// Takes the least recently used blob off the list (moving blobs used since they were queued to the head on the
    /// way), or null when there is none or it was used at or after <paramref name="usedBeforeMs"/>.
    /// </summary>
    private BlobRecord? TakeLeastRecentlyUsedLocked(long usedBeforeMs)
    {
        while (_lruTail is { } tail)
        {
            if (tail.Referenced)
            {
                LruRemoveLocked(tail);
                LruAddLocked(tail);
                continue;
            }
            if (tail.LastAccessMs >= usedBeforeMs)
            {
                return null;
            }
            LruRemoveLocked(tail);
            return tail;
        }
        return null;
    }

    /// <summary>
    /// Evicts least recently used blobs until the store holds at most <paramref name="targetBytes"/>, in batches.
    /// Blobs being read are skipped (their readers make TryMarkEvicted fail) and keep their place; blobs being written
    /// are not indexed yet. Only blobs last used before <paramref name="usedBeforeMs"/> go (what else counts toward
    /// the limit, a git mirror used at that time, goes before the rest). <paramref name="deleteFile"/> runs for each
    /// evicted blob under its digest's lock, after its rows are gone.
    /// </summary>
    public List<BlobRecord> EvictTo(long targetBytes, long usedBeforeMs = long.MaxValue, Action<BlobRecord>? deleteFile = null)
    {
        var evicted = new List<BlobRecord>();
        // Blobs being read are passed over for this pass and put back where they were, oldest at the tail, after it.
        var inUse = new List<BlobRecord>();
        try
        {
            EvictBatches(targetBytes, usedBeforeMs, deleteFile, evicted, inUse);
        }
        finally
        {
            // Also when a batch failed (the disk full at this very moment): blobs in use must not fall off the list.
            lock (_lruLock)
            {
                for (var i = inUse.Count - 1; i >= 0; i--)
                {
                    if (ReferenceEquals(_blobs.Get(inUse[i].DigestValue), inUse[i]))
                    {
                        LruAddTailLocked(inUse[i]);
                    }
                }
            }
        }
        return evicted;
    }

    private void EvictBatches(long targetBytes, long usedBeforeMs, Action<BlobRecord>? deleteFile, List<BlobRecord> evicted, List<BlobRecord> inUse)
    {
        while (TotalBytes > targetBytes)
        {
            var batch = new List<BlobRecord>(EvictionBatch);
            long planned = 0;
            lock (_lruLock)
            {
                while (batch.Count < EvictionBatch && TotalBytes - planned > targetBytes && TakeLeastRecentlyUsedLocked(usedBeforeMs) is { } blob)
                {
                    batch.Add(blob);
                    planned += blob.Size;
                }
            }
            if (batch.Count == 0)
            {
                break;
            }
            evicted.AddRange(EvictBatch(batch, deleteFile, inUse));
        }
    }

    /// <summary>
    /// Removes a batch: takes the digests' locks in stripe order (no deadlock with another batch or a commit), marks
    /// each blob evicted unless a reader holds it, deletes the rows of all in one transaction, then the files.
    /// </summary>
    private List<BlobRecord> EvictBatch(List<BlobRecord> batch, Action<BlobRecord>? deleteFile, List<BlobRecord> inUse)
    {
        var stripes = batch.Select(b => b.DigestValue.FirstByte).Distinct().Order().Select(i => _digestLocks[i]).ToList();
        foreach (var stripe in stripes)
        {
            stripe.Enter();
        }
        try
        {
            var removed = new List<BlobRecord>(batch.Count);
            foreach (var blob in batch)
            {
                if (!ReferenceEquals(_blobs.Get(blob.DigestValue), blob))
                {
                    // Dropped since it was taken off the list (its file found missing), perhaps committed again as a
                    // new record since: that one is not this eviction's to remove.
                    continue;
                }
                if (blob.Pinned)
                {
                    continue; // pinned after it was taken off the list (under this same digest lock): it stays, off the list
                }
                if (blob.TryMarkEvicted())
                {
                    removed.Add(blob);
                }
                else if (!blob.IsEvicted)
                {
                    inUse.Add(blob);
                }
            }
            try
            {
                RemoveBlobs(removed);
            }
            catch
            {
                // The rows could not be deleted (SQLITE_FULL, most likely now): the blobs stay, usable, in their place.
                lock (_lruLock)
                {
                    for (var i = removed.Count - 1; i >= 0; i--)
                    {
                        removed[i].UnmarkEvicted();
                        LruAddTailLocked(removed[i]);
                    }
                }
                throw;
            }
            foreach (var blob in removed)
            {
                deleteFile?.Invoke(blob);
            }
            return removed;
        }
        finally
        {
            foreach (var stripe in stripes)
            {
                stripe.Exit();
            }
        }
    }
}
