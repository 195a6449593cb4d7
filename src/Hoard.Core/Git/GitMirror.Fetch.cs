using System.Diagnostics;
using Hoard.Core.Configuration;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Git;

/// <summary>Making and updating a mirror: the git processes, each watched by the idle timeout.</summary>
public sealed partial class GitMirror
{
    /// <summary>Most objects and refs one on-demand fetch asks upstream for; a request wanting more is passed through.</summary>
    public const int MaxOnDemand = 256;

    /// <summary>
    /// Brings the mirror up to date with upstream's heads and tags (creating it if needed), then fetches by object id
    /// what the client wants that those refs did not bring. Holds one process slot throughout. True when the mirror
    /// exists and its refs were fetched; the by-id part is best effort (a client whose wants are still missing is
    /// passed through to upstream, and one pull request must not put a mirror into back-off for everyone).
    /// </summary>
    private async Task<bool> FetchAsync(UpstreamSpec upstream, string repository, string mirror, string? authorization, IReadOnlyList<string> wants)
    {
        // Wants that do not exist upstream (made up, or of a ref deleted since) would each cost a fetch: a
        // repository is fetched at most once per MinFetchInterval; requests meanwhile wait and share the next one.
        if (_lastFetchEnded.TryGetValue(mirror, out var last) && Stopwatch.GetElapsedTime(last) is var since && since < MinFetchInterval)
        {
            await Task.Delay(MinFetchInterval - since);
        }
        authorization ??= ConfiguredAuthorization(upstream);
        var patterns = options.GitRefsOf(upstream.Name);
        var started = Stopwatch.GetTimestamp();
        await Processes.WaitAsync();
        try
        {
            // A fetch that finished while this one waited for a slot may have brought everything already.
            if (Exists(mirror) && wants.Count > 0 && (await MissingHoldingSlotAsync(mirror, wants, [], CancellationToken.None)).Count == 0)
            {
                return true;
            }
            var (code, error) = Exists(mirror)
                ? await UpdateAsync(upstream, mirror, patterns, authorization)
                : await CreateAsync(upstream, repository, mirror, patterns, authorization);
            var elapsed = Stopwatch.GetElapsedTime(started);
            RememberFetch(mirror);
            metrics.GitMirrorFetch(upstream.Name, code == 0 ? "ok" : "error", elapsed);
            if (code != 0)
            {
                LogFetchFailed(logger, upstream.Name, repository, error);
                return false;
            }
            LogFetched(logger, upstream.Name, repository, elapsed.TotalMilliseconds);
            var missing = await MissingHoldingSlotAsync(mirror, wants, [], CancellationToken.None);
            if (missing.Count is > 0 and <= MaxOnDemand)
            {
                await FetchOnDemandAsync(upstream, repository, mirror, authorization, missing, []);
            }
            return true;
        }
        finally
        {
            Processes.Release();
        }
    }

    private static string? ConfiguredAuthorization(UpstreamSpec upstream) =>
        Upstream.UrlCredentials.Basic(upstream.Url) is { } basic ? "Basic " + basic : null;

    /// <summary>
    /// Fetches refs outside the mirror's patterns (`want-ref refs/pull/7/head`) by name, for one request, with that
    /// client's credentials, never joined with another's fetch: a ref served from the mirror must be upstream's
    /// current value, fetched for a client upstream gives it to (a server may hide single refs, as Gerrit does).
    /// False: pass the request through.
    /// </summary>
    public async Task<bool> FetchRefsForClientAsync(UpstreamSpec upstream, string repository, string mirror, string? authorization, IReadOnlyList<string> refs, CancellationToken ct)
    {
        await Processes.WaitAsync(ct);
        try
        {
            using var lease = Space.Use(mirror);
            return Exists(mirror) && await FetchOnDemandAsync(upstream, repository, mirror, authorization ?? ConfiguredAuthorization(upstream), [], refs);
        }
        finally
        {
            Processes.Release();
        }
    }

