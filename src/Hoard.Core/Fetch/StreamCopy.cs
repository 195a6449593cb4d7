using System.IO.Pipelines;

namespace Hoard.Core.Fetch;

public enum CopyKind
{
    Done,
    UpstreamFailed,
    ClientGone,
}

/// <summary>How a copy to a client ended and whose side failed (modelled on YARP's StreamCopyResult).</summary>
public readonly record struct CopyOutcome(CopyKind Kind, long Bytes, string? Error)
{
    public static CopyOutcome Done(long bytes) => new(CopyKind.Done, bytes, null);

    public static CopyOutcome UpstreamFailed(string error) => new(CopyKind.UpstreamFailed, 0, error);

    public static CopyOutcome ClientGone(long bytes) => new(CopyKind.ClientGone, bytes, null);
}

/// <summary>Copies an upstream stream straight into a response pipe, for the paths that do not store.</summary>
public static class StreamCopy
{
    public const int BufferSize = 64 * 1024;

    public static async Task<CopyOutcome> CopyAsync(Stream input, PipeWriter output, long limit, CancellationToken ct)
    {
        long total = 0;
        try
        {
            while (total < limit)
            {
                var memory = output.GetMemory(BufferSize);
                if (limit - total < memory.Length)
                {
                    memory = memory[..(int)(limit - total)];
                }
                int n;
                try
                {
                    n = await input.ReadAsync(memory, ct);
                }
                catch (Exception e) when (e is IOException or System.Net.Http.HttpRequestException)
                {
                    return CopyOutcome.UpstreamFailed("upstream broke off: " + e.Message) with { Bytes = total };
                }
                if (n == 0)
                {
                    break;
                }
                output.Advance(n);
                total += n;
                var flush = await output.FlushAsync(ct);
                if (flush.IsCanceled || flush.IsCompleted)
                {
                    return CopyOutcome.ClientGone(total);
                }
            }
            return total < limit && limit != long.MaxValue
                ? CopyOutcome.UpstreamFailed($"upstream ended after {total} of {limit} bytes") with { Bytes = total }
                : CopyOutcome.Done(total);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return CopyOutcome.ClientGone(total);
        }
    }
}
