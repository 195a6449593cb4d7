using Hoard.Core.Configuration;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Unit;

/// <summary>
/// `hoard config containerd --containerd-config`: the check that containerd reads hosts.toml from the directory
/// Hoard writes (config_path, under the table each config version uses), and the hosts.toml files themselves.
/// </summary>
public sealed class ContainerdSetupTests
{
    private const string Certs = "/etc/containerd/certs.d";
    private const string V3 = "io.containerd.cri.v1.images";
    private const string V2 = "io.containerd.grpc.v1.cri";

    private static ContainerdConfigCheck.Result Check(string toml, string certs = Certs) => ContainerdConfigCheck.Check(toml, "/etc/containerd/config.toml", certs);

    private static void AssertOk(ContainerdConfigCheck.Result result)
    {
        Assert.True(result.Ok, result.Error);
        Assert.Contains(result.Notes, n => n.Contains("reads hosts.toml files from /etc/containerd/certs.d", StringComparison.Ordinal));
    }

    private static string AssertRefused(ContainerdConfigCheck.Result result, params string[] mentions)
    {
        Assert.False(result.Ok);
        foreach (var m in mentions)
        {
            Assert.Contains(m, result.Error, StringComparison.Ordinal);
        }
        return result.Error!;
    }

    [Fact]
    public void Containerd_2_config_with_config_path_under_the_cri_images_table_passes_in_every_quoting()
    {
        // As `containerd config default` writes it in 2.x: single-quoted keys and strings, indented.
        AssertOk(Check($"version = 3\nroot = '/var/lib/containerd'\n\n[plugins]\n  [plugins.'{V3}']\n    snapshotter = 'overlayfs'\n  [plugins.'{V3}'.registry]\n    config_path = '{Certs}'\n"));
        AssertOk(Check($"version = 3\n[plugins.\"{V3}\".registry]\nconfig_path = \"{Certs}\"  # hosts.toml\n"));
        AssertOk(Check($"version = 3\n[ plugins . \"{V3}\" ]\nregistry.config_path = \"{Certs}/\"\n"));
        AssertOk(Check($"version = 3\n[plugins.\"{V3}\"]\nregistry = {{ config_path = \"{Certs}\" }}\n"));
        AssertOk(Check($"version = 3\nplugins.\"{V3}\".registry.config_path = \"/etc//containerd/./certs.d\"\n"));
    }

    [Fact]
    public void Containerd_1_configs_pass_with_config_path_under_the_grpc_cri_table_or_for_version_1_the_short_plugin_name()
    {
        AssertOk(Check($"version = 2\n[plugins.\"{V2}\".registry]\n  config_path = \"{Certs}\"\n"));
        AssertOk(Check($"version = 1\n[plugins.cri.registry]\n  config_path = \"{Certs}\"\n"));
        // No version line: the table it names says which it is.
        AssertOk(Check($"[plugins.\"{V2}\".registry]\n  config_path = \"{Certs}\"\n"));
    }

    [Fact]
    public void A_config_without_config_path_is_refused_with_the_lines_to_add_for_its_version()
    {
        var error = AssertRefused(Check($"version = 3\n[plugins.'{V3}'.pinned_images]\nsandbox = 'registry.k8s.io/pause:3.10'\n"),
            $"does not set config_path under [plugins.\"{V3}\".registry]", $"[plugins.\"{V3}\".registry]\n      config_path = \"{Certs}\"", "restart containerd");
        Assert.DoesNotContain(V2, error, StringComparison.Ordinal);
        AssertRefused(Check("version = 2\n[grpc]\naddress = \"/run/containerd/containerd.sock\"\n"), $"[plugins.\"{V2}\".registry]\n      config_path = \"{Certs}\"");
        AssertRefused(Check(""), "[plugins.\"cri\".registry]", "no version line");
        // The deprecated mirrors table and imports are named: they are why config_path may seem set elsewhere.
        AssertRefused(Check($"version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.\"{V2}\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://mirror.example\"]\n"),
            "deprecated", "mirrors", "/etc/containerd/conf.d/*.toml", "--containerd-config");
    }

