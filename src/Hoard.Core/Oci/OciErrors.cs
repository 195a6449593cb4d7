using System.Text.Json;
using Hoard.Core.Http;
using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Oci;

/// <summary>Writes {"errors":[{"code","message","detail"}]} with the status the spec gives each code.</summary>
public static class OciErrors
{
    public static Task WriteAsync(HttpContext ctx, OciError error)
    {
        RequestInfo.For(ctx).Failed(error.Status, error.Message);
        if (ctx.Response.HasStarted)
        {
            ctx.Abort();
            return Task.CompletedTask;
        }
        var response = ctx.Response;
        response.StatusCode = error.Status;
        response.ContentType = "application/json; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        if (error.Status == 401)
        {
            // Ask for credentials: the client retries with the ones it holds for this mirror, and Hoard forwards them upstream.
            response.Headers.WWWAuthenticate = "Basic realm=\"hoard\"";
        }
        var body = JsonSerializer.Serialize(new { errors = new[] { new { code = error.Code, message = error.Message, detail = (object?)null } } });
        return HttpMethods.IsHead(ctx.Request.Method) ? Task.CompletedTask : response.WriteAsync(body);
    }

    /// <summary>Maps a cache or upstream failure status to the code a registry client understands.</summary>
    public static OciError FromStatus(int status, string message, OciKind kind) => status switch
    {
        404 => new OciError(kind == OciKind.Blob ? "BLOB_UNKNOWN" : kind == OciKind.TagsList ? "NAME_UNKNOWN" : "MANIFEST_UNKNOWN", 404, message),
        401 => new OciError("UNAUTHORIZED", 401, message),
        403 => new OciError("DENIED", 403, message),
        429 => new OciError("TOOMANYREQUESTS", 429, message),
        _ => new OciError("UNKNOWN", status, message),
    };
}
