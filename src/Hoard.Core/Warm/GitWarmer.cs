using Hoard.Core.Configuration;
using Hoard.Core.Git;

namespace Hoard.Core.Warm;

/// <summary>
/// Warms a repository given by its upstream URL: discovery (upstream accepts the request and the mirror learns the
/// refs), then the clone bundle, which makes or refreshes the local mirror and stores the bundle clones start from.
/// </summary>
/// <param name="mirrorOf">The name of a repository's mirror in the mirror space (IEvictableSpace.NameOf), for a pin to keep it.</param>
public sealed class GitWarmer(SelfClient self, HoardOptions options, Func<UpstreamSpec, string, string> mirrorOf)
{
    public async Task WarmAsync(string url, WarmItem item, CancellationToken ct)
    {
        if (Locate(url, options) is not { } found)
        {
            item.Fail($"not under a configured --git upstream (configured: {string.Join(", ", options.Git.Select(g => $"{g.Name}={g.Url}"))})");
            return;
        }
        var path = $"/git/{found.Upstream.Name}/{found.Repository}";
        var refs = await self.GetAsync(path + "/info/refs?service=git-upload-pack", null, null, ct);
        if (!refs.Ok)
        {
            item.Fail("discovery: " + refs.Error);
            return;
        }
        if (options.GitBundleInterval <= TimeSpan.Zero)
        {
            item.Fail("clone bundles are turned off (--git-bundle-interval 0): nothing to warm but discovery");
            return;
        }
        var bundle = await self.GetAsync(path + "/-/bundle", null, item.Received, ct);
        item.Count(bundle, "the clone bundle", path + "/-/bundle");
        if (bundle.Ok)
        {
            item.AddMirror(mirrorOf(found.Upstream, found.Repository));
        }
    }

    /// <summary>The configured upstream a repository URL lies under, and the repository's path below it.</summary>
    public static (UpstreamSpec Upstream, string Repository)? Locate(string url, HoardOptions options)
    {
        if (!Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            return null;
        }
        var text = uri.GetLeftPart(UriPartial.Path).TrimEnd('/');
        foreach (var spec in options.Git.OrderByDescending(g => g.Url.AbsoluteUri.Length))
        {
            var prefix = spec.Url.GetLeftPart(UriPartial.Path);
            if (text.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && text.Length > prefix.Length)
            {
                var repository = Uri.UnescapeDataString(text[prefix.Length..]);
                return GitRoute.IsRepositoryPath(repository) ? (spec, repository) : null;
            }
        }
        return null;
    }
}
