using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Http;

/// <summary>Every error a client gets is a status with a one-line reason in a text/plain body.</summary>
public static class HttpErrors
{
    public static Task WriteAsync(HttpContext ctx, int status, string message)
    {
        RequestInfo.For(ctx).Failed(status, message);
        if (ctx.Response.HasStarted)
        {
            ctx.Abort();
            return Task.CompletedTask;
        }
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "text/plain; charset=utf-8";
        ctx.Response.Headers.CacheControl = "no-store";
        return HttpMethods.IsHead(ctx.Request.Method) ? Task.CompletedTask : ctx.Response.WriteAsync(message + "\n");
    }
}
