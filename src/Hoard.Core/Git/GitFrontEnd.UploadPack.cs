using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Hoard.Core.Access;
using Hoard.Core.Configuration;
using Hoard.Core.Http;
using Hoard.Core.Metrics;
using Hoard.Core.Upstream;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Git;

/// <summary>Running the real `git upload-pack` on a mirror: straight to a client, or as the pack cache's producer.</summary>
public sealed partial class GitFrontEnd
{
    /// <summary>
    /// Makes the mirror hold what a fetch wants: fetched from upstream if it lacks objects (joining a fetch already
    /// running, and once more if that one was for other wants), refs outside its patterns fetched for this client.
    /// Returns whether anything was fetched, and why the request must be passed through instead, if it must.
    /// </summary>
    private async Task<(bool Fetched, string? PassThrough)> PrepareMirrorAsync(HttpContext ctx, UpstreamSpec spec, string repository, string mirror, UploadPackRequest.Wants wants)
    {
        if (wants.Unsupported || wants.Refs.Count > GitMirror.MaxOnDemand)
        {
            return (false, "the request wants objects or refs in a form Hoard does not fetch by (SHA-256 ids, unusual ref names, very many refs)");
        }
        var patterns = options.GitRefsOf(spec.Name);
        var uncovered = wants.Refs.Where(r => r != "HEAD" && !UploadPackRequest.Covers(patterns, r)).ToList();
        var covered = wants.Refs.Where(r => UploadPackRequest.Covers(patterns, r)).ToList();
        var missing = await mirrors.MissingAsync(mirror, wants.Objects, covered, ctx.RequestAborted);
        var fetched = missing.Count > 0 || uncovered.Count > 0 || !mirrors.Exists(mirror);
        // Objects a fetch a moment ago did not bring do not exist upstream: asking for them again fetches nothing.
        for (var attempt = 0; attempt < 2 && (!mirrors.Exists(mirror) || (missing.Count > 0 && !mirrors.KnownAbsent(mirror, missing))); attempt++)
        {
            var refresh = await mirrors.RefreshAsync(spec, repository, mirror, Authorization(ctx), wants.Objects);
            missing = await mirrors.MissingAsync(mirror, wants.Objects, covered, ctx.RequestAborted);
            if (!refresh.Joined)
            {
                if (refresh.Ok)
                {
                    mirrors.RememberAbsent(mirror, missing);
                }
                break;
            }
        }
        if (!mirrors.Exists(mirror))
        {
            return (fetched, "no mirror (its fetch failed, timed out or is backing off)");
        }
        if (missing.Count > 0)
        {
            return (fetched, $"{missing.Count} wanted objects or refs are not in the mirror");
        }
        if (uncovered.Count > 0 && !await mirrors.FetchRefsForClientAsync(spec, repository, mirror, Authorization(ctx), uncovered, ctx.RequestAborted))
        {
            return (fetched, $"{uncovered.Count} refs outside the mirror's patterns could not be fetched for this client");
        }
        return (fetched, null);
    }

    /// <summary>Runs upload-pack for the pack cache: its output, progress removed, as if an upstream had sent it.</summary>
    private Task<HttpResponseMessage> ProducePackAsync(string mirror, string gitProtocol, byte[] body, CancellationToken ct) =>
        ProduceAsync(mirror, ["upload-pack", "--stateless-rpc", mirror], gitProtocol, body, sideBand: true, "application/x-git-upload-pack-result", ct);

    /// <summary>
    /// Runs git on the mirror for the store (a pack, a bundle): its stdout as if an upstream had sent it. The output
    /// may outlive the request that started it (others share it), so it holds its own process slot and mirror lease
    /// until git ends. Side-band progress, where there is any, is removed: stored bytes must be the same for everyone.
    /// </summary>
    private async Task<HttpResponseMessage> ProduceAsync(string mirror, List<string> args, string? gitProtocol, byte[]? body, bool sideBand, string contentType, CancellationToken ct)
    {
        await mirrors.Processes.WaitAsync(ct);
        GitMirrorSpace.Lease? lease = null;
        Process process;
        try
        {
            lease = mirrors.Space.Use(mirror);
            process = Process.Start(GitProcess.Start(args, gitProtocol: gitProtocol))!;
        }
        catch
        {
            lease?.Dispose();
            mirrors.Processes.Release();
            throw;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                if (body is not null)
                {
                    await process.StandardInput.BaseStream.WriteAsync(body, CancellationToken.None);
                }
            }
            catch (IOException)
            {
            }
            finally
            {
                process.StandardInput.Close();
            }
        }, CancellationToken.None);
        _ = process.StandardError.ReadToEndAsync(CancellationToken.None);
        Stream output = new ProcessOutputStream(process, () =>
        {
            lease.Value.Dispose();
            mirrors.Processes.Release();
        });
        var content = new StreamContent(sideBand ? new ProgressFilterStream(output) : output);
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        return new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = content };
    }

    /// <summary>git upload-pack on the mirror, its stdout streamed to the client; killed if the client leaves.</summary>
    private async Task RunUploadPackAsync(HttpContext ctx, string mirror, bool advertise, byte[]? body, SemaphoreSlim? slots = null)
    {
        var gitProtocol = GitProtocolHeader(ctx);
        slots ??= mirrors.Processes;
        await slots.WaitAsync(ctx.RequestAborted);
        try
        {
            List<string> args = advertise ? ["upload-pack", "--stateless-rpc", "--advertise-refs", mirror] : ["upload-pack", "--stateless-rpc", mirror];
            using var p = Process.Start(GitProcess.Start(args, gitProtocol: gitProtocol))!;
            var stderr = p.StandardError.ReadToEndAsync();
            ctx.Response.ContentType = advertise ? "application/x-git-upload-pack-advertisement" : "application/x-git-upload-pack-result";
            ctx.Response.Headers.CacheControl = "no-cache";
            var feed = Task.Run(async () =>
            {
                try
                {
                    if (body is not null)
                    {
                        await p.StandardInput.BaseStream.WriteAsync(body);
                    }
                }
                catch (IOException)
                {
                    // upload-pack ended early; its stderr says why.
                }
                finally
                {
                    p.StandardInput.Close();
                }
            });
            if (advertise && !UploadPackRequest.IsV2(gitProtocol))
            {
                await ctx.Response.Body.WriteAsync("001e# service=git-upload-pack\n0000"u8.ToArray(), ctx.RequestAborted);
            }
            try
            {
                await p.StandardOutput.BaseStream.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
                await p.WaitForExitAsync(ctx.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                return;
            }
            await feed;
            if (p.ExitCode != 0)
            {
                LogUploadPackFailed(logger, mirror, p.ExitCode, (await stderr).Trim());
            }
        }
        finally
        {
            slots.Release();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "git upload-pack on {Mirror} exited {Code}: {Error}")]
    private static partial void LogUploadPackFailed(ILogger logger, string mirror, int code, string error);
}
