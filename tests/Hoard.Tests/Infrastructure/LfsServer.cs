using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A small Git LFS server (batch API, basic transfer) for the tests: nothing in Debian serves LFS. The client
/// driven against it is the real git-lfs. Download actions carry a header the object GET insists on, so a proxy
/// must pass action headers through.
/// </summary>
public sealed class LfsServer : IAsyncDisposable
{
    public const string DownloadHeader = "RemoteAuth lfs-secret";
    private readonly string _objects;
    private WebApplication? _app;
    private int _downloads;

    public LfsServer(string dir) => _objects = Directory.CreateDirectory(Path.Combine(dir, "lfs-objects")).FullName;

    public int Port { get; private set; }
    public int Downloads => Volatile.Read(ref _downloads);

    public async Task StartAsync()
    {
        (_app, var baseUrl) = await TestWebApp.StartAsync(app =>
        {
            app.MapPost("/{**repo}", Batch);
            app.MapPut("/objects/{oid}", Upload);
            app.MapGet("/objects/{oid}", Download);
        });
        Port = new Uri(baseUrl).Port;
    }

    private async Task Batch(HttpContext ctx)
    {
        var request = JsonNode.Parse(await new StreamReader(ctx.Request.Body).ReadToEndAsync())!;
        var operation = request["operation"]!.GetValue<string>();
        var objects = new JsonArray();
        foreach (var o in request["objects"]!.AsArray())
        {
            var oid = o!["oid"]!.GetValue<string>();
            var size = o["size"]!.GetValue<long>();
            var href = $"http://127.0.0.1:{Port}/objects/{oid}";
            var exists = File.Exists(Path.Combine(_objects, oid));
            var entry = new JsonObject { ["oid"] = oid, ["size"] = size, ["authenticated"] = true };
            if (operation == "upload" && !exists)
            {
                entry["actions"] = new JsonObject { ["upload"] = new JsonObject { ["href"] = href } };
            }
            else if (operation == "download")
            {
                entry["actions"] = exists
                    ? new JsonObject { ["download"] = new JsonObject { ["href"] = href, ["header"] = new JsonObject { ["Authorization"] = DownloadHeader }, ["expires_in"] = 600 } }
                    : null;
                if (!exists)
                {
                    entry["error"] = new JsonObject { ["code"] = 404, ["message"] = "not found" };
                }
            }
            objects.Add(entry);
        }
        ctx.Response.ContentType = "application/vnd.git-lfs+json";
        await ctx.Response.WriteAsync(new JsonObject { ["transfer"] = "basic", ["objects"] = objects }.ToJsonString());
    }

    private async Task Upload(HttpContext ctx, string oid)
    {
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer);
        if (Convert.ToHexStringLower(SHA256.HashData(buffer.ToArray())) != oid)
        {
            ctx.Response.StatusCode = 422;
            return;
        }
        await File.WriteAllBytesAsync(Path.Combine(_objects, oid), buffer.ToArray());
    }

    private async Task Download(HttpContext ctx, string oid)
    {
        if (ctx.Request.Headers.Authorization.ToString() != DownloadHeader)
        {
            ctx.Response.StatusCode = 403;
            return;
        }
        var path = Path.Combine(_objects, Path.GetFileName(oid));
        if (!File.Exists(path))
        {
            ctx.Response.StatusCode = 404;
            return;
        }
        Interlocked.Increment(ref _downloads);
        ctx.Response.ContentType = "application/octet-stream";
        await ctx.Response.SendFileAsync(path);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
