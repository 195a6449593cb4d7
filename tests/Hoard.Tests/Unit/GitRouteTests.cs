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

    private static byte[] Body(params string[] lines) => System.Text.Encoding.ASCII.GetBytes(string.Concat(lines.Select(PktLine.Format)) + "0000");

    [Fact]
    public void Wants_Hoard_cannot_fetch_by_mark_the_request_for_pass_through()
    {
        var sha1 = new string('a', 40);
        var plain = UploadPackRequest.ParseWants(Body("command=fetch", $"want {sha1}", "want-ref refs/pull/7/head"));
        Assert.Equal([sha1], plain.Objects);
        Assert.Equal(["refs/pull/7/head"], plain.Refs);
        Assert.False(plain.Unsupported);
        Assert.True(UploadPackRequest.ParseWants(Body($"want {new string('b', 64)}")).Unsupported); // SHA-256
        Assert.True(UploadPackRequest.ParseWants(Body("want-ref refs/heads/x:refs/heads/main")).Unsupported);
        Assert.True(UploadPackRequest.ParseWants(Body("want HEAD~1:secret.txt padding padding pad")).Unsupported);
        Assert.False(UploadPackRequest.ParseWants(Body($"want {sha1} multi_ack side-band-64k ofs-delta")).Unsupported);
        // A clone with ref-in-want asks for HEAD by name.
        Assert.Equal(["HEAD", "refs/heads/main"], UploadPackRequest.ParseWants(Body("want-ref HEAD", "want-ref refs/heads/main")).Refs);
    }
}
