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
        var lease = mirrors.Space.Use(mirror);
        Process process;
        try
        {
            process = Process.Start(GitProcess.Start(args, gitProtocol: gitProtocol))!;
        }
        catch
        {
            lease.Dispose();
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
            lease.Dispose();
            mirrors.Processes.Release();
        });
        var content = new StreamContent(sideBand ? new ProgressFilterStream(output) : output);
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        return new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = content };
    }

    /// <summary>git upload-pack on the mirror, its stdout streamed to the client; killed if the client leaves.</summary>
    private async Task RunUploadPackAsync(HttpContext ctx, string mirror, bool advertise, byte[]? body)
    {
        var gitProtocol = GitProtocolHeader(ctx);
        await mirrors.Processes.WaitAsync(ctx.RequestAborted);
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
            mirrors.Processes.Release();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "git upload-pack on {Mirror} exited {Code}: {Error}")]
    private static partial void LogUploadPackFailed(ILogger logger, string mirror, int code, string error);
}