    /// <summary>
    /// A new mirror: an empty bare repository fetching only the configured refs (not clone --mirror, which wants
    /// every ref upstream advertises: on GitHub, every pull request ever opened), made beside the final path and
    /// renamed into place, so a half-made mirror is never visible.
    /// </summary>
    private async Task<(int Code, string Error)> CreateAsync(UpstreamSpec upstream, string repository, string mirror, IReadOnlyList<string> patterns, string? authorization)
    {
        var temp = mirror + ".tmp-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(Path.GetDirectoryName(mirror)!);
        try
        {
            var (code, _, error) = await GitProcess.RunAsync(["init", "--bare", "--quiet", temp], null, CancellationToken.None);
            if (code != 0)
            {
                return (code, error.Trim());
            }
            var url = Upstream.UrlCredentials.WithoutUserInfo(upstream.Url) + repository;
            await ConfigureAsync(temp, url, patterns);
            await SeedFromPeerAsync(upstream, repository, temp, patterns);
            (code, error) = await FetchRefsAsync(temp, authorization);
            if (code != 0)
            {
                return (code, error);
            }
            await CopyHeadAsync(temp, authorization);
            Directory.Move(temp, mirror);
            return (0, "");
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }

    /// <summary>
    /// In a cluster, a new mirror starts from another node's copy (over the signed peer endpoint, as git smart HTTP):
    /// the fetch from upstream that follows then brings only what changed since. Best effort: any failure leaves the
    /// mirror to upstream alone. The client was accepted by upstream for this repository before any of this.
    /// </summary>
    private async Task SeedFromPeerAsync(UpstreamSpec upstream, string repository, string mirror, IReadOnlyList<string> patterns)
    {
        if (Peers is null || await Peers.FindMirrorAsync(upstream.Name, repository) is not { } peer)
        {
            return;
        }
        var started = Stopwatch.GetTimestamp();
        List<string> args = ["-C", mirror, "fetch", "--no-tags", "--no-write-fetch-head", "--progress", peer.Url.ToString(), .. patterns.Select(p => $"+{p}:{p}")];
        var (code, error) = await GitProcess.RunWatchedAsync(args, null, options.GitFetchIdleTimeout, time, peer.Headers);
        metrics.GitMirrorFetch(upstream.Name, code == 0 ? "peer" : "peer_error", Stopwatch.GetElapsedTime(started));
        if (code == 0)
        {
            LogSeeded(logger, upstream.Name, repository, peer.Node, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        else
        {
            LogSeedFailed(logger, upstream.Name, repository, peer.Node, error);
        }
    }

    /// <summary>Fetches the configured refs into an existing mirror, first reconfiguring one made with other refs.</summary>
    private async Task<(int Code, string Error)> UpdateAsync(UpstreamSpec upstream, string mirror, IReadOnlyList<string> patterns, string? authorization)
    {
        var (_, configured, _) = await GitProcess.RunAsync(["-C", mirror, "config", "--get", "hoard.refs"], null, CancellationToken.None);
        if (configured.Trim() != string.Join(' ', patterns))
        {
            var (_, url, _) = await GitProcess.RunAsync(["-C", mirror, "config", "--get", "remote.origin.url"], null, CancellationToken.None);
            await ConfigureAsync(mirror, url.Trim(), patterns, markConfigured: false);
            // Marked as configured for these patterns only once the other refs are gone: a failed drop is retried.
            if (await DropUncoveredRefsAsync(mirror, patterns))
            {
                await GitProcess.RunAsync(["-C", mirror, "config", "hoard.refs", string.Join(' ', patterns)], null, CancellationToken.None);
            }
        }
        return await FetchRefsAsync(mirror, authorization);
    }

    private async Task<(int Code, string Error)> FetchRefsAsync(string mirror, string? authorization) =>
        await GitProcess.RunWatchedAsync(["-C", mirror, "fetch", "--prune", "--no-tags", "--progress", "origin"], authorization, options.GitFetchIdleTimeout, time);

    /// <summary>
    /// Fetches objects by id and refs by name that the configured refs do not hold (a pull request's head). By id
    /// works where upstream allows it (protocol v2 allows any object; GitHub and GitLab allow reachable ones).
    /// Objects fetched by id are kept by no ref: a later repack keeps them for gc's grace period (two weeks).
    /// </summary>
    private async Task<bool> FetchOnDemandAsync(UpstreamSpec upstream, string repository, string mirror, string? authorization, IReadOnlyList<string> objects, IReadOnlyList<string> refs)
    {
        List<string> args = ["-C", mirror, "-c", "protocol.version=2", "fetch", "--no-tags", "--no-write-fetch-head", "--progress", "origin"];
        args.AddRange(objects);
        args.AddRange(refs.Select(r => $"+{r}:{r}"));
        var (code, error) = await GitProcess.RunWatchedAsync(args, authorization, options.GitFetchIdleTimeout, time);
        metrics.GitMirrorFetch(upstream.Name, code == 0 ? "on_demand" : "on_demand_error", TimeSpan.Zero);
        if (code != 0)
        {
            LogOnDemandFailed(logger, upstream.Name, repository, objects.Count, refs.Count, error);
        }
        return code == 0;
    }

    private static async Task ConfigureAsync(string mirror, string url, IReadOnlyList<string> patterns, bool markConfigured = true)
    {
        await GitProcess.RunAsync(["-C", mirror, "config", "--unset-all", "remote.origin.fetch"], null, CancellationToken.None);
        await GitProcess.RunAsync(["-C", mirror, "config", "--unset-all", "remote.origin.mirror"], null, CancellationToken.None);
        foreach (var pattern in patterns)
        {
            await GitProcess.RunAsync(["-C", mirror, "config", "--add", "remote.origin.fetch", $"+{pattern}:{pattern}"], null, CancellationToken.None);
        }
        // upload-pack serves clients any object the mirror has (it answers only clients upstream accepted);
        // maintenance runs after fetches, in the foreground, inside Hoard's process slot.
        foreach (var (key, value) in new[]
        {
            ("remote.origin.url", url), ("uploadpack.allowFilter", "true"), ("uploadpack.allowAnySHA1InWant", "true"),
            ("uploadpack.allowRefInWant", "true"), ("gc.autoDetach", "false"), ("maintenance.auto", "false"),
            // Objects fetched by id are kept by no ref: a repack keeps them in one cruft pack, not as loose files.
            ("gc.cruftPacks", "true"),
        })
        {
            await GitProcess.RunAsync(["-C", mirror, "config", key, value], null, CancellationToken.None);
        }
        if (markConfigured)
        {
            await GitProcess.RunAsync(["-C", mirror, "config", "hoard.refs", string.Join(' ', patterns)], null, CancellationToken.None);
        }
        await GitProcess.RunAsync(["-C", mirror, "config", "--unset-all", "gc.auto"], null, CancellationToken.None);
    }

    /// <summary>A mirror made by `clone --mirror` (older Hoard) holds every upstream ref; those not configured go.</summary>
    private static async Task<bool> DropUncoveredRefsAsync(string mirror, IReadOnlyList<string> patterns)
    {
        var (code, refs, _) = await GitProcess.RunAsync(["-C", mirror, "for-each-ref", "--format=%(refname)"], null, CancellationToken.None);
        var drop = refs.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(r => !UploadPackRequest.Covers(patterns, r)).ToList();
        if (code == 0 && drop.Count > 0)
        {
            (code, _, _) = await GitProcess.RunAsync(["-C", mirror, "update-ref", "--stdin"], null, CancellationToken.None, string.Concat(drop.Select(r => $"delete {r}\n")));
        }
        return code == 0;
    }

    /// <summary>The mirror's HEAD names upstream's default branch, for clients served from it while upstream is down.</summary>
    private async Task CopyHeadAsync(string mirror, string? authorization)
    {
        using var timeout = new CancellationTokenSource(options.GitFetchIdleTimeout, time);
        int code;
        string output;
        try
        {
            (code, output, _) = await GitProcess.RunAsync(["-C", mirror, "ls-remote", "--symref", "origin", "HEAD"], authorization, timeout.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        var head = output.Split('\n').FirstOrDefault(l => l.StartsWith("ref: ", StringComparison.Ordinal))?[5..].Split('\t')[0];
        if (code == 0 && head is not null && UploadPackRequest.IsRefName(head))
        {
            await GitProcess.RunAsync(["-C", mirror, "symbolic-ref", "HEAD", head], null, CancellationToken.None);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git mirror {Upstream}/{Repository}: fetching {Objects} objects and {Refs} refs on demand failed (the client goes to upstream): {Error}")]
    private static partial void LogOnDemandFailed(ILogger logger, string upstream, string repository, int objects, int refs, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "Git mirror {Upstream}/{Repository}: started from node {Node}'s mirror in {Ms:0} ms; catching up with upstream")]
    private static partial void LogSeeded(ILogger logger, string upstream, string repository, string node, double ms);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Git mirror {Upstream}/{Repository}: could not start from node {Node}'s mirror, fetching all from upstream: {Error}")]
    private static partial void LogSeedFailed(ILogger logger, string upstream, string repository, string node, string error);
}
