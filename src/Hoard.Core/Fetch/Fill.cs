using System.IO.Pipelines;
using Hoard.Core.Storage;
using Hoard.Core.Upstream;

namespace Hoard.Core.Fetch;

public enum FillStartKind
{
    Streaming,
    NotModified,
    Failed,
}

/// <summary>What upstream's response headers said, once they arrived.</summary>
public sealed record FillStart(FillStartKind Kind, long? Length, string? ContentType, string? ETag, string? LastModified, UpstreamException? Error);

public enum FillEnd
{
    Committed,
    UpstreamFailed,
    StorageFailed,
}

public sealed record FillResult(FillEnd End, long Written, BlobRecord? Blob, UpstreamException? Error);

/// <summary>
/// One upstream download into one temp file, shared by every client that asked for the same key while it runs.
/// Clients read the growing temp file; the last byte is held back until the size and digest check out, so a
/// download that fails verification can never look like a complete, successful body to anyone. It is released as
/// soon as they do, before the fsync and rename that commit the blob: what protects a client is the check, and
/// the fsync (hundreds of milliseconds for a large blob) only protects this node's store.
/// </summary>
public sealed class Fill
{
    private readonly TaskCompletionSource<FillStart> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<FillResult> _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<FillResult?> _checked = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ProgressSignal _progress = new();
    private readonly List<EntryTemplate> _aliases = [];
    private long _written;
    private long _verified = -1;
    private int _clients;
    private readonly long _startedTicks = Environment.TickCount64;
    private bool _committed;

    internal Fill(ArtifactRequest request, EntryRecord? stale, Func<string, string> blobPathOf)
    {
        Request = request;
        ExpectedSha256 = request.ExpectedSha256;
        Stale = stale;
        BlobPathOf = blobPathOf;
    }

    public ArtifactRequest Request { get; }

    /// <summary>Requests served by this download: the one that started it and every one that joined.</summary>
    public int Clients => Volatile.Read(ref _clients);

    internal void AddClient() => Interlocked.Increment(ref _clients);

    /// <summary>How long this download has been running.</summary>
    public TimeSpan Elapsed => TimeSpan.FromMilliseconds(Environment.TickCount64 - _startedTicks);

    /// <summary>The entry being revalidated, if any: served again on 304 or when upstream fails.</summary>
    public EntryRecord? Stale { get; }
    internal Func<string, string> BlobPathOf { get; }
    internal string? TempPath { get; set; }

    /// <summary>The body comes from another node of the cluster, not from upstream.</summary>
    public bool FromPeer { get; internal set; }

    /// <summary>
    /// What the body must hash to: the request's digest, or for a request known only by its key the digest the
    /// cluster published for that key, when the body comes from a node that holds it. Null: stored as it hashes.
    /// </summary>
    public string? ExpectedSha256 { get; internal set; }

    public Task<FillStart> Started => _started.Task;
    public Task<FillResult> Completed => _completed.Task;

    /// <summary>
    /// Completes once the body's fate is known: null when it was whole and verified (every byte may go out, the
    /// commit may still be under way), else the result that ended it unverified (upstream failed or sent the wrong
    /// bytes; or the store failed, and the rest comes straight from upstream).
    /// </summary>
    public Task<FillResult?> Checked => _checked.Task;
    public long Written => Volatile.Read(ref _written);

    internal void SetStarted(FillStart start) => _started.TrySetResult(start);

    internal void Advance(long written)
    {
        Volatile.Write(ref _written, written);
        WakeReaders();
    }

    /// <summary>Readers waiting for more bytes (or for the end) look again.</summary>
    private void WakeReaders() => _progress.Signal();

    /// <summary>Readers now waiting or between waits (for tests: one that left is no longer counted).</summary>
    internal int Readers => _progress.WaiterCount;

    /// <summary>The body is whole and checked; the commit (fsync, rename, index) may still be under way.</summary>
    public bool IsVerified => Volatile.Read(ref _verified) >= 0;

    /// <summary>The whole body is written and its size and digest check out: readers may have the last byte.</summary>
    internal void Verified(long written)
    {
        Volatile.Write(ref _verified, written);
        _checked.TrySetResult(null);
        WakeReaders();
    }

    internal void Complete(FillResult result)
    {
        _started.TrySetResult(new FillStart(FillStartKind.Failed, null, null, null, null, result.Error));
        _completed.TrySetResult(result);
        _checked.TrySetResult(result.End == FillEnd.Committed ? null : result);
        WakeReaders();
    }

    /// <summary>Adds a key to record when the blob is committed. False once committed: the caller records it then.</summary>
    internal bool TryAddAlias(EntryTemplate alias)
    {
        lock (_aliases)
        {
            if (_committed)
            {
                return false;
            }
            if (!_aliases.Exists(a => a.Key == alias.Key))
            {
                _aliases.Add(alias);
            }
            return true;
        }
    }

    internal List<EntryTemplate> TakeAliases()
    {
        lock (_aliases)
        {
            _committed = true;
            return [.. _aliases];
        }
    }

