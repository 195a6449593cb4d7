using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>Upstream credentials given only in a --credentials file reach an upstream behind basic auth.</summary>
public sealed class CredentialsTests
{
    [Fact]
    public async Task A_pypi_upstream_behind_basic_auth_is_reached_with_credentials_from_the_credentials_file_only()
    {
        using var temp = new TempDir();
        const string password = "p@ss:w/rd%42#x";
        var (code, htpasswd) = await Pip.RunAsync("htpasswd", ["-bn", "robot", password]);
        Assert.True(code == 0, htpasswd);
        var auth = temp.Sub("auth");
        File.WriteAllText(Path.Combine(auth, "htpasswd"), htpasswd.Trim() + "\n");
        var index = new PackageIndex(temp.Sub("upstream"));
        var wheel = index.AddWheel("private-demo", "1.0");
        index.WriteHtml();
        await using var nginx = new Nginx(index.Root, $"auth_basic \"private\"; auth_basic_user_file {auth}/htpasswd;");
        await nginx.StartAsync();
        using (var anonymous = new HttpClient())
        {
            Assert.Equal(401, (int)(await anonymous.GetAsync(nginx.BaseUrl + "/simple/private-demo/")).StatusCode);
        }

        var credentials = Path.Combine(temp.Path, "credentials");
        File.WriteAllText(credentials, $"# upstream credentials for hoard\n\nprivate=robot:{password}\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(credentials, UnixFileMode.UserRead | UnixFileMode.UserWrite); // as the README recommends
        }
        var port = Ports.Free();
        await using var hoard = HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data"),
            "--pypi", $"private={nginx.BaseUrl}/simple/", "--credentials", credentials]);
        await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));

        using var pip = await Pip.CreateAsync();
        var (installed, output) = await pip.InstallAsync($"http://127.0.0.1:{port}/simple/", "private-demo");
        Assert.True(installed == 0, output + hoard.Output);
        Assert.Equal(1, nginx.Count("/simple/private-demo/", status: 200));
        Assert.Equal(1, nginx.Count("/packages/" + wheel.Filename, status: 200));
        Assert.Contains($"Upstream pypi private = {nginx.BaseUrl}/simple/", hoard.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("p@ss", hoard.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("robot", hoard.Output, StringComparison.Ordinal);
    }
}
