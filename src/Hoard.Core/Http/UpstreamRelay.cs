using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Http;

/// <summary>For answers relayed from upstream as they are (git discovery, pushes, LFS batch): status and auth challenge.</summary>
public static class UpstreamRelay
{
    /// <summary>Copies the status and any WWW-Authenticate challenge, so the client's credential helper runs; never cached.</summary>
    public static void CopyStatus(HttpResponse target, HttpResponseMessage source)
    {
        target.StatusCode = (int)source.StatusCode;
        foreach (var challenge in source.Headers.WwwAuthenticate)
        {
            target.Headers.Append("WWW-Authenticate", challenge.ToString());
        }
        target.Headers.CacheControl = "no-cache";
    }
}