    /// <summary>How far a reader may read now: everything once verified (or committed), else all but the last byte.</summary>
    private long Readable(out FillResult? result, out bool whole)
    {
        var task = _completed.Task;
        result = task.IsCompleted ? task.Result : null;
        var verified = Volatile.Read(ref _verified);
        if (verified >= 0)
        {
            whole = true; // even if storing it fails afterwards: the bytes written are the checked ones
            return verified;
        }
        whole = result?.End == FillEnd.Committed;
        return result is { End: FillEnd.Committed or FillEnd.StorageFailed } ? result.Written : Math.Max(0, Written - 1);
    }

    /// <summary>
    /// Copies [offset, end) to the output as it arrives (end = -1: to the end of the download). When storing failed,
    /// the rest comes from <paramref name="passthrough"/>, straight from upstream. Never throws for upstream trouble:
    /// the result says whose side failed, as YARP's StreamCopier does.
    /// </summary>
    public async Task<CopyOutcome> CopyToAsync(PipeWriter output, long offset, long end, Func<long, CancellationToken, Task<Stream>> passthrough, CancellationToken ct)
    {
        var pos = offset;
        Microsoft.Win32.SafeHandles.SafeFileHandle? handle = null;
        ProgressSignal.Waiter? waiter = null;
        try
        {
            while (end < 0 || pos < end)
            {
                // Read before looking: a chunk that lands after this moves the version, and the wait below ends at once.
                var seen = _progress.Version;
                var readable = Readable(out var result, out var whole);
                if (end >= 0)
                {
                    readable = Math.Min(readable, end);
                }
                if (pos < readable)
                {
                    if (handle is null)
                    {
                        try
                        {
                            handle = await OpenForReadAsync(ct);
                        }
                        catch (IOException e) when (e is FileNotFoundException or DirectoryNotFoundException)
                        {
                            // Committed and evicted before this reader opened it (a blob that alone filled the room
                            // pins and newer blobs left): the rest comes straight from upstream, as when storing failed.
                            return await CopyPassthroughAsync(output, pos, end, offset, passthrough, ct);
                        }
                    }
                    var memory = output.GetMemory(StreamCopy.BufferSize);
                    var want = (int)Math.Min(memory.Length, readable - pos);
                    // A synchronous read: these bytes were just written, so they come from the page cache, and
                    // ReadAsync on Linux would only queue the same read to another thread (a wake-up per chunk).
                    var n = RandomAccess.Read(handle, memory.Span[..want], pos);
                    if (n <= 0)
                    {
                        return CopyOutcome.UpstreamFailed("the cached download ended early");
                    }
                    output.Advance(n);
                    pos += n;
                    var flush = await output.FlushAsync(ct);
                    if (flush.IsCanceled || flush.IsCompleted)
                    {
                        return CopyOutcome.ClientGone(pos - offset);
                    }
                    continue;
                }
                if (whole)
                {
                    return CopyOutcome.Done(pos - offset);
                }
                switch (result?.End)
                {
                    case FillEnd.UpstreamFailed:
                        return CopyOutcome.UpstreamFailed(result.Error?.Message ?? "upstream failed");
                    case FillEnd.StorageFailed:
                        return await CopyPassthroughAsync(output, pos, end, offset, passthrough, ct);
                }
                waiter ??= _progress.Register(ct);
                await waiter.WaitAsync(seen);
            }
            return CopyOutcome.Done(pos - offset);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return CopyOutcome.ClientGone(pos - offset);
        }
        catch (IOException e)
        {
            return CopyOutcome.UpstreamFailed("reading the download failed: " + e.Message);
        }
        finally
        {
            waiter?.Dispose();
            handle?.Dispose();
        }
    }

    private static async Task<CopyOutcome> CopyPassthroughAsync(PipeWriter output, long pos, long end, long offset, Func<long, CancellationToken, Task<Stream>> passthrough, CancellationToken ct)
    {
        Stream body;
        try
        {
            body = await passthrough(pos, ct);
        }
        catch (UpstreamException e)
        {
            return CopyOutcome.UpstreamFailed(e.Message);
        }
        await using (body)
        {
            var limit = end < 0 ? long.MaxValue : end - pos;
            var copy = await StreamCopy.CopyAsync(body, output, limit, ct);
            return copy.Kind == CopyKind.Done ? CopyOutcome.Done(pos - offset + copy.Bytes) : copy with { Bytes = pos - offset + copy.Bytes };
        }
    }

    private async Task<Microsoft.Win32.SafeHandles.SafeFileHandle> OpenForReadAsync(CancellationToken ct)
    {
        // The temp file is renamed into the store on commit; an open handle survives that, a late opener follows it.
        if (TempPath is { } temp)
        {
            try
            {
                return File.OpenHandle(temp, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            }
            catch (FileNotFoundException)
            {
            }
        }
        // Renamed but maybe not yet recorded: the result follows within moments.
        if (await _completed.Task.WaitAsync(ct) is { Blob: { } blob })
        {
            return File.OpenHandle(BlobPathOf(blob.Digest), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        throw new IOException("the download's temp file is gone");
    }
}
