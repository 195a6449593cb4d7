using System.CommandLine;
using System.Net;
using System.Text;
using Hoard.Core.Configuration;

namespace Hoard;

/// <summary>`hoard config pip`: the client settings that point pip and uv at this server.</summary>
public static class ConfigCommands
{
    public static Command Build()
    {
        var config = new Command("config", "Print (or write) client configuration for this Hoard server.");
        var pip = new Command("pip", "Print pip.conf and uv settings for this server; --apply writes pip's user config.");
        var url = new Option<string>("--url") { Description = "Hoard's base URL as clients reach it (default: from --listen/HOARD_LISTEN, with this host's name for 0.0.0.0)" };
        var index = new Option<string>("--index") { Description = "PyPI index name to use (default: the default index, /simple/)" };
        var apply = new Option<bool>("--apply") { Description = "write pip's config file instead of printing it (PIP_CONFIG_FILE, else $XDG_CONFIG_HOME/pip/pip.conf); other settings in it are kept" };
        var file = new Option<string>("--file") { Description = "with --apply: the pip config file to write" };
        pip.Options.Add(url);
        pip.Options.Add(index);
        pip.Options.Add(apply);
        pip.Options.Add(file);
        pip.SetAction(parse =>
        {
            var baseUrl = (parse.GetValue(url) ?? DefaultBaseUrl()).TrimEnd('/');
            if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var parsed) || (parsed.Scheme != "http" && parsed.Scheme != "https"))
            {
                Console.Error.WriteLine($"hoard: --url '{baseUrl}': expected http(s)://HOST[:PORT]");
                return 2;
            }
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
        return config;
    }

    private static string DefaultBaseUrl()
    {
        var listen = Environment.GetEnvironmentVariable("HOARD_LISTEN") ?? HoardOptions.DefaultListen;
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
