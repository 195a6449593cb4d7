using System.IO.Compression;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Hoard.Core.Http;

/// <summary>
/// Reads request bodies that must be held whole (git fetch requests, LFS batches), gunzipped if the client compressed
/// them, up to a size per body and within one budget for all bodies in memory at once: a flood of gzip bombs gets 413
/// and 503 answers, not gigabytes of memory. Call it only after the client was authorised.
/// </summary>
public sealed class RequestBodyReader
{
    /// <summary>All bodies being buffered at once, after gunzip.</summary>
    public const long Budget = 128L * 1024 * 1024;
    private const int Chunk = 64 * 1024;
    private long _inUse;

    /// <summary>Bytes reserved by bodies being read now.</summary>
    public long InUse => Interlocked.Read(ref _inUse);

    /// <summary>The body, or null after answering the client with the reason it was refused.</summary>
    public async Task<byte[]?> ReadAsync(HttpContext ctx, long maxBytes)
    {
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = maxBytes;
        }
        long reserved = 0;
        try
        {
            using var buffer = new MemoryStream();
            var input = ctx.Request.Body;
            if (ctx.Request.Headers.ContentEncoding.ToString().Contains("gzip", StringComparison.OrdinalIgnoreCase))
            {
                input = new GZipStream(input, CompressionMode.Decompress);
            }
            var chunk = new byte[Chunk];
            int n;
            while ((n = await input.ReadAsync(chunk, ctx.RequestAborted)) > 0)
            {
                if (buffer.Length + n > maxBytes)
                {
                    await HttpErrors.WriteAsync(ctx, 413, $"request body larger than {maxBytes / (1024 * 1024)} MB (after gunzip)");
                    return null;
                }
                if (buffer.Length + n > reserved)
                {
                    // Reserve by doubling, as the buffer itself grows.
                    var more = Math.Max(n, reserved);
                    if (Interlocked.Add(ref _inUse, more) > Budget)
                    {
                        Interlocked.Add(ref _inUse, -more);
                        await HttpErrors.WriteAsync(ctx, 503, "too many large requests at once; try again");
                        return null;
                    }
                    reserved += more;
                }
                buffer.Write(chunk, 0, n);
            }
            return buffer.ToArray();
        }
        catch (Exception e) when (e is InvalidDataException or BadHttpRequestException)
        {
            await HttpErrors.WriteAsync(ctx, e is BadHttpRequestException { StatusCode: 413 } ? 413 : 400, "unreadable request body: " + e.Message);
            return null;
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            return null;
        }
        finally
        {
            Interlocked.Add(ref _inUse, -reserved);
        }
    }
}
