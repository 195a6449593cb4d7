using System.CommandLine;
using System.Net;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Hosting;

namespace Hoard;

/// <summary>`hoard config pip`: the client settings that point pip and uv at this server.</summary>
public static class ConfigCommands
{
    public static Command Build()
    {
        var config = new Command("config", "Print (or write) client configuration for this Hoard server.");
        var pip = new Command("pip", "Print pip.conf and uv settings for this server; --apply writes pip's user config.");
        var url = UrlOption();
        var index = new Option<string>("--index") { Description = "PyPI index name to use (default: the default index, /simple/)" };
        var apply = new Option<bool>("--apply") { Description = "write pip's config file instead of printing it (PIP_CONFIG_FILE, else $XDG_CONFIG_HOME/pip/pip.conf); other settings in it are kept" };
        var file = new Option<string>("--file") { Description = "with --apply: the pip config file to write" };
        pip.Options.Add(url);
        pip.Options.Add(index);
        pip.Options.Add(apply);
        pip.Options.Add(file);
        pip.SetAction(parse =>
        {
            if (BaseUrl(parse, url) is not { } parsed)
            {
                return 2;
            }
            var baseUrl = parsed.GetLeftPart(UriPartial.Path).TrimEnd('/');
            var indexName = parse.GetValue(index);
            if (indexName is not null && !UpstreamSpec.IsValidName(indexName))
            {
                Console.Error.WriteLine($"hoard: --index '{indexName}' is not a valid index name");
                return 2;
            }
            var indexUrl = baseUrl + (indexName is null ? "/simple/" : $"/pypi/{indexName}/simple/");
            var settings = new List<(string Key, string Value)> { ("index-url", indexUrl) };
            if (parsed.Scheme == "http")
            {
                settings.Add(("trusted-host", parsed.Host));
            }
            if (parse.GetValue(apply))
            {
                var path = parse.GetValue(file) ?? PipConfigPath();
                WriteIni(path, "global", settings);
                Console.WriteLine($"wrote {path}: index-url = {indexUrl}");
                return 0;
            }
            var sb = new StringBuilder();
            sb.AppendLine("# pip: ~/.config/pip/pip.conf (or /etc/pip.conf, or PIP_CONFIG_FILE)");
            sb.AppendLine("[global]");
            foreach (var (k, v) in settings)
            {
                sb.AppendLine($"{k} = {v}");
            }
            sb.AppendLine();
            sb.AppendLine("# pip, as environment variables (CI jobs, Dockerfiles)");
            sb.AppendLine($"PIP_INDEX_URL={indexUrl}");
            if (parsed.Scheme == "http")
            {
                sb.AppendLine($"PIP_TRUSTED_HOST={parsed.Host}");
            }
            sb.AppendLine();
            sb.AppendLine("# uv: environment variable");
            sb.AppendLine($"UV_DEFAULT_INDEX={indexUrl}");
            sb.AppendLine();
            sb.AppendLine("# uv: uv.toml, or [tool.uv] in pyproject.toml");
            sb.AppendLine("[[index]]");
            sb.AppendLine($"url = \"{indexUrl}\"");
            sb.AppendLine("default = true");
            Console.Write(sb.ToString());
            return 0;
        });
        config.Subcommands.Add(pip);
        // daemon.json names Hoard only (docker mirrors Docker Hub alone): no registry list to look up.
        config.Subcommands.Add(Container("docker", "Print daemon.json with Hoard as Docker Hub's registry mirror; --apply merges it into /etc/docker/daemon.json.", "/etc/docker/daemon.json",
            (hoard, _, path) => [(path, ContainerConfig.DockerDaemonJson(hoard, File.Exists(path) ? File.ReadAllText(path) : null))], needsRegistries: false));
        var containerdConfig = new Option<string>("--containerd-config")
        {
            Description = "containerd's config file (e.g. /etc/containerd/config.toml) to check first: unless its CRI registry config_path is the --path directory, "
                + "nothing is printed or written and the exit code is 3. containerd's config is only read, never changed, and containerd is not restarted.",
        };
        config.Subcommands.Add(Container("containerd", "Print a hosts.toml per configured registry; --apply writes them under /etc/containerd/certs.d (set config_path there in containerd's config; --containerd-config checks it).", "/etc/containerd/certs.d",
            (hoard, registries, path) => ContainerConfig.ContainerdHosts(hoard, registries).Select(h => (Path.Combine(path, h.Registry, "hosts.toml"), h.Content)).ToList(),
            check: (containerdConfig, CheckContainerd)));
        config.Subcommands.Add(Container("podman", "Print a registries.conf drop-in (podman, CRI-O, skopeo, buildah); --apply writes /etc/containers/registries.conf.d/hoard.conf.", "/etc/containers/registries.conf.d/hoard.conf",
            (hoard, registries, path) => [(path, ContainerConfig.RegistriesConf(hoard, registries))]));
        config.Subcommands.Add(GitCommand());
        return config;
    }

