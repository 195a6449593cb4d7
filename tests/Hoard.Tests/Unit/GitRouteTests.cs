using Hoard.Core.Git;

namespace Hoard.Tests.Unit;

public sealed class GitRouteTests
{
    [Theory]
    [InlineData("org/repo.git/info/refs", "GET", "git-upload-pack", GitAction.InfoRefs, "org/repo.git")]
    [InlineData("org/repo.git/info/refs", "GET", "git-receive-pack", GitAction.ReceivePack, "org/repo.git")]
    [InlineData("org/repo.git/git-upload-pack", "POST", "", GitAction.UploadPack, "org/repo.git")]
    [InlineData("org/repo.git/git-receive-pack", "POST", "", GitAction.ReceivePack, "org/repo.git")]
    [InlineData("org/repo.git/-/bundle", "GET", "", GitAction.Bundle, "org/repo.git")]
    [InlineData("org/repo.git/info/lfs/objects/batch", "POST", "", GitAction.LfsBatch, "org/repo.git")]
    [InlineData("org/repo.git/info/lfs/locks", "GET", "", GitAction.LfsForward, "org/repo.git")]
    public void Smart_http_paths_parse_to_their_action_and_repository(string rest, string method, string service, GitAction action, string repository)
    {
        var (target, _, error) = GitRoute.Parse(rest, method, service);
        Assert.True(target is not null, error);
        Assert.Equal(action, target.Action);
        Assert.Equal(repository, target.Repository);
    }

    [Theory]
    [InlineData("a.git/b/info/refs", "GET", "git-upload-pack", 400)] // one mirror inside another
    [InlineData("../x/info/refs", "GET", "git-upload-pack", 400)]
    [InlineData("org/.hidden/info/refs", "GET", "git-upload-pack", 400)]
    [InlineData("org/repo.git/info/refs", "GET", "", 403)] // dumb HTTP
    [InlineData("org/repo.git/HEAD", "GET", "", 404)]
    [InlineData("org/repo.git/git-upload-pack", "GET", "", 404)]
    [InlineData("-/lfs/not-a-digest", "GET", "", 400)]
    public void Unsafe_or_unknown_paths_are_refused_with_a_status(string rest, string method, string service, int status)
    {
        var (target, actual, _) = GitRoute.Parse(rest, method, service);
        Assert.Null(target);
        Assert.Equal(status, actual);
    }

    [Theory]
    [InlineData("refs/pull/7/head", true)]
    [InlineData("refs/heads/main:refs/heads/other", false)] // a refspec, not a name
    [InlineData("+refs/heads/main", false)]
    [InlineData("refs/heads/../../x", false)]
    [InlineData("refs/hoard/anything", false)]
    [InlineData("refs/heads/a b", false)]
    [InlineData("HEAD", false)]
    public void Only_plain_ref_names_are_fetched_by_name(string name, bool safe) => Assert.Equal(safe, UploadPackRequest.IsRefName(name));

    [Theory]
    [InlineData("refs/heads/main", true)]
    [InlineData("refs/tags/v1.0", true)]
    [InlineData("refs/pull/7/head", false)]
    [InlineData("refs/heads", false)]
    public void The_default_patterns_cover_heads_and_tags(string name, bool covered) =>
        Assert.Equal(covered, UploadPackRequest.Covers(Hoard.Core.Configuration.HoardOptions.DefaultGitRefs, name));
}