    [Fact]
    public void Config_path_under_the_other_versions_table_is_refused_and_both_tables_are_named()
    {
        AssertRefused(Check($"version = 3\n[plugins.\"{V2}\".registry]\nconfig_path = \"{Certs}\"\n"),
            $"under [plugins.\"{V2}\".registry], which version 2 configs use", $"version 3 config (containerd 2.x), which reads it from [plugins.\"{V3}\".registry]");
        AssertRefused(Check($"version = 2\n[plugins.\"{V3}\".registry]\nconfig_path = \"{Certs}\"\n"), $"which reads it from [plugins.\"{V2}\".registry]");
    }

    [Fact]
    public void Another_directory_or_an_empty_config_path_is_refused()
    {
        AssertRefused(Check($"version = 3\n[plugins.'{V3}'.registry]\nconfig_path = '/var/lib/rancher/certs.d'\n"),
            "is \"/var/lib/rancher/certs.d\", not /etc/containerd/certs.d", "--path /var/lib/rancher/certs.d");
        AssertRefused(Check($"version = 2\n[plugins.\"{V2}\".registry]\nconfig_path = \"{Certs}\"\n", "/host/etc/containerd/certs.d"),
            "not /host/etc/containerd/certs.d");
        AssertRefused(Check($"version = 3\n[plugins.'{V3}'.registry]\nconfig_path = ''\n"), "is empty");
        AssertRefused(Check($"version = 3\n[plugins.'{V3}'.registry]\nconfig_path = 1\n"), "not a string");
    }

    [Fact]
    public void A_list_of_directories_is_refused_for_containerd_2_and_passes_with_a_note_for_a_version_2_config()
    {
        // containerd 2.x writes this list by default, and has been found to read no hosts.toml with it (containerd issue 12808).
        AssertRefused(Check($"version = 3\n[plugins.'{V3}'.registry]\n  config_path = '{Certs}:/etc/docker/certs.d'\n"), "is a list", "12808", $"config_path = \"{Certs}\"");
        var result = Check($"version = 2\n[plugins.\"{V2}\".registry]\n  config_path = \"/etc/docker/certs.d:{Certs}\"\n");
        AssertOk(result);
        Assert.Contains(result.Notes, n => n.Contains("12808", StringComparison.Ordinal));
        AssertRefused(Check($"version = 2\n[plugins.\"{V2}\".registry]\n  config_path = \"/a:/b\"\n"), "not /etc/containerd/certs.d");
    }

    [Fact]
    public void A_missing_or_malformed_file_or_an_unknown_version_is_refused()
    {
        using var temp = new TempDir();
        AssertRefused(ContainerdConfigCheck.CheckFile(Path.Combine(temp.Path, "config.toml"), Certs), "does not exist", "version = 3", "version = 2", "--containerd-config");
        AssertRefused(Check("version = 3\n[plugins.'x'\n"), "not TOML", "line 2");
        AssertRefused(Check("version = 4\n"), "version = 4");
    }

    [Fact]
    public async Task Containerds_own_default_config_is_refused_until_config_path_is_set()
    {
        // Debian's containerd (1.x): its default config has config_path = "" under the version 2 table.
        var (code, output) = await Pip.RunAsync("containerd", ["config", "default"]);
        Assert.True(code == 0, output);
        var stock = output[..output.LastIndexOf('\n')];
        AssertRefused(Check(stock), "is empty");
        var set = stock.Replace("config_path = \"\"", $"config_path = \"{Certs}\"", StringComparison.Ordinal);
        Assert.NotEqual(stock, set);
        AssertOk(Check(set));
    }