    /// <summary>`hoard config git`: the insteadOf lines that send every git command for a configured host through Hoard.</summary>
    private static Command GitCommand()
    {
        var command = new Command("git", "Print (or with --apply run) the `git config --global url.<hoard>/git/NAME/.insteadOf <upstream>` line for each --git upstream.");
        var url = UrlOption();
        var apply = new Option<bool>("--apply") { Description = "run the git config commands (global config of the current user)" };
        var upstreams = new Option<string[]>("--git") { Description = $"NAME=URL, as for serve (default: HOARD_GIT or the --config file; without either, the server's {ClientConfigEndpoint.Path})" };
        var configFile = Cli.ConfigOption();
        foreach (var o in new Option[] { url, apply, upstreams, configFile })
        {
            command.Options.Add(o);
        }
        command.SetAction(async (parse, ct) =>
        {
            if (BaseUrl(parse, url) is not { } hoard)
            {
                return 2;
            }
            if (await UpstreamsAsync(parse, hoard, configFile, "git", upstreams, o => o.Git, ServerConfig.Git, ct) is not { } git)
            {
                return 2;
            }
            if (git.Count == 0)
            {
                Console.Error.WriteLine("hoard: no --git upstream is configured");
                return 2;
            }
            foreach (var g in git)
            {
                var mirror = $"{hoard.GetLeftPart(UriPartial.Authority)}/git/{g.Name}/";
                var upstreamUrl = Hoard.Core.Upstream.UrlCredentials.WithoutUserInfo(g.Url).ToString();
                if (parse.GetValue(apply))
                {
                    var psi = new System.Diagnostics.ProcessStartInfo("git") { ArgumentList = { "config", "--global", $"url.{mirror}.insteadOf", upstreamUrl } };
                    using var p = System.Diagnostics.Process.Start(psi)!;
                    p.WaitForExit();
                    Console.WriteLine($"{(p.ExitCode == 0 ? "set" : "failed")}: url.{mirror}.insteadOf {upstreamUrl}");
                }
                else
                {
                    Console.WriteLine($"git config --global url.{mirror}.insteadOf {upstreamUrl}");
                }
            }
            // Clone bundles: git >= 2.42 asks for them itself once this is set; any git >= 2.38 takes one by hand.
            var example = $"{hoard.GetLeftPart(UriPartial.Authority)}/git/{git[0].Name}/OWNER/REPO.git";
            if (parse.GetValue(apply))
            {
                var psi = new System.Diagnostics.ProcessStartInfo("git") { ArgumentList = { "config", "--global", "transfer.bundleURI", "true" } };
                using var p = System.Diagnostics.Process.Start(psi)!;
                p.WaitForExit();
                Console.WriteLine($"{(p.ExitCode == 0 ? "set" : "failed")}: transfer.bundleURI true (git 2.42 and later fetch Hoard's clone bundles)");
                return 0;
            }
            Console.WriteLine("git config --global transfer.bundleURI true");
            Console.WriteLine("# git 2.42 and later then start clones from Hoard's clone bundle by themselves; with git 2.38 to 2.41:");
            Console.WriteLine($"#   git clone --bundle-uri={example}/-/bundle {example}");
            return 0;
        });
        return command;
    }

