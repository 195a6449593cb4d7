using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Git;

/// <summary>
/// The peer side of shared mirrors: another cluster node, starting its own mirror of a repository, fetches from this
/// node's mirror as from a git server (info/refs, then upload-pack). Only signed cluster requests for that very
/// mirror are answered; the asking node made its client's upstream check itself. Nothing is fetched for a peer.
/// </summary>
public sealed partial class GitFrontEnd
{
    private async Task ServePeerAsync(HttpContext ctx)
    {
        RequestInfo.For(ctx).Protocol = Protocol;
        var name = (string)ctx.Request.RouteValues["name"]!;
        if (mirrors.Peers is not { } peers || !_upstreams.TryGetValue(name, out var spec))
        {
            await HttpErrors.WriteAsync(ctx, 404, "no such mirror on this node");
            return;
        }
        var rest = (ctx.Request.Path.Value ?? "")[$"/_hoard/peer/git/{name}/".Length..];
        var (target, status, error) = GitRoute.Parse(rest, ctx.Request.Method, ctx.Request.Query["service"].ToString());
        if (target is not { Action: GitAction.InfoRefs or GitAction.UploadPack })
        {
            await HttpErrors.WriteAsync(ctx, target is null ? status : 404, target is null ? error : "a peer may only fetch from a mirror");
            return;
        }
        var check = peers.CheckMirrorRequest(ctx.Request.Headers[Cluster.PeerSignature.Header], ctx.Request.Headers[Cluster.PeerSignature.ForHeader], name, target.Repository);
        if (check != 0)
        {
            await HttpErrors.WriteAsync(ctx, check, check == 400 ? "X-Hoard-Peer-For must name this mirror" : "cluster requests must be signed with the cluster secret, within a minute");
            return;
        }
        var mirror = mirrors.PathOf(spec, target.Repository);
        using var lease = mirrors.Space.Use(mirror);
        if (!mirrors.Exists(mirror))
        {
            await HttpErrors.WriteAsync(ctx, 404, "this node does not hold that mirror (any more)");
            return;
        }
        RequestInfo.For(ctx).Outcome = CacheOutcome.Hit;
        metrics.Git("peer_mirror", target.Action == GitAction.InfoRefs ? "info_refs" : "upload_pack");
        if (target.Action == GitAction.InfoRefs)
        {
            await RunUploadPackAsync(ctx, mirror, advertise: true, body: null, mirrors.PeerProcesses);
            return;
        }
        if (await bodies.ReadAsync(ctx, MaxRequestBody) is { } body)
        {
            await RunUploadPackAsync(ctx, mirror, advertise: false, body, mirrors.PeerProcesses);
        }
    }
}
