using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>`hoard --help` as a new user reads it: every protocol, where it is served, and every command.</summary>
public sealed class HelpTests
{
    [Fact]
    public async Task Help_describes_every_protocol_and_command()
    {
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "--help"]);
        Assert.True(code == 0, output);
        foreach (var text in new[] { "PyPI        /simple/", "Registries  /v2/", "Git         /git/NAME/REPO", "Files       /files/NAME/PATH", "Cluster     ", "/metrics", "/_hoard/status" })
        {
            Assert.Contains(text, output, StringComparison.Ordinal);
        }
        foreach (var command in new[] { "serve", "config", "status", "health", "warm", "pin", "unpin", "version" })
        {
            Assert.Matches($@"\n  {command}\b", output);
        }
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "warm", "--help"]);
        Assert.True(code == 0, output);
        foreach (var option in new[] { "--requirement", "--pylock", "--package", "--image", "--images-file", "--git", "--python-version", "--platform", "--all-nodes", "--admin-token-file" })
        {
            Assert.Contains(option, output, StringComparison.Ordinal);
        }
    }
}
