using System.Text.RegularExpressions;

namespace Hoard.Core.Git;

public enum GitAction
{
    /// <summary>GET /git/NAME/-/lfs/&lt;oid&gt;?t=: an LFS object Hoard handed out a link for.</summary>
    LfsObject,

    /// <summary>POST &lt;repo&gt;/info/lfs/objects/batch.</summary>
    LfsBatch,

    /// <summary>Any other &lt;repo&gt;/info/lfs/ path (locks, verify): forwarded.</summary>
    LfsForward,

    /// <summary>GET &lt;repo&gt;/info/refs?service=git-upload-pack: discovery.</summary>
    InfoRefs,

    /// <summary>POST &lt;repo&gt;/git-upload-pack: ls-refs, fetch, bundle-uri.</summary>
    UploadPack,

    /// <summary>A push, or its discovery: forwarded.</summary>
    ReceivePack,

    /// <summary>GET &lt;repo&gt;/-/bundle: the clone bundle.</summary>
    Bundle,
}

/// <summary>A parsed /git/NAME/… request: what it asks for and of which repository (empty for an LFS object).</summary>
public sealed record GitTarget(GitAction Action, string Repository, string Rest);

/// <summary>
/// Parses the path after /git/NAME/ and the method. Only safe repository paths come out of here; anything else is
/// a status and a message, before any outbound request.
/// </summary>
public static partial class GitRoute
{
    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._~-]*(/[A-Za-z0-9_][A-Za-z0-9._~-]*){0,8}$")]
    private static partial Regex RepositoryPattern();

    public static (GitTarget? Target, int Status, string Error) Parse(string rest, string method, string service)
    {
        var get = method == "GET";
        var post = method == "POST";
        if (rest.StartsWith("-/lfs/", StringComparison.Ordinal))
        {
            return Fetch.FetchEngine.IsDigest(rest["-/lfs/".Length..]) && get
                ? (new GitTarget(GitAction.LfsObject, "", rest), 0, "")
                : (null, 400, "expected GET /git/NAME/-/lfs/<sha256 oid>?t=TOKEN");
        }
        string repository;
        GitAction action;
        var lfsAt = rest.IndexOf("/info/lfs/", StringComparison.Ordinal);
        if (lfsAt > 0)
        {
            repository = rest[..lfsAt];
            action = rest.EndsWith("/info/lfs/objects/batch", StringComparison.Ordinal) && post ? GitAction.LfsBatch : GitAction.LfsForward;
        }
        else if (rest.EndsWith("/-/bundle", StringComparison.Ordinal) && get)
        {
            (repository, action) = (rest[..^"/-/bundle".Length], GitAction.Bundle);
        }
        else if (rest.EndsWith("/info/refs", StringComparison.Ordinal))
        {
            repository = rest[..^"/info/refs".Length];
            switch (service, get)
            {
                case ("git-upload-pack", true):
                    action = GitAction.InfoRefs;
                    break;
                case ("git-receive-pack", true):
                    action = GitAction.ReceivePack;
                    break;
                default:
                    return (null, 403, "only git-upload-pack and git-receive-pack are served (dumb HTTP is not)");
            }
        }
        else if ((rest.EndsWith("/git-upload-pack", StringComparison.Ordinal) || rest.EndsWith("/git-receive-pack", StringComparison.Ordinal)) && post)
        {
            var slash = rest.LastIndexOf('/');
            repository = rest[..slash];
            action = rest[(slash + 1)..] == "git-upload-pack" ? GitAction.UploadPack : GitAction.ReceivePack;
        }
        else
        {
            return (null, 404, "not a git smart HTTP path: expected <repo>/info/refs, <repo>/git-upload-pack, <repo>/git-receive-pack or <repo>/-/bundle");
        }
        return IsRepositoryPath(repository) ? (new GitTarget(action, repository, rest), 0, "") : (null, 400, "invalid repository path");
    }

    /// <summary>
    /// A repository path Hoard will mirror: safe segments, none hidden, and no segment but the last naming a repository
    /// directory (`a.git/b` would put one mirror inside another).
    /// </summary>
    public static bool IsRepositoryPath(string repository)
    {
        var segments = repository.Split('/');
        return RepositoryPattern().IsMatch(repository) && !segments.Any(s => s.StartsWith('.'))
            && !segments[..^1].Any(s => s.EndsWith(".git", StringComparison.Ordinal) || s.EndsWith(".bare", StringComparison.Ordinal));
    }
}
