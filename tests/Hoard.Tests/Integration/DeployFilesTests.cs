using System.Text.Json;
using System.Text.RegularExpressions;
using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>deploy/systemd and deploy/config: the unit passes systemd's own check, the examples name every setting.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed partial class DeployFilesTests
{
    [Fact]
    public async Task The_systemd_unit_passes_systemd_analyze_verify_without_a_warning_and_is_hardened()
    {
        using var temp = new TempDir();
        var unit = await File.ReadAllTextAsync(RepoFiles.PathOf("deploy/systemd/hoard.service"));
        // verify checks that ExecStart's program exists: the installed path is swapped for a stand-in here.
        var program = Path.Combine(temp.Path, "hoard");
        await File.WriteAllTextAsync(program, "#!/bin/sh\n");
        File.SetUnixFileMode(program, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.UserWrite);
        Assert.Contains("ExecStart=/usr/local/bin/hoard serve\n", unit, StringComparison.Ordinal);
        var copy = Path.Combine(temp.Path, "hoard.service");
        await File.WriteAllTextAsync(copy, unit.Replace("/usr/local/bin/hoard", program, StringComparison.Ordinal));

        var (code, output) = await Pip.RunAsync("systemd-analyze", ["verify", copy]);

        // An unknown or misspelt directive is only a warning (exit 0): any output at all fails the test.
        Assert.True(code == 0 && output.Trim().Length == 0, $"systemd-analyze verify: exit {code}\n{output}");
        foreach (var directive in new[]
        {
            "DynamicUser=yes", "StateDirectory=hoard", "EnvironmentFile=-/etc/hoard/hoard.env", "ProtectSystem=strict",
            "NoNewPrivileges=yes", "PrivateTmp=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "Restart=on-failure",
            "LimitNOFILE=65536", "CapabilityBoundingSet=\n",
        })
        {
            Assert.Contains(directive, unit, StringComparison.Ordinal);
        }
        Assert.DoesNotContain("MemoryDenyWriteExecute=yes", unit, StringComparison.Ordinal); // the JIT needs it off
    }

    [Fact]
    public async Task The_systemd_check_fails_on_a_misspelt_directive_so_the_test_above_can_fail()
    {
        using var temp = new TempDir();
        var program = Path.Combine(temp.Path, "hoard");
        await File.WriteAllTextAsync(program, "#!/bin/sh\n");
        File.SetUnixFileMode(program, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        var unit = (await File.ReadAllTextAsync(RepoFiles.PathOf("deploy/systemd/hoard.service")))
            .Replace("/usr/local/bin/hoard", program, StringComparison.Ordinal)
            .Replace("NoNewPrivileges=yes", "NoNewPrivilege=yes", StringComparison.Ordinal);
        var copy = Path.Combine(temp.Path, "hoard.service");
        await File.WriteAllTextAsync(copy, unit);
        var (_, output) = await Pip.RunAsync("systemd-analyze", ["verify", copy]);
        Assert.Contains("Unknown key", output, StringComparison.Ordinal);
    }

    [Fact]
    public void The_example_config_names_every_setting_with_a_value_hoard_accepts()
    {
        var path = RepoFiles.PathOf("deploy/config/hoard.json");
        var text = File.ReadAllText(path);
        using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
        var keys = doc.RootElement.EnumerateObject().Select(p => p.Name).ToHashSet();
        foreach (var setting in SettingsLoader.All)
        {
            if (setting.Name == "cluster-secret")
            {
                // Left out on purpose (a secret belongs in a file), and said so in the file.
                Assert.DoesNotContain(setting.Name, keys);
                Assert.Contains("// \"cluster-secret\": not here on purpose", text, StringComparison.Ordinal);
                continue;
            }
            Assert.Contains(setting.Name, keys);
            var value = doc.RootElement.GetProperty(setting.Name);
            IReadOnlyList<string> values = value.ValueKind == JsonValueKind.Array ? value.EnumerateArray().Select(v => v.GetString()!).ToList() : [value.GetString()!];
            // Accepted, or refused only because a file it names is not on this machine (a secret file is read at once).
            var error = setting.Apply(new HoardOptions(), values);
            Assert.True(error is null || MissingFile().IsMatch(error), error);
        }
        Assert.Equal(SettingsLoader.All.Length - 1, keys.Count);

        // Loaded as hoard serve --config would, only the files it names are missing on this machine.
        var (_, errors) = SettingsLoader.Load(path, new Dictionary<string, string?>(), new Dictionary<string, IReadOnlyList<string>>());
        Assert.All(errors, e => Assert.Matches(MissingFile(), e));
    }

    [Fact]
    public void The_example_environment_file_names_every_setting_and_its_active_lines_load()
    {
        var lines = File.ReadAllLines(RepoFiles.PathOf("deploy/systemd/hoard.env"));
        foreach (var setting in SettingsLoader.All)
        {
            Assert.Contains(lines, l => l.TrimStart('#').StartsWith(setting.EnvVar + "=", StringComparison.Ordinal));
        }
        var active = lines.Where(l => l.Length > 0 && l[0] != '#').Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => (string?)p[1]);
        Assert.NotEmpty(active);
        var (options, errors) = SettingsLoader.Load(null, active, new Dictionary<string, IReadOnlyList<string>>());
        Assert.Empty(errors);
        Assert.Equal(50L * 1000 * 1000 * 1000, options.MaxSizeBytes);
    }

    [Fact]
    public async Task Hoard_version_names_the_commit_it_was_built_from()
    {
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "version"]);
        Assert.Equal(0, code);
        var (_, head) = await Pip.RunAsync("git", ["-C", RepoFiles.Root, "rev-parse", "HEAD"]);
        Assert.Matches(@"^hoard \d+\.\d+\.\d+ \(commit [0-9a-f]{12}\)$", output.Trim());
        // The build under test was made from this checkout (a commit of it: the tree may have moved on since).
        var commit = Regex.Match(output, "commit ([0-9a-f]{12})").Groups[1].Value;
        var (known, _) = await Pip.RunAsync("git", ["-C", RepoFiles.Root, "cat-file", "-e", commit + "^{commit}"]);
        Assert.True(known == 0, $"{commit} is not a commit of {RepoFiles.Root} (HEAD {head.Trim()})");
    }

    [GeneratedRegex("(No such file|not found|does not exist|cannot read|could not read|Could not find)", RegexOptions.IgnoreCase)]
    private static partial Regex MissingFile();
}
