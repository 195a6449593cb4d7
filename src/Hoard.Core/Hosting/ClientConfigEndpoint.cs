using System.Text.Json;
using System.Text.Json.Serialization;
using Hoard.Core.Configuration;
using Hoard.Core.Upstream;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Hoard.Core.Hosting;

/// <summary>
/// GET /_hoard/config: the upstreams this server is configured with, by protocol, as `hoard config --url` on a client
/// machine needs them (so that machine needs no copy of the server's flags). Names, paths and where they lead; never a
/// credential: upstream URLs lose their user info and query string (where a token may be written), PyPI indexes and
/// files upstreams are given by name only, and no secret setting (admin token, cluster secret) is read here at all.
/// </summary>
public static class ClientConfigEndpoint
{
    public const string Path = "/_hoard/config";

    /// <summary>Bumped when a field changes meaning; fields may be added without it.</summary>
    public const int Version = 1;

    /// <summary>The most a client reads of the answer; the real one is a few hundred bytes per upstream.</summary>
    public const int MaxBytes = 1024 * 1024;

    public static void Map(IEndpointRouteBuilder app, HoardOptions options)
    {
        // Settings do not change while Hoard runs: the answer is made once.
        var body = JsonSerializer.SerializeToUtf8Bytes(Describe(options), ClientConfigJson.Default.ClientConfigDocument);
        app.MapMethods(Path, ["GET", "HEAD"], (HttpContext ctx) =>
        {
            ctx.Response.ContentType = "application/json; charset=utf-8";
            // A restart with other flags changes it: nobody should keep an old copy.
            ctx.Response.Headers.CacheControl = "no-cache";
            ctx.Response.ContentLength = body.Length;
            return HttpMethods.IsHead(ctx.Request.Method) ? Task.CompletedTask : ctx.Response.Body.WriteAsync(body, ctx.RequestAborted).AsTask();
        });
    }

    public static ClientConfigDocument Describe(HoardOptions options) => new(
        Version,
        options.Pypi.Select(p => new PypiIndexInfo(p.Name, p == options.DefaultPypiIndex ? "/simple/" : $"/pypi/{p.Name}/simple/", p == options.DefaultPypiIndex)).ToList(),
        options.Registries.Select(r => new RegistryInfo(r.Name, PublicUrl(r.Url), r.Name == options.DefaultRegistry)).ToList(),
        options.Git.Select(g => new GitUpstreamInfo(g.Name, PublicUrl(g.Url), $"/git/{g.Name}/")).ToList(),
        options.Files.Select(f => new FilesUpstreamInfo(f.Name, $"/files/{f.Name}/")).ToList());

    /// <summary>Scheme, host, port and path: what a client needs to name the upstream, and nothing that could be a secret.</summary>
    public static string PublicUrl(Uri url) => UrlCredentials.WithoutUserInfo(url).GetLeftPart(UriPartial.Path);
}

/// <summary>The answer of <see cref="ClientConfigEndpoint"/>.</summary>
public sealed record ClientConfigDocument(
    int Version,
    IReadOnlyList<PypiIndexInfo> Pypi,
    IReadOnlyList<RegistryInfo> Registries,
    IReadOnlyList<GitUpstreamInfo> Git,
    IReadOnlyList<FilesUpstreamInfo> Files);

/// <param name="Path">where the index is served on Hoard</param>
/// <param name="IsDefault">the index also served at /simple/</param>
public sealed record PypiIndexInfo(string Name, string Path, [property: JsonPropertyName("default")] bool IsDefault);

/// <param name="Name">the registry's host as written in image references</param>
/// <param name="Url">the registry's API (containerd's `server`, podman's fallback location)</param>
/// <param name="IsDefault">the registry for /v2/ requests that name none (docker's registry-mirrors)</param>
public sealed record RegistryInfo(string Name, string Url, [property: JsonPropertyName("default")] bool IsDefault);

/// <param name="Url">the git server; `url.HOARD/git/NAME/.insteadOf URL` sends git commands for it through Hoard</param>
public sealed record GitUpstreamInfo(string Name, string Url, string Path);

public sealed record FilesUpstreamInfo(string Name, string Path);

/// <summary>
/// Source-generated (de)serialization, shared by the server and `hoard config`. A client refuses an answer that lacks
/// a field or has a null where none belongs: it would otherwise write client configuration from half a document.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true, RespectNullableAnnotations = true, RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(ClientConfigDocument))]
public sealed partial class ClientConfigJson : JsonSerializerContext
{
}
