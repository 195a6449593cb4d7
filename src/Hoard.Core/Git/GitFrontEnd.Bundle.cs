using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Git;

/// <summary>
/// Clone bundles (bundle-uri): a repository's heads and tags as one `git bundle` file, kept in the store like any
/// blob (single flight, verified, evicted LRU, shared by peers), at /git/NAME/&lt;repo&gt;/-/bundle. A client
/// (`git clone --bundle-uri=URL`, or git ≥ 2.42 with transfer.bundleURI=true, which asks with protocol v2's
/// bundle-uri command) unpacks it locally, then fetches only what is newer: Hoard streams one file instead of
/// running pack-objects for every clone.
/// </summary>
public sealed partial class GitFrontEnd
{
    private static readonly ResponseShape BundleShape = new("application/x-git-bundle", "no-cache");

    /// <summary>Bundles are advertised (v2 bundle-uri) for repositories cloned at least this often.</summary>
    private const int ClonesBeforeBundle = 2;

    /// <summary>Per mirror: the current bundle's store key and when it was chosen; clones seen so far.</summary>
    private readonly ConcurrentDictionary<string, (string Key, long AtMs)> _bundles = new(StringComparer.Ordinal);

    private readonly ConcurrentDictionary<string, int> _clones = new(StringComparer.Ordinal);

    private static string BundlePath(string repository) => repository + "/-/bundle";

    /// <summary>A clone (a fetch with no haves) of this mirror: counted, bounded, for the bundle advertisement.</summary>
    private void CountClone(string mirror)
    {
        if (_clones.Count > 10_000)
        {
            _clones.Clear();
        }
        _clones.AddOrUpdate(mirror, 1, (_, n) => n + 1);
    }

    private bool BundleAdvertised(string mirror) =>
        options.GitBundleInterval > TimeSpan.Zero && _clones.TryGetValue(mirror, out var n) && n >= ClonesBeforeBundle && mirrors.Exists(mirror);

    /// <summary>
    /// After a fetch moved a repository cloned at least twice: its bundle is made now, in the background, not when the
    /// next clone asks (at most once per --git-bundle-interval: the key stays the same until then).
    /// </summary>
    private void WarmBundle(UpstreamSpec spec, string repository, string mirror)
    {
        if (!BundleAdvertised(mirror))
        {
            return;
        }
        var request = BundleRequest(spec, repository, mirror);
        _ = Task.Run(async () =>
        {
            try
            {
                var lookup = await engine.GetAsync(request, CancellationToken.None);
                lookup.Release();
                if (lookup.Fill is { } fill)
                {
                    await fill.Completed;
                }
            }
            catch (Exception e)
            {
                LogBundleFailed(logger, spec.Name, repository, e.Message);
            }
        });
    }

    private Fetch.ArtifactRequest BundleRequest(UpstreamSpec spec, string repository, string mirror) =>
        new("git", "git/bundle/" + BundleKey(spec, repository, mirror), spec.Name, UpstreamUrl(spec, BundlePath(repository)))
        {
            Producer = ct => ProduceBundleAsync(mirror, ct),
            ShareProduced = true,
        };

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git {Upstream}/{Repository}: making the clone bundle failed: {Error}")]
    private static partial void LogBundleFailed(ILogger logger, string upstream, string repository, string error);

    /// <summary>GET /git/NAME/&lt;repo&gt;/-/bundle: for a client upstream accepted for the repository, as any fetch.</summary>
    private async Task BundleAsync(HttpContext ctx, UpstreamSpec spec, string repository)
    {
        if (options.GitBundleInterval <= TimeSpan.Zero)
        {
            await HttpErrors.WriteAsync(ctx, 404, "clone bundles are turned off (--git-bundle-interval 0)");
            return;
        }
        if (await AuthoriseAsync(ctx, spec, repository) is { } refusal)
        {
            await HttpErrors.WriteAsync(ctx, refusal.Status, refusal.Reason);
            return;
        }
        var mirror = mirrors.PathOf(spec, repository);
        using var lease = mirrors.Space.Use(mirror);
        if (!mirrors.Exists(mirror))
        {
            await mirrors.RefreshAsync(spec, repository, mirror, Authorization(ctx), []);
            if (!mirrors.Exists(mirror))
            {
                await HttpErrors.WriteAsync(ctx, 502, $"could not mirror {spec.Name}/{repository} from upstream");
                return;
            }
        }
        await responder.RespondAsync(ctx, BundleRequest(spec, repository, mirror), BundleShape);
        metrics.Git("bundle", RequestInfo.For(ctx).Outcome.ToString().ToLowerInvariant());
    }

