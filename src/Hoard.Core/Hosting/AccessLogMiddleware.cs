using System.Diagnostics;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Hosting;

/// <summary>Refuses unsafe paths, counts every request by protocol and outcome, and writes its access-log line.</summary>
public sealed class AccessLogMiddleware(RequestDelegate next, HoardMetrics metrics, AccessLog accessLog, TimeProvider time)
{
    public async Task InvokeAsync(HttpContext ctx)
    {
        var started = Stopwatch.GetTimestamp();
        var info = new RequestInfo();
        ctx.Features.Set(info);
        try
        {
            if (PathGuard.Check(ctx) is { } problem)
            {
                await HttpErrors.WriteAsync(ctx, 400, problem);
                return;
            }
            await next(ctx);
        }
        finally
        {
            metrics.Request(info.Protocol, info.Outcome);
            if (accessLog.Enabled)
            {
                accessLog.Write(new AccessLog.Entry(time.GetUtcNow().ToUnixTimeMilliseconds(), ctx.Request.Method, ctx.Request.Path.Value ?? "",
                    ctx.Response.StatusCode, info.Outcome, ctx.Response.ContentLength ?? -1, Stopwatch.GetElapsedTime(started).TotalMilliseconds, info.Error));
            }
        }
    }
}
