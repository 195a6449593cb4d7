using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Upstream;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Unit;

/// <summary>Secrets from files: --credentials, --admin-token-file, --cluster-secret-file.</summary>
public sealed class SecretSettingsTests
{
    private const string Token = "tok@en:with/odd%chars";

    [Fact]
    public void A_credentials_file_sets_user_info_on_every_upstream_of_that_name_and_urlcredentials_reads_it_back()
    {
        using var temp = new TempDir();
        var file = Path.Combine(temp.Path, "credentials");
        File.WriteAllText(file, $"# upstream credentials\n\ninternal = robot:{Token}\n  # indented comment\nghcr.io=me@corp.example:ghp_123\r\n");
        var (options, errors) = Load(file, new()
        {
            ["pypi"] = ["https://pypi.org/simple/", "internal=https://pkgs.corp.example/simple/"],
            ["registry"] = ["ghcr.io=https://ghcr.io"],
            ["files"] = ["internal=https://files.corp.example/"],
        });
        Assert.Empty(errors);
        var pypi = options.Pypi.Single(p => p.Name == "internal").Url;
        Assert.Equal(Basic("robot", Token), UrlCredentials.Basic(pypi));
        Assert.Equal("https://pkgs.corp.example/simple/", UrlCredentials.WithoutUserInfo(pypi).ToString());
        Assert.Equal(Basic("robot", Token), UrlCredentials.Basic(options.Files.Single().Url));
        Assert.Equal(Basic("me@corp.example", "ghp_123"), UrlCredentials.Basic(options.Registries.Single(r => r.Name == "ghcr.io").Url));
        Assert.Null(UrlCredentials.Basic(options.DefaultPypiIndex.Url));
        Assert.DoesNotContain("robot", UpstreamClient.Redact(pypi), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("internal robot:s3cret-value")]
    [InlineData("internal=robot-s3cret-value")]
    [InlineData("internal=:s3cret-value")]
    [InlineData("=robot:s3cret-value")]
    [InlineData("Bad Name=robot:s3cret-value")]
    public void A_malformed_line_is_an_error_naming_the_line_and_not_the_secret(string line)
    {
        using var temp = new TempDir();
        var file = Path.Combine(temp.Path, "credentials");
        File.WriteAllText(file, "# first\n\n" + line + "\n");
        var (_, errors) = Load(file, new() { ["pypi"] = ["internal=https://pkgs.corp.example/simple/"] });
        var error = Assert.Single(errors);
        Assert.Contains($"--credentials '{file}' line 3: expected NAME=USER:TOKEN", error, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_name_that_matches_no_upstream_is_an_error_naming_it()
    {
        using var temp = new TempDir();
        var file = Path.Combine(temp.Path, "credentials");
        File.WriteAllText(file, "internl=robot:s3cret-value\n");
        var (_, errors) = Load(file, new() { ["pypi"] = ["internal=https://pkgs.corp.example/simple/"] });
        var error = Assert.Single(errors);
        Assert.Contains("line 1: no --pypi, --registry, --git or --files upstream is named 'internl'", error, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Secret_files_are_trimmed_must_be_long_enough_and_come_from_flags_or_hoard_variables()
    {
        using var temp = new TempDir();
        var good = Path.Combine(temp.Path, "token");
        File.WriteAllText(good, "  0123456789abcdef-token\n");
        var shortFile = Path.Combine(temp.Path, "short");
        File.WriteAllText(shortFile, "tiny-secret\n");
        var env = new Dictionary<string, string?> { ["HOARD_ADMIN_TOKEN_FILE"] = good };
        var (options, errors) = SettingsLoader.Load(null, env, new Dictionary<string, IReadOnlyList<string>> { ["cluster-secret-file"] = [good] });
        Assert.Empty(errors);
        Assert.Equal("0123456789abcdef-token", options.AdminToken);
        Assert.Equal("0123456789abcdef-token", options.ClusterSecret);

        (_, errors) = SettingsLoader.Load(null, new Dictionary<string, string?>(), new Dictionary<string, IReadOnlyList<string>> { ["admin-token-file"] = [shortFile] });
        var error = Assert.Single(errors);
        Assert.Contains($"--admin-token-file '{shortFile}': the secret must be at least 16 characters", error, StringComparison.Ordinal);
        Assert.DoesNotContain("tiny-secret", error, StringComparison.Ordinal);

        (_, errors) = SettingsLoader.Load(null, new Dictionary<string, string?> { ["HOARD_CLUSTER_SECRET"] = "0123456789abcdef-other" },
            new Dictionary<string, IReadOnlyList<string>> { ["cluster-secret-file"] = [good] });
        Assert.Contains(errors, e => e.Contains("--cluster-secret and --cluster-secret-file are both set", StringComparison.Ordinal));
        Assert.All(SettingsLoader.All.Where(s => s.Name.EndsWith("-file", StringComparison.Ordinal) || s.Name == "credentials"), s => Assert.StartsWith("HOARD_", s.EnvVar, StringComparison.Ordinal));
    }

    private static (HoardOptions Options, List<string> Errors) Load(string credentials, Dictionary<string, IReadOnlyList<string>> flags)
    {
        flags["credentials"] = [credentials];
        return SettingsLoader.Load(null, new Dictionary<string, string?>(), flags);
    }

    private static string Basic(string user, string password) => Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":" + password));
}
