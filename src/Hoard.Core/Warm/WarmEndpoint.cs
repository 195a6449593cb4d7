using System.Text.Json;
using System.Threading.Channels;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Hosting;
using Hoard.Core.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Warm;

/// <summary>
/// POST /_hoard/warm (admin token): fetches everything a <see cref="WarmRequest"/> lists and streams NDJSON
/// <see cref="WarmEvent"/>s while it does. The flow:
/// 1. authorise and read the request (bounded), refuse an empty or oversized one with 400;
/// 2. run the items, a few at a time, each through this node's own client routes (<see cref="SelfClient"/>);
/// 3. write "item" and "done" lines as items start and end, "progress" lines for running items a few times a second;
/// 4. end with a "summary" line. A caller that leaves stops the warm; downloads already running finish and are
///    stored (a download never depends on the client that started it), so a second warm does only what is missing.
/// </summary>
public static partial class WarmEndpoint
{
    public const string Path = "/_hoard/warm";

    /// <summary>Items warmed at once: enough to overlap upstream latency, few enough not to crowd out clients.</summary>
    public const int Parallelism = 4;

    private const int MaxRequestBytes = 8 * 1024 * 1024;
    private const int MaxItems = 10_000;
    private static readonly ReadOnlyMemory<byte> Newline = "\n"u8.ToArray();
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromMilliseconds(250);

    /// <param name="mirrorOf">Where a repository's git mirror lives (GitMirror.PathOf), for a pin to keep it.</param>
    public static void Map(IEndpointRouteBuilder app, HoardOptions options, FetchEngine engine, AdminAuth admin, RequestBodyReader reader, SelfClient self,
        Func<UpstreamSpec, string, string> mirrorOf, ILogger logger)
    {
        app.MapPost(Path, async (HttpContext ctx) =>
        {
            if (!await admin.AuthorizeAsync(ctx))
            {
                return;
            }
            var body = await reader.ReadAsync(ctx, MaxRequestBytes);
            if (body is null)
            {
                return; // answered (413, 503)
            }
            WarmRequest? request;
            try
            {
                request = JsonSerializer.Deserialize(body, WarmJson.Default.WarmRequest);
            }
            catch (JsonException e)
            {
                await HttpErrors.WriteAsync(ctx, 400, "not a warm request: " + e.Message);
                return;
            }
            var count = request is null ? 0 : request.Packages.Count + request.Images.Count + request.Git.Count;
            if (request is null || count == 0 || count > MaxItems)
            {
                await HttpErrors.WriteAsync(ctx, 400, $"a warm request lists 1 to {MaxItems} packages, images and repositories");
                return;
            }
            LogWarm(logger, request.Packages.Count, request.Images.Count, request.Git.Count, ctx.Connection.RemoteIpAddress?.ToString() ?? "-");
            ctx.Response.ContentType = "application/x-ndjson";
            ctx.Response.Headers.CacheControl = "no-store";
            var pin = request.Pin ? new Func<WarmItem, Task>(item => PinAsync(item, self, engine, ctx.RequestAborted)) : null;
            await RunAsync(ctx.Response.Body, request, new PackageWarmer(self, options), new ImageWarmer(self), new GitWarmer(self, options, mirrorOf), pin, request.Pin ? engine.PinRoomProblem : null, ctx.RequestAborted);
        });
    }

    /// <summary>A warmed item becomes a pin of its name, unless any of it failed (a pin of part of it would mislead).</summary>
    private static async Task PinAsync(WarmItem item, SelfClient self, FetchEngine engine, CancellationToken ct)
    {
        if (item.Failed || !await item.NameDigestsAsync(self, ct))
        {
            return;
        }
        if (engine.Pin(item.Name, item.Kind.ToString().ToLowerInvariant(), item.Digests, out var refusal, out _, item.Mirrors))
        {
            item.Pinned = true;
        }
        else
        {
            item.Fail("not pinned: " + refusal);
        }
    }

