using Hoard.Core.Metrics;

namespace Hoard.Core.Http;

/// <summary>What the access log and the request counter need to know about a request; set by the handlers.</summary>
public sealed class RequestInfo
{
    public int Protocol { get; set; } = HoardMetrics.ProtocolIndex("admin");
    public CacheOutcome Outcome { get; set; }
    public string? Error { get; set; }

    /// <summary>
    /// An error answer: its reason goes to the access log, and a 5xx (Hoard or upstream failed) is an error whatever
    /// was under way when it happened (a miss whose mirror fetch failed is not a miss). A 4xx keeps its outcome: the
    /// client asked for something that is not there or not theirs, nothing failed.
    /// </summary>
    public void Failed(int status, string message)
    {
        Error = message;
        if (status >= 500)
        {
            Outcome = CacheOutcome.Error;
        }
    }

    public static RequestInfo For(Microsoft.AspNetCore.Http.HttpContext ctx)
    {
        if (ctx.Features.Get<RequestInfo>() is { } info)
        {
            return info;
        }
        info = new RequestInfo();
        ctx.Features.Set(info);
        return info;
    }
}