    [Fact]
    public async Task The_command_exits_3_and_writes_nothing_when_containerd_would_not_read_it_and_writes_the_files_when_it_would()
    {
        using var temp = new TempDir();
        var certs = Path.Combine(temp.Path, "certs.d");
        var config = Path.Combine(temp.Path, "config.toml");
        File.WriteAllText(config, $"version = 3\n[plugins.'{V3}'.registry]\n  config_path = ''\n");
        string[] args = [HoardProcess.Dll, "config", "containerd", "--url", "http://127.0.0.1:8080", "--registry", "ghcr.io=https://ghcr.io", "--apply", "--path", certs, "--containerd-config", config];
        var (code, output) = await Pip.RunAsync("dotnet", args);
        Assert.True(code == 3, output);
        Assert.Contains("is empty", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(certs));

        File.WriteAllText(config, $"version = 3\n[plugins.'{V3}'.registry]\n  config_path = '{certs}'\n");
        (code, output) = await Pip.RunAsync("dotnet", args);
        Assert.True(code == 0, output);
        Assert.Equal(["docker.io", "ghcr.io"], Directory.GetDirectories(certs).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Contains($"reads hosts.toml files from {certs}", output, StringComparison.Ordinal);
        // The config file is only read.
        Assert.Equal($"version = 3\n[plugins.'{V3}'.registry]\n  config_path = '{certs}'\n", File.ReadAllText(config));
    }

    [Fact]
    public void Hosts_toml_puts_hoard_first_for_pull_and_resolve_and_the_registry_itself_as_fallback()
    {
        var options = new HoardOptions();
        options.Registries.Add(new UpstreamSpec("ghcr.io", new Uri("https://robot:token@ghcr.io/")));
        options.Registries.Add(new UpstreamSpec("registry.corp", new Uri("http://registry.corp.example:5000/")));
        var hosts = ContainerConfig.ContainerdHosts(new Uri("http://127.0.0.1:8080"), options.Registries).ToDictionary(h => h.Registry, h => Toml.Parse(h.Content));
        Assert.Equal(["docker.io", "ghcr.io", "registry.corp"], hosts.Keys.Order(StringComparer.Ordinal));
        // Docker Hub's API is not at docker.io.
        Assert.Equal("https://registry-1.docker.io", hosts["docker.io"].Get("server"));
        Assert.Equal("https://ghcr.io", hosts["ghcr.io"].Get("server"));
        Assert.Equal("http://registry.corp.example:5000", hosts["registry.corp"].Get("server"));
        foreach (var (registry, toml) in hosts)
        {
            // One host, Hoard; containerd tries it first, then the server.
            Assert.Equal(["http://127.0.0.1:8080"], toml.Values.Keys.Where(k => k.StartsWith("host\0", StringComparison.Ordinal)).Select(k => k.Split('\0')[1]).Distinct());
            Assert.Equal(["pull", "resolve"], Assert.IsType<List<object>>(toml.Get("host", "http://127.0.0.1:8080", "capabilities")));
            Assert.IsType<string>(toml.Get("host", "http://127.0.0.1:8080", "dial_timeout"));
            Assert.DoesNotContain(toml.Values.Values, v => v.ToString()!.Contains("token", StringComparison.Ordinal));
            Assert.True(toml.Values.Count == 3, registry);
        }
    }

    [Fact]
    public void Toml_reads_strings_arrays_and_tables_as_containerd_writes_them()
    {
        var toml = Toml.Parse("""
            # comment
            title = "a \"quoted\" \u00e9 \\ path" # trailing
            literal = 'C:\no\escapes'
            multi = \"\"\"
            one \
              two\"\"\"
            raw = '''
            x'y'''
            list = [ "a", 'b',
              # inside
              ["c"], 3, ]
            number = 2
            [ "quoted.key" . bare-key ]
            when = 1979-05-27 07:32:00
            [[array]]
            ignored = "x"
            [after]
            kept = true
            """.Replace("\\\"\\\"\\\"", "\"\"\"", StringComparison.Ordinal));
        Assert.Equal("a \"quoted\" é \\ path", toml.Get("title"));
        Assert.Equal("C:\\no\\escapes", toml.Get("literal"));
        Assert.Equal("one two", toml.Get("multi"));
        Assert.Equal("x'y", toml.Get("raw"));
        var list = Assert.IsType<List<object>>(toml.Get("list"));
        Assert.Equal("a", list[0]);
        Assert.Equal("b", list[1]);
        Assert.Equal(["c"], Assert.IsType<List<object>>(list[2]));
        Assert.Equal(new Toml.Bare("3"), list[3]);
        Assert.Equal(new Toml.Bare("2"), toml.Get("number"));
        Assert.Equal(new Toml.Bare("1979-05-27T07:32:00"), toml.Get("quoted.key", "bare-key", "when"));
        Assert.Null(toml.Get("array", "ignored"));
        Assert.Equal(new Toml.Bare("true"), toml.Get("after", "kept"));
        Assert.True(toml.HasUnder("quoted.key"));
        Assert.Throws<FormatException>(() => Toml.Parse("a = \"unterminated\n"));
        Assert.Throws<FormatException>(() => Toml.Parse("a = 1 b = 2\n"));
        Assert.Throws<FormatException>(() => Toml.Parse("[table\n"));
    }
}
