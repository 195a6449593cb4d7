using System.Text.Json.Serialization;
using Hoard.Core.Fetch;
using Hoard.Core.Hosting;
using Hoard.Core.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Hoard.Core.Warm;

/// <summary>
/// The pins an operator made (admin token): GET /_hoard/pins lists them with their size, DELETE /_hoard/pins?name=NAME
/// removes one (its blobs are evicted again in their turn). Pins are made by a warm with "pin": true (`hoard pin`),
/// which fetches what is missing first.
/// </summary>
public static class PinEndpoint
{
    public const string Path = "/_hoard/pins";

    public static void Map(IEndpointRouteBuilder app, FetchEngine engine, AdminAuth admin)
    {
        app.MapGet(Path, async (HttpContext ctx) =>
        {
            if (await admin.AuthorizeAsync(ctx))
            {
                ctx.Response.Headers.CacheControl = "no-store";
                await ctx.Response.WriteAsJsonAsync(new PinList(engine.Pins(), engine.PinnedBytes, engine.MaxPinnedBytes), PinJson.Default.PinList);
            }
        });
        app.MapDelete(Path, async (HttpContext ctx) =>
        {
            if (!await admin.AuthorizeAsync(ctx))
            {
                return;
            }
            var name = ctx.Request.Query["name"].ToString();
            if (name.Length == 0)
            {
                await HttpErrors.WriteAsync(ctx, 400, "expected ?name=NAME of a pin (hoard status lists them)");
                return;
            }
            if (!engine.Unpin(name))
            {
                await HttpErrors.WriteAsync(ctx, 404, "no pin of that name");
                return;
            }
            ctx.Response.StatusCode = 204;
        });
    }
}

/// <summary>Pins, the bytes they hold together (a blob two pins share counts once), and the most they may hold.</summary>
public sealed record PinList(List<PinInfo> Pins, long PinnedBytes, long MaxPinnedBytes);

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(PinList))]
public sealed partial class PinJson : JsonSerializerContext;
