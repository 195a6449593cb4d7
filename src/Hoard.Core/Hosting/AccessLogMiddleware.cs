using System.Diagnostics;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Hosting;

/// <summary>Counts every request by protocol and outcome and writes one log line for it.</summary>
public sealed partial class AccessLogMiddleware(RequestDelegate next, HoardMetrics metrics, ILoggerFactory loggers)
{
    private readonly ILogger _log = loggers.CreateLogger(HoardApp.AccessLogCategory);

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
            if (_log.IsEnabled(LogLevel.Information))
            {
                var outcome = info.Outcome == CacheOutcome.None ? "-" : info.Outcome.ToString().ToLowerInvariant();
                LogRequest(_log, ctx.Request.Method, ctx.Request.Path.Value ?? "", ctx.Response.StatusCode, outcome,
                    ctx.Response.ContentLength ?? -1, Stopwatch.GetElapsedTime(started).TotalMilliseconds, info.Error ?? "");
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Method} {Path} {Status} {Outcome} {Bytes} {Ms:0.0}ms {Error}")]
    private static partial void LogRequest(ILogger logger, string method, string path, int status, string outcome, long bytes, double ms, string error);
}
