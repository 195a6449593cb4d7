namespace Hoard.Core.Storage;

/// <summary>Start-up reconciliation of rows against files, and the check a hit makes until it is done.</summary>
public sealed partial class CacheIndex
{
    /// <summary>True once <see cref="Reconcile"/> has checked every row and file since start.</summary>
    public bool Reconciled => Volatile.Read(ref _reconciled);

    private bool _reconciled;

    /// <summary>
    /// Makes the index agree with the files: deletes blob files no row names (a crash between rename and insert
    /// leaves those), drops rows whose blob file is missing or has the wrong size. Runs in the background after start
    /// while requests are served: each digest is decided under its lock, so a commit or an eviction of it in the
    /// meantime is never undone; a request meeting a missing file first is a miss (<see cref="HasFile"/>).
    /// </summary>
    public (int DroppedRows, int DeletedFiles) Reconcile(ContentStore store, CancellationToken ct = default)
    {
        var onDisk = new Dictionary<Sha256Digest, long>();
        var deleted = 0;
        foreach (var (name, size) in store.Scan())
        {
            ct.ThrowIfCancellationRequested();
            if (!ContentStore.IsDigest(name))
            {
                continue; // not a name this process gives: nothing reads it, and it is not ours to delete
            }
            var digest = Sha256Digest.Parse(name);
            lock (LockFor(name))
            {
                if (_blobs.Get(digest) is not null)
                {
                    onDisk[digest] = size;
                }
                else if (File.Exists(store.BlobPath(name)))
                {
                    File.Delete(store.BlobPath(name));
                    deleted++;
                }
            }
        }
        var dropped = 0;
        foreach (var blob in _blobs.Records().ToList())
        {
            ct.ThrowIfCancellationRequested();
            if (onDisk.TryGetValue(blob.DigestValue, out var size) && size == blob.Size)
            {
                continue;
            }
            // Not seen by the scan, or another size: looked at again under the lock (it may be new since the scan).
            dropped += DropIfFileMissing(blob, store) ? 1 : 0;
        }
        Volatile.Write(ref _reconciled, true);
        return (dropped, deleted);
    }

    /// <summary>
    /// Whether the blob's file is there, as the index says. Until the start-up reconciliation is done, checked on
    /// disk (one stat per hit, for those seconds only): a blob whose file is gone is dropped, and the request is a miss.
    /// </summary>
    public bool HasFile(BlobRecord blob, ContentStore store)
    {
        if (Reconciled || File.Exists(store.BlobPath(blob.Digest)))
        {
            return true;
        }
        // Missing as far as this request is concerned (a miss), whether this drops the row or another caller did.
        DropIfFileMissing(blob, store); // the lock only when it looks missing
        return false;
    }

    private bool DropIfFileMissing(BlobRecord blob, ContentStore store)
    {
        lock (LockFor(blob))
        {
            if (!ReferenceEquals(_blobs.Get(blob.DigestValue), blob))
            {
                return false;
            }
            var file = new FileInfo(store.BlobPath(blob.Digest));
            if (file.Exists && file.Length == blob.Size)
            {
                return false;
            }
            RemoveBlobs([blob]);
            store.Delete(blob.Digest);
            return true;
        }
    }
}
