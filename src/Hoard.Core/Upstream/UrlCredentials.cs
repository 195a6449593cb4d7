using System.Text;

namespace Hoard.Core.Upstream;

/// <summary>
/// Upstream credentials are written in a URL's user info (https://user:token@host/). These are the only places
/// that read them: the URL without them (for requests, logs and client configuration) and the Basic credential.
/// </summary>
public static class UrlCredentials
{
    public static Uri WithoutUserInfo(Uri url) =>
        string.IsNullOrEmpty(url.UserInfo) ? url : new UriBuilder(url) { UserName = "", Password = "" }.Uri;

    /// <summary>base64(user:password), or null when the URL carries none.</summary>
    public static string? Basic(Uri url) =>
        string.IsNullOrEmpty(url.UserInfo) ? null : Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.UnescapeDataString(url.UserInfo)));
}
