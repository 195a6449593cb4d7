using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>
/// Keys a front-end manages itself: a mutable pointer (an image tag) recorded to what another key stores and confirmed
/// by upstream, and keys forgotten (a purge; a file whose upstream digest changed).
/// </summary>
public sealed partial class FetchEngine
{
    /// <summary>
    /// Points <paramref name="pointerKey"/> at the blob <paramref name="targetKey"/> stores now, with its Content-Type
    /// (a tag at the manifest it resolved to), durably: an outage after a restart still finds it. Its TTL starts now.
    /// Nothing is recorded when targetKey stores nothing (its download failed, or went through unstored), when the
    /// pointer names that blob already, or when the record fails (logged; the pointer is then only missing). Who may
    /// read the pointer is the front-end's decision, as for any key.
    /// </summary>
    /// <returns>Whether the pointer was recorded.</returns>
    public bool RecordPointer(string pointerKey, string targetKey)
    {
        if (!_index.TryGetEntry(targetKey, out var target)
            || (_index.TryGetEntry(pointerKey, out var current) && ReferenceEquals(current.Blob, target.Blob))
            // Pinned while it is recorded: a blob evicted meanwhile must not come back as a row with no file.
            || !target.Blob.TryAcquire(NowMs))
        {
            return false;
        }
        try
        {
            return RecordAlias(target.Blob, new EntryTemplate(pointerKey, target.ContentType, null, null), isPublic: false) is not null;
        }
        finally
        {
            target.Blob.Release();
            _index.FollowMovedPins(); // a pinned tag moved to this manifest: its pin follows
        }
    }

    /// <summary>
    /// <see cref="RecordPointer"/> once the target's download, if one is running, has ended: its clients have every
    /// byte as soon as it is verified, before it is stored, so a client done reading can be ahead of the commit (six
    /// concurrent pulls of a new tag all were, and the tag was never recorded: the next pull with upstream down failed).
    /// A download of <paramref name="sha256"/> under another key (a joined one) records targetKey too, as joining does.
    /// </summary>
    public async Task<bool> RecordPointerAsync(string pointerKey, string targetKey, string sha256)
    {
        if (!_index.TryGetEntry(targetKey, out _)
            && _flights.Values.FirstOrDefault(f => f.Request.Key == targetKey || f.Request.ExpectedSha256 == sha256) is { } fill)
        {
            var result = await fill.Completed;
            if (!_index.TryGetEntry(targetKey, out _) && result is { End: FillEnd.Committed, Blob: { } blob } && blob.TryAcquire(NowMs))
            {
                try
                {
                    RecordAlias(blob, new EntryTemplate(targetKey, fill.Started.Result.ContentType, null, null), fill.Request.Anonymous);
                }
                finally
                {
                    blob.Release();
                }
            }
        }
        return RecordPointer(pointerKey, targetKey);
    }

    /// <summary>
    /// Upstream confirmed that <paramref name="key"/> still names <paramref name="digest"/> (a tag's HEAD, as a 304
    /// does for a page): its TTL starts again. False when the key no longer stores that digest.
    /// </summary>
    public bool ConfirmPointer(string key, string digest)
    {
        if (!_index.TryGetEntry(key, out var entry) || entry.Blob.Digest != digest)
        {
            return false;
        }
        _index.Touch(entry, NowMs);
        return true;
    }

    /// <summary>
    /// Forgets what <paramref name="key"/> stores: its next lookup is a miss. The blob stays for any other key naming
    /// it, and is evicted in its turn. False when the key stored nothing.
    /// </summary>
    public bool Forget(string key) => _index.RemoveEntry(key);
}