    private static async Task RunAsync(Stream output, WarmRequest request, PackageWarmer packages, ImageWarmer images, GitWarmer git, Func<WarmItem, Task>? pin,
        Func<string, IReadOnlyDictionary<string, long>, string?>? roomCheck, CancellationToken ct)
    {
        var work = new List<(WarmItem Item, Func<WarmItem, Task> Run)>();
        foreach (var p in request.Packages)
        {
            work.Add((new WarmItem(work.Count + 1, WarmKind.Package, $"{p.Project}=={p.Version}"), item => packages.WarmAsync(p, item, request, ct)));
        }
        foreach (var image in request.Images)
        {
            work.Add((new WarmItem(work.Count + 1, WarmKind.Image, image), item => images.WarmAsync(image, item, request, ct)));
        }
        foreach (var repository in request.Git)
        {
            work.Add((new WarmItem(work.Count + 1, WarmKind.Git, repository), item => git.WarmAsync(repository, item, ct)));
        }
        if (pin is not null && roomCheck is not null)
        {
            foreach (var (item, _) in work)
            {
                item.RoomCheck = planned => roomCheck(item.Name, planned);
            }
        }
        var events = Channel.CreateUnbounded<WarmEvent>(new UnboundedChannelOptions { SingleReader = false });
        var running = new System.Collections.Concurrent.ConcurrentDictionary<int, WarmItem>();
        var runner = Task.Run(async () =>
        {
            try
            {
                await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = Parallelism, CancellationToken = ct }, async (w, token) =>
                {
                    running[w.Item.Id] = w.Item;
                    events.Writer.TryWrite(w.Item.Started());
                    try
                    {
                        await w.Run(w.Item);
                        if (pin is not null)
                        {
                            await pin(w.Item);
                        }
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        w.Item.Fail(e.Message);
                    }
                    running.TryRemove(w.Item.Id, out _);
                    events.Writer.TryWrite(w.Item.Done());
                });
            }
            finally
            {
                events.Writer.TryComplete();
            }
        }, CancellationToken.None);

        var done = new List<WarmEvent>();
        var lastBytes = new Dictionary<int, long>();
        Task<bool>? wait = null;
        while (true)
        {
            // One wait for the next event, kept across progress ticks (a new one per tick would pile up waiters).
            wait ??= events.Reader.WaitToReadAsync(ct).AsTask();
            var finished = false;
            if (await Task.WhenAny(wait, Task.Delay(ProgressEvery, ct)) == wait)
            {
                finished = !await wait;
                wait = null;
            }
            while (events.Reader.TryRead(out var e))
            {
                if (e.Type == "done")
                {
                    done.Add(e);
                }
                await WriteAsync(output, e, ct);
            }
            foreach (var item in running.Values)
            {
                if (lastBytes.GetValueOrDefault(item.Id) != item.Bytes)
                {
                    lastBytes[item.Id] = item.Bytes;
                    await WriteAsync(output, item.Progress(), ct);
                }
            }
            await output.FlushAsync(ct);
            if (finished)
            {
                break;
            }
        }
        await runner;
        await WriteAsync(output, new WarmEvent("summary")
        {
            Bytes = done.Sum(d => d.Bytes),
            Fetched = done.Sum(d => d.Fetched),
            Cached = done.Sum(d => d.Cached),
            Failed = done.Count(d => d.Error is not null),
            FetchedBytes = done.Sum(d => d.FetchedBytes),
        }, ct);
        await output.FlushAsync(ct);
    }

    private static async Task WriteAsync(Stream output, WarmEvent e, CancellationToken ct)
    {
        await JsonSerializer.SerializeAsync(output, e, WarmJson.Default.WarmEvent, ct);
        await output.WriteAsync(Newline, ct);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Warming {Packages} packages, {Images} images and {Repositories} repositories for {Remote}")]
    private static partial void LogWarm(ILogger logger, int packages, int images, int repositories, string remote);
}