    /// <summary>One `hoard config` subcommand for a container client: files to print, or to write with --apply.</summary>
    private static Command Container(string name, string description, string defaultPath, Func<Uri, IReadOnlyList<UpstreamSpec>, string, IReadOnlyList<(string Path, string Content)>> files,
        bool needsRegistries = true, (Option<string> Option, Func<string, string, bool> Passes)? check = null)
    {
        var command = new Command(name, description);
        var url = UrlOption();
        var apply = new Option<bool>("--apply") { Description = "write the files instead of printing them" };
        var path = new Option<string>("--path") { Description = $"with --apply: where to write (default {defaultPath})" };
        var registries = new Option<string[]>("--registry") { Description = $"NAME=URL, as for serve (default: HOARD_REGISTRY or the --config file; Docker Hub always; without either, the server's {ClientConfigEndpoint.Path})" };
        var configFile = Cli.ConfigOption();
        foreach (var o in new Option[] { url, apply, path, registries, configFile })
        {
            command.Options.Add(o);
        }
        if (check is { } c)
        {
            command.Options.Add(c.Option);
        }
        command.SetAction(async (parse, ct) =>
        {
            if (BaseUrl(parse, url) is not { } hoard)
            {
                return 2;
            }
            // Checked before anything is looked up or written: files the runtime would ignore help no one.
            if (check is { } verify && parse.GetValue(verify.Option) is { } checkedFile && !verify.Passes(checkedFile, parse.GetValue(path) ?? defaultPath))
            {
                return 3;
            }
            IReadOnlyList<UpstreamSpec> list = [];
            if (needsRegistries)
            {
                if (await UpstreamsAsync(parse, hoard, configFile, "registry", registries, o => o.Registries, ServerConfig.Registries, ct) is not { } found)
                {
                    return 2;
                }
                list = found;
            }
            var target = parse.GetValue(path) ?? defaultPath;
            foreach (var (file, content) in files(hoard, list, target))
            {
                if (parse.GetValue(apply))
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file))!);
                    File.WriteAllText(file, content);
                    Console.WriteLine($"wrote {file}");
                }
                else
                {
                    Console.WriteLine($"# {file}");
                    Console.WriteLine(content);
                }
            }
            return 0;
        });
        return command;
    }

    /// <summary>`--containerd-config`: whether containerd reads hosts.toml files from the directory Hoard writes; prints why not.</summary>
    private static bool CheckContainerd(string configFile, string certsDir)
    {
        var result = ContainerdConfigCheck.CheckFile(configFile, certsDir);
        foreach (var note in result.Notes)
        {
            // Notes go to stderr: stdout may be the hosts.toml files themselves.
            Console.Error.WriteLine("hoard: " + note);
        }
        if (result.Error is { } error)
        {
            Console.Error.WriteLine("hoard: containerd would not read Hoard's hosts.toml files, so Hoard writes (or prints) none: " + error);
            return false;
        }
        return true;
    }

    /// <summary>
    /// The upstreams of one setting: from this machine's settings when it has any (the flag, its HOARD_* variable, a
    /// --config file), else as the server at --url describes itself, so a client machine needs no copy of the
    /// server's flags. Null after printing why there are none.
    /// </summary>
    private static async Task<IReadOnlyList<UpstreamSpec>?> UpstreamsAsync(ParseResult parse, Uri hoard, Option<string> configFile, string setting, Option<string[]> option,
        Func<HoardOptions, IReadOnlyList<UpstreamSpec>> local, Func<ClientConfigDocument, IReadOnlyList<UpstreamSpec>> remote, CancellationToken ct)
    {
        var envVar = SettingsLoader.All.Single(s => s.Name == setting).EnvVar;
        var hasLocal = parse.GetValue(option) is { Length: > 0 }
            || !string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(envVar))
            || !string.IsNullOrEmpty(parse.GetValue(configFile) ?? Environment.GetEnvironmentVariable("HOARD_CONFIG"));
        if (hasLocal)
        {
            return LoadSettings(parse, configFile, setting, option) is { } options ? local(options) : null;
        }
        var (document, error) = await ServerConfig.FetchAsync(hoard, ct);
        if (document is null)
        {
            await Console.Error.WriteLineAsync("hoard: " + error);
            return null;
        }
        return remote(document);
    }

    /// <summary>Settings as `serve` would see them (file, HOARD_* variables, one repeatable flag); null after printing errors.</summary>
    private static HoardOptions? LoadSettings(ParseResult parse, Option<string> configFile, string setting, Option<string[]> option)
    {
        var flags = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        if (parse.GetValue(option) is { Length: > 0 } given)
        {
            flags[setting] = given;
        }
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>().ToDictionary(e => (string)e.Key, e => e.Value as string);
        var (options, errors) = SettingsLoader.Load(parse.GetValue(configFile) ?? environment.GetValueOrDefault("HOARD_CONFIG"), environment, flags);
        errors.ForEach(e => Console.Error.WriteLine("hoard: " + e));
        return errors.Count == 0 ? options : null;
    }

    private static Option<string> UrlOption() => new("--url")
    {
        Description = "Hoard's base URL as clients reach it (default: from --listen/HOARD_LISTEN, with this host's name for 0.0.0.0)",
    };

    /// <summary>The --url value (or the default), checked; null after printing why it is unusable.</summary>
    private static Uri? BaseUrl(ParseResult parse, Option<string> url)
    {
        var text = (parse.GetValue(url) ?? DefaultBaseUrl()).TrimEnd('/');
        if (Uri.TryCreate(text, UriKind.Absolute, out var parsed) && parsed.Scheme is "http" or "https")
        {
            return parsed;
        }
        Console.Error.WriteLine($"hoard: --url '{text}': expected http(s)://HOST[:PORT]");
        return null;
    }

    private static string DefaultBaseUrl()
    {
        // HOARD_LISTEN may list several URLs; clients are pointed at the first.
        var listen = (Environment.GetEnvironmentVariable("HOARD_LISTEN") ?? HoardOptions.DefaultListen).Split(',', StringSplitOptions.TrimEntries)[0];
        if (!Uri.TryCreate(listen, UriKind.Absolute, out var u))
        {
            return "http://localhost:8080";
        }
        var host = u.Host is "0.0.0.0" or "[::]" or "::" or "*" or "+" ? Dns.GetHostName() : u.Host;
        return $"{u.Scheme}://{host}:{u.Port}";
    }

    private static string PipConfigPath()
    {
        if (Environment.GetEnvironmentVariable("PIP_CONFIG_FILE") is { Length: > 0 } explicitPath && explicitPath != "/dev/null")
        {
            return explicitPath;
        }
        var xdg = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
        var baseDir = string.IsNullOrEmpty(xdg) ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config") : xdg;
        return Path.Combine(baseDir, "pip", "pip.conf");
    }

    /// <summary>Sets keys in one section of an INI file, keeping every other line as it was.</summary>
    internal static void WriteIni(string path, string section, IReadOnlyList<(string Key, string Value)> settings)
    {
        var lines = File.Exists(path) ? File.ReadAllLines(path).ToList() : [];
        var start = lines.FindIndex(l => l.Trim().Equals($"[{section}]", StringComparison.OrdinalIgnoreCase));
        if (start < 0)
        {
            if (lines.Count > 0 && lines[^1].Length > 0)
            {
                lines.Add("");
            }
            lines.Add($"[{section}]");
            start = lines.Count - 1;
        }
        var end = lines.FindIndex(start + 1, l => l.TrimStart().StartsWith('['));
        if (end < 0)
        {
            end = lines.Count;
        }
        foreach (var (key, value) in settings)
        {
            var at = lines.FindIndex(start + 1, end - start - 1, l => l.Split('=', 2)[0].Trim().Equals(key, StringComparison.OrdinalIgnoreCase));
            if (at >= 0)
            {
                lines[at] = $"{key} = {value}";
            }
            else
            {
                lines.Insert(end, $"{key} = {value}");
                end++;
            }
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllLines(path, lines);
    }
}
