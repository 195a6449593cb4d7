using Hoard.Core.Metrics;

namespace Hoard.Core.Http;

/// <summary>What the access log and the request counter need to know about a request; set by the handlers.</summary>
public sealed class RequestInfo
{
    public int Protocol { get; set; } = HoardMetrics.ProtocolIndex("admin");
    public CacheOutcome Outcome { get; set; }
    public string? Error { get; set; }

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
