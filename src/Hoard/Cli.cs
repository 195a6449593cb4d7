using System.CommandLine;
using System.Collections;
using Hoard.Core.Configuration;
using Hoard.Core.Hosting;
using Microsoft.AspNetCore.Builder;

namespace Hoard;

/// <summary>The `hoard` command line: serve, config, status, health, version.</summary>
public static class Cli
{
    /// <summary>What `hoard --help` says before the commands: every protocol, where it is served, and how clients use it.</summary>
    public const string Description = """
        Hoard: a caching mirror for PyPI, container images, git and plain files, on one port. The first request goes
        upstream, every later one is served locally; concurrent misses share one download; everything stored is
        verified by sha256, and what Hoard holds is served when upstream is down.

          PyPI        /simple/ (the first --pypi index) and /pypi/NAME/simple/: pip, uv and poetry take it as the index
                      URL; files are checked against the index's sha256.
          Registries  /v2/: docker (registry-mirrors), containerd (hosts.toml, ?ns=HOST), podman, CRI-O and skopeo
                      (/v2/HOST/REPO); private registries answer for each client's credentials (--registry).
          Git         /git/NAME/REPO: clone and fetch over smart HTTP from a local mirror, git-lfs objects, clone
                      bundles (--git NAME=URL; git config url.<hoard>/git/NAME/.insteadOf URL).
          Files       /files/NAME/PATH: any HTTP file server (--files NAME=URL): release tarballs, toolchains.
          Cluster     nodes sharing one Redis (--cluster-redis) fetch from each other before upstream.

        The dashboard is at /, Prometheus metrics at /metrics, status as JSON at /_hoard/status.
        hoard config prints client settings; hoard warm and hoard pin fill the cache ahead of time.
        """;

    public static RootCommand Build()
    {
        var root = new RootCommand(Description);
        root.Subcommands.Add(BuildServe());
        root.Subcommands.Add(ConfigCommands.Build());
        root.Subcommands.Add(StatusCommand.Build());
        root.Subcommands.Add(HealthCommand.Build());
        root.Subcommands.Add(WarmCommand.Build());
        root.Subcommands.Add(WarmCommand.Build(pin: true));
        root.Subcommands.Add(WarmCommand.BuildUnpin());
        var version = new Command("version", "Print Hoard's version.");
        version.SetAction(_ => Console.WriteLine(VersionText()));
        root.Subcommands.Add(version);
        return root;
    }

    /// <summary>"hoard 1.0.0 (commit 0123456789ab)": the version and the git commit it was built from (the SDK records it).</summary>
    public static string VersionText() =>
        BuildVersion.Commit is { } commit ? $"hoard {BuildVersion.Version} (commit {commit[..Math.Min(12, commit.Length)]})" : "hoard " + BuildVersion.Version;

    public static Option<string> ConfigOption() => new("--config")
    {
        Description = "JSON file of settings; keys are the flag names (\"max-size\": \"50GB\", \"pypi\": [\"...\"]). Environment variable HOARD_CONFIG. Order of precedence: flags, then HOARD_* variables, then this file.",
    };

    private static Command BuildServe()
    {
        var serve = new Command("serve", "Run the mirror. Every setting can also come from a HOARD_<NAME> environment variable (HOARD_MAX_SIZE, HOARD_PYPI=a=URL,b=URL, ...) or the --config file.");
        var config = ConfigOption();
        serve.Options.Add(config);
        var options = new List<(SettingsLoader.Setting Setting, Option Option)>();
        foreach (var s in SettingsLoader.All)
        {
            Option option = s.Repeatable
                ? new Option<string[]>("--" + s.Name) { Description = $"{s.Help} [env {s.EnvVar}]", AllowMultipleArgumentsPerToken = false }
                : new Option<string>("--" + s.Name) { Description = $"{s.Help} [env {s.EnvVar}]" };
            serve.Options.Add(option);
            options.Add((s, option));
        }
        serve.SetAction(async (parse, ct) =>
        {
            var (hoardOptions, errors) = Load(parse, config, options);
            if (errors.Count > 0)
            {
                foreach (var e in errors)
                {
                    await Console.Error.WriteLineAsync("hoard: " + e);
                }
                return 2;
            }
            WebApplication app;
            try
            {
                app = HoardApp.Build(hoardOptions);
            }
            catch (Exception e) when (e is DataDirInUseException or Hoard.Core.Storage.UnreadableIndexException)
            {
                await Console.Error.WriteLineAsync("hoard: " + e.Message);
                return 2;
            }
            await using (app)
            {
                try
                {
                    await app.StartAsync(ct);
                }
                catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException || e.InnerException is System.Net.Sockets.SocketException)
                {
                    // Kestrel's message names the address ("Failed to bind to address http://0.0.0.0:8080: address
                    // already in use."): one line is what the user needs, not the stack.
                    await Console.Error.WriteLineAsync($"hoard: {e.Message.TrimEnd('.')}; another program (or another Hoard) listens there: stop it, or give another --listen");
                    return 2;
                }
                await app.WaitForShutdownAsync(ct);
            }
            return 0;
        });
        return serve;
    }

    internal static (HoardOptions Options, List<string> Errors) Load(ParseResult parse, Option<string> config, IEnumerable<(SettingsLoader.Setting Setting, Option Option)> options)
    {
        var flags = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var (setting, option) in options)
        {
            if (parse.GetResult(option) is not { Implicit: false })
            {
                continue;
            }
            flags[setting.Name] = option switch
            {
                Option<string[]> many => parse.GetValue(many) ?? [],
                Option<string> one when parse.GetValue(one) is { } v => [v],
                _ => [],
            };
        }
        var environment = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            environment[(string)e.Key] = e.Value as string;
        }
        var configFile = parse.GetValue(config) ?? environment.GetValueOrDefault("HOARD_CONFIG");
        return SettingsLoader.Load(string.IsNullOrEmpty(configFile) ? null : configFile, environment, flags);
    }
}
