using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>Which stored or in-flight bytes a request, or a peer node asking for one, may be given.</summary>
public sealed partial class FetchEngine
{
    /// <summary>A stored blob may be given by digest to a client upstream confirmed for it, or to anyone when it is public.</summary>
    private static bool MayShare(ContentAccess access, BlobRecord blob) => access == ContentAccess.Authorised || blob.IsPublic;

    /// <summary>
    /// Records one more key for a stored blob (its content type, and whether upstream gave it without credentials).
    /// A failure to record (a full disk) costs nothing but the record: the blob is served all the same.
    /// </summary>
    private EntryRecord? RecordAlias(BlobRecord blob, EntryTemplate alias, bool isPublic)
    {
        try
        {
            _index.Commit(blob.Digest, blob.Size, NowMs, [alias], isPublic);
        }
        catch (Exception e) when (e is IOException or Microsoft.Data.Sqlite.SqliteException)
        {
            LogAliasNotRecorded(_logger, alias.Key, e.Message);
            return null;
        }
        return _index.TryGetEntry(alias.Key, out var entry) ? entry : null;
    }

    /// <summary>
    /// What this node may give a peer node that asks for a digest on behalf of a request of the given access (the peer
    /// made its own client's check): a committed blob (pinned for the caller) or a download in progress, or neither.
    /// </summary>
    public (BlobRecord? Blob, Fill? Fill) FindForPeer(string digest, ContentAccess access, string key)
    {
        if (_index.TryGetBlob(digest, out var blob) && _index.HasFile(blob, _store) && blob.TryAcquire(NowMs))
        {
            var allowed = MayShare(access, blob) || (access == ContentAccess.Keyed && _index.TryGetEntry(key, out var entry) && entry.Blob == blob);
            if (allowed)
            {
                return (blob, null);
            }
            blob.Release();
        }
        var authorised = _flights.GetValueOrDefault("sha256:" + digest);
        var open = _flights.GetValueOrDefault("public:sha256:" + digest) ?? (authorised?.Request.Anonymous == true ? authorised : null);
        var fill = access switch
        {
            ContentAccess.Authorised => authorised ?? open,
            ContentAccess.Public => open,
            _ => open ?? (_flights.GetValueOrDefault(key) is { } keyed && keyed.Request.ExpectedSha256 == digest ? keyed : null),
        };
        return (null, fill);
    }

    /// <summary>
    /// What this node may give a peer node that asks for a key's content on behalf of a request known only by that key
    /// (<see cref="ArtifactRequest.SharedByKey"/>): the entry committed under that very key (pinned for the caller) or
    /// the key's own download in progress; never another key's bytes, and nothing produced here (a git pack).
    /// </summary>
    public (BlobRecord? Blob, EntryRecord? Entry, Fill? Fill) FindKeyForPeer(string key)
    {
        if (_index.TryGetEntry(key, out var entry) && _index.HasFile(entry.Blob, _store) && entry.Blob.TryAcquire(NowMs))
        {
            return (entry.Blob, entry, null);
        }
        var fill = _flights.GetValueOrDefault(key) is { } keyed && keyed.Request.Key == key && keyed.Request.Producer is null && keyed.Stale is null ? keyed : null;
        return (null, null, fill);
    }

    private async Task RecordAliasAfterCommitAsync(Fill fill, EntryTemplate alias)
    {
        var result = await fill.Completed;
        // Pinned while it is recorded: a blob evicted meanwhile must not come back as a row with no file.
        if (result is { End: FillEnd.Committed, Blob: { } blob } && blob.TryAcquire(NowMs))
        {
            try
            {
                RecordAlias(blob, alias with { ContentType = fill.Started.Result.ContentType }, fill.Request.Anonymous);
            }
            finally
            {
                blob.Release();
            }
        }
    }
}
