using System.Diagnostics;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Hoard.Core.Hosting;

/// <summary>Refuses unsafe paths, counts every request by protocol and outcome, and writes its access-log line (with the body bytes sent).</summary>
public sealed class AccessLogMiddleware(RequestDelegate next, HoardMetrics metrics, AccessLog accessLog, TimeProvider time)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        var started = Stopwatch.GetTimestamp();
        var info = new RequestInfo();
        ctx.Features.Set(info);
        var body = new CountingResponseBody(ctx.Features.GetRequiredFeature<IHttpResponseBodyFeature>());
        ctx.Features.Set<IHttpResponseBodyFeature>(body);
        try
        {
            if (PathGuard.Check(ctx) is { } problem)
            {
                await HttpErrors.WriteAsync(ctx, 400, problem);
                return;
            }
            await next(ctx);
        }
        catch (Exception e) when (!ctx.RequestAborted.IsCancellationRequested)
        {
            // Kestrel answers 500 (or aborts a body already started) once this has passed: logged and counted as that.
            // The exception itself is logged by Kestrel; its message may hold more than a client's log line should.
            if (!ctx.Response.HasStarted)
            {
                ctx.Response.StatusCode = StatusCodes.Status500InternalServerError;
            }
            info.Failed(500, "internal error: " + e.GetType().Name);
            throw;
        }
        finally
        {
            ctx.Features.Set(body.Inner);
            if (ctx.Response.StatusCode >= 500 && info.Outcome != CacheOutcome.None)
            {
                // An upstream's 5xx relayed as it came (git discovery, pushes) is a failure like Hoard's own 502.
                info.Outcome = CacheOutcome.Error;
            }
            metrics.Request(info.Protocol, info.Outcome, Stopwatch.GetElapsedTime(started).TotalSeconds);
            if (accessLog.Enabled)
            {
                accessLog.Write(new AccessLog.Entry(time.GetUtcNow().ToUnixTimeMilliseconds(), ctx.Request.Method, LoggedPath(ctx),
                    ctx.Response.StatusCode, info.Outcome, body.Bytes, Stopwatch.GetElapsedTime(started).TotalMilliseconds, info.Error));
            }
        }
    }

    /// <summary>
    /// The path, with the one query parameter that says where a request goes (containerd's `?ns=` registry). Other
    /// query strings stay out of the log: an LFS download's `?t=` is a credential.
    /// </summary>
    private static string LoggedPath(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "";
        return ctx.Request.Query.TryGetValue("ns", out var ns) && ns.Count == 1 ? path + "?ns=" + ns[0] : path;
    }
}