    /// <summary>
    /// Writes the bundle to a file first (git counts and compresses for a long time before it writes a byte, on a big
    /// repository longer than the store's --idle-timeout; its --progress feeds the git idle timeout instead), then hands
    /// the file to the store. The file lives in the mirror (under its lease) and is gone when the store has read it.
    /// </summary>
    private async Task<HttpResponseMessage> ProduceBundleAsync(string mirror, CancellationToken ct)
    {
        var file = Path.Combine(mirror, GitMirrorSpace.BundlePrefix + Guid.NewGuid().ToString("N"));
        await mirrors.Processes.WaitAsync(ct);
        try
        {
            using var lease = mirrors.Space.Use(mirror);
            var (code, error) = await GitProcess.RunWatchedAsync(["-C", mirror, "bundle", "create", "--progress", file, "--branches", "--tags"], null, options.GitFetchIdleTimeout, time);
            if (code != 0)
            {
                File.Delete(file);
                throw new Upstream.UpstreamException("body", 502, "git bundle create failed: " + error);
            }
            var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, FileOptions.Asynchronous | FileOptions.DeleteOnClose);
            var content = new StreamContent(stream);
            content.Headers.TryAddWithoutValidation("Content-Type", "application/x-git-bundle");
            content.Headers.ContentLength = stream.Length;
            return new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = content };
        }
        finally
        {
            mirrors.Processes.Release();
        }
    }

    /// <summary>
    /// The store key of the repository's bundle: the mirror's refs as they were when it was chosen, kept for
    /// --git-bundle-interval. A bundle a little behind is fine (the client fetches the rest); a new one per push
    /// would cost a bundle per push.
    /// </summary>
    private string BundleKey(UpstreamSpec spec, string repository, string mirror)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        if (_bundles.TryGetValue(mirror, out var current) && now - current.AtMs < options.GitBundleInterval.TotalMilliseconds)
        {
            return current.Key;
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{spec.Name}\n{repository}\n"));
        // Refs moving while read (a fetch at that moment): a key of its own, a bundle of whatever the refs are then.
        var key = UploadPackRequest.AppendRefs(hash, mirror, options.GitRefsOf(spec.Name)) ? Convert.ToHexStringLower(hash.GetHashAndReset()) : Guid.NewGuid().ToString("N");
        if (_bundles.Count > 10_000)
        {
            _bundles.Clear(); // bounded; a forgotten bundle key is made again from the refs
        }
        _bundles[mirror] = (key, now);
        return key;
    }

    /// <summary>Protocol v2's bundle-uri command: the bundle list, one bundle holding the heads and tags.</summary>
    private async Task BundleListAsync(HttpContext ctx, UpstreamSpec spec, string repository)
    {
        ctx.Response.ContentType = "application/x-git-upload-pack-result";
        ctx.Response.Headers.CacheControl = "no-cache";
        var body = new StringBuilder();
        if (BundleAdvertised(mirrors.PathOf(spec, repository)))
        {
            var url = $"{ctx.Request.Scheme}://{ctx.Request.Host}/git/{spec.Name}/{BundlePath(repository)}";
            foreach (var line in new[] { "bundle.version=1", "bundle.mode=all", "bundle.heads.uri=" + url })
            {
                body.Append(PktLine.Format(line));
            }
        }
        body.Append("0000");
        metrics.Git("bundle_uri", body.Length > 4 ? "listed" : "none");
        await ctx.Response.WriteAsync(body.ToString(), ctx.RequestAborted);
    }

    /// <summary>
    /// Relays upstream's v2 capability advertisement (a few hundred bytes) with bundle-uri added; an answer larger
    /// than 64 KB is not one, and is relayed as it is.
    /// </summary>
    private static async Task RelayWithBundleUriAsync(HttpContext ctx, HttpResponseMessage response)
    {
        await using var body = await response.Content.ReadAsStreamAsync(ctx.RequestAborted);
        var buffer = new byte[65_536];
        var length = 0;
        int n;
        while (length < buffer.Length && (n = await body.ReadAsync(buffer.AsMemory(length), ctx.RequestAborted)) > 0)
        {
            length += n;
        }
        if (length < buffer.Length)
        {
            await ctx.Response.Body.WriteAsync(WithBundleUri(buffer[..length]), ctx.RequestAborted);
            return;
        }
        await ctx.Response.Body.WriteAsync(buffer, ctx.RequestAborted);
        await body.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
    }

    /// <summary>
    /// A v2 capability advertisement from upstream with `bundle-uri` added before its final flush, so git ≥ 2.42
    /// with transfer.bundleURI asks Hoard for the bundle list. Anything not shaped like one is left as it is.
    /// </summary>
    private static byte[] WithBundleUri(byte[] advertisement)
    {
        var text = Encoding.ASCII.GetString(advertisement);
        if (!text.EndsWith("0000", StringComparison.Ordinal) || !text.Contains("version 2\n", StringComparison.Ordinal) || text.Contains("bundle-uri", StringComparison.Ordinal))
        {
            return advertisement;
        }
        return Encoding.ASCII.GetBytes(text[..^4] + PktLine.Format("bundle-uri") + "0000");
    }
}
