using System.Text.Json;

namespace Hoard.Core.Configuration;

/// <summary>
/// One table of settings, read from three layers that override each other in this order:
/// the JSON config file, HOARD_* environment variables, command-line flags. A setting's
/// name is the flag's name without dashes ("max-size"); its variable is HOARD_MAX_SIZE.
/// Repeatable settings take a JSON array in the file and a comma-separated list in the variable;
/// a later layer replaces the whole list.
/// </summary>
public static class SettingsLoader
{
    public sealed record Setting(string Name, string Help, bool Repeatable, Func<HoardOptions, IReadOnlyList<string>, string?> Apply)
    {
        public string EnvVar => "HOARD_" + Name.Replace('-', '_').ToUpperInvariant();
    }

    public static readonly Setting[] All =
    [
        new("listen", $"http:// or https:// URL to listen on, repeatable or comma-separated (default {HoardOptions.DefaultListen})", true, (o, v) =>
        {
            o.Listen = v.SelectMany(item => item.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToList();
            return null;
        }),
        new("tls-cert", "PEM certificate file for https:// listeners (leaf first, then intermediates); reloaded when it changes", false, (o, v) => { o.TlsCert = v[^1]; return null; }),
        new("tls-key", "PEM private key file for https:// listeners; reloaded when it changes", false, (o, v) => { o.TlsKey = v[^1]; return null; }),
        new("data", "data directory: blobs, index database, temp files (default $XDG_CACHE_HOME/hoard or ~/.cache/hoard)", false, (o, v) => { o.DataDir = v[^1]; return null; }),
        new("max-size", "size limit of the store, e.g. 50GB; least recently used blobs are evicted above it (default 20GB)", false, (o, v) =>
            ValueParsers.TryParseSize(v[^1], out var b) ? Set(() => o.MaxSizeBytes = b) : $"--max-size '{v[^1]}': expected a size such as 50GB"),
        new("pypi", "[NAME=]URL of a PyPI simple index, repeatable; the first is also served at /simple/ (default pypi=https://pypi.org/simple/)", true, (o, v) =>
        {
            o.Pypi.Clear();
            var unnamed = -1;
            foreach (var item in v)
            {
                var err = UpstreamSpec.TryParse(item, nameRequired: false, out var spec, out var hadName);
                if (err is not null)
                {
                    return "--pypi " + err;
                }
                if (!hadName && unnamed < 0)
                {
                    unnamed = o.Pypi.Count;
                }
                o.Pypi.Add(spec!);
            }
            if (unnamed > 0)
            {
                // The index given without a name is the default (served at /simple/), wherever it was listed.
                var spec = o.Pypi[unnamed];
                o.Pypi.RemoveAt(unnamed);
                o.Pypi.Insert(0, spec);
            }
            return null;
        }),
        new("files", "NAME=URL of a generic file upstream served at /files/NAME/<path>, repeatable", true, (o, v) => Named(v, "--files", o.Files, replaceAll: true)),
        new("registry", "NAME=URL of a container registry, repeatable; NAME is its host in image references (ghcr.io); Docker Hub (docker.io=https://registry-1.docker.io) is always configured; credentials go in the URL", true, (o, v) =>
        {
            o.Registries.RemoveAll(r => r.Name != HoardOptions.DockerHub);
            return Named(v, "--registry", o.Registries, replaceAll: false);
        }),
        new("default-registry", "the registry for image requests that name none (default docker.io)", false, (o, v) => { o.DefaultRegistry = v[^1].ToLowerInvariant(); return null; }),
        new("tag-ttl", "how long a tag's digest is trusted before HEAD checks it upstream again (default 1m)", false, (o, v) => Duration(v, "--tag-ttl", t => o.TagTtl = t)),
        new("git", "NAME=URL of a git server, repeatable: /git/NAME/<repo> mirrors URL/<repo> (git config url.<hoard>/git/NAME/.insteadOf URL)", true, (o, v) => Named(v, "--git", o.Git, replaceAll: true)),
        new("git-serve-stale", "serve mirrored repositories from their last known refs when upstream is unreachable: true or false (default true)", false, (o, v) =>
            bool.TryParse(v[^1], out var b) ? Set(() => o.GitServeStale = b) : $"--git-serve-stale '{v[^1]}': expected true or false"),
        new("git-max-processes", "most git processes at once (default 2 x cores)", false, (o, v) =>
            int.TryParse(v[^1], out var n) && n is >= 1 and <= 1024 ? Set(() => o.GitMaxProcesses = n) : $"--git-max-processes '{v[^1]}': expected 1-1024"),
        new("git-refs", "NAME=PATTERN,PATTERN...: the refs git upstream NAME's mirrors keep (default refs/heads/*,refs/tags/*); other refs (refs/pull/*) are fetched when a client wants them", true, (o, v) => GitRefs(o, v)),
        new("git-fetch-idle-timeout", "a mirror clone or fetch with no progress for this long is killed and its clients are passed through to upstream (default 2m)", false, (o, v) =>
            Duration(v, "--git-fetch-idle-timeout", t => o.GitFetchIdleTimeout = t)),
        new("git-bundle-interval", "a repository's clone bundle (/git/NAME/<repo>/-/bundle, for git clone --bundle-uri) is made again at most this often; 0 turns bundles off (default 1h)", false, (o, v) =>
            Duration(v, "--git-bundle-interval", t => o.GitBundleInterval = t)),
        new("cluster-redis", "redis://HOST:PORT: share this node's cache with every node using the same Redis", false, (o, v) => { o.ClusterRedis = v[^1]; return null; }),
        new("advertise", "this node's URL as the other cluster nodes reach it (with --cluster-redis)", false, (o, v) => { o.Advertise = v[^1].TrimEnd('/'); return null; }),
        new("cluster-secret", "shared secret signing requests between cluster nodes (with --cluster-redis)", false, (o, v) => { o.ClusterSecret = v[^1]; return null; }),
        new("cluster-secret-file", "file holding the cluster secret (instead of --cluster-secret, which `ps` shows)", false, (o, v) =>
            SecretFiles.TryRead("--cluster-secret-file", v[^1], 16, out var secret) ?? Set(() => o.ClusterSecret = secret)),
        new("peer-fanout", "most peers downloading one blob from this node at once (default 4)", false, (o, v) =>
            int.TryParse(v[^1], out var n) && n is >= 1 and <= 1024 ? Set(() => o.PeerFanout = n) : $"--peer-fanout '{v[^1]}': expected 1-1024"),
        new("files-ttl", "NAME=DURATION: treat that files upstream as mutable, revalidated after DURATION, repeatable", true, (o, v) =>
        {
            o.FilesTtl.Clear();
            foreach (var item in v)
            {
                var parts = item.Split('=', 2, StringSplitOptions.TrimEntries);
                if (parts.Length != 2 || !ValueParsers.TryParseDuration(parts[1], out var ttl))
                {
                    return $"--files-ttl '{item}': expected NAME=DURATION, e.g. nightly=10m";
                }
                o.FilesTtl[parts[0].ToLowerInvariant()] = ttl;
            }
            return null;
        }),
        new("max-upstream-fetches-per-client", "most new upstream fetches (misses) one client address may start per minute; more get 429 (default 0: no limit)", false, (o, v) =>
            int.TryParse(v[^1], out var n) && n >= 0 ? Set(() => o.MaxUpstreamFetchesPerClient = n) : $"--max-upstream-fetches-per-client '{v[^1]}': expected a number, 0 for no limit"),
        new("allow-upstream-host", "HOST[:PORT] an upstream's redirects and absolute links may lead to although it is loopback, link-local or private, repeatable; no port: any port (configured upstreams are always allowed)", true, (o, v) =>
        {
            o.AllowUpstreamHosts.Clear();
            foreach (var item in v)
            {
                if (AllowedUpstreamHost.TryParse(item, out var allowed) is { } error)
                {
                    return error;
                }
                o.AllowUpstreamHosts.Add(allowed!);
            }
            return null;
        }),
        new("max-page-size", "largest index page or API body Hoard reads whole, after decompression (default 64MB)", false, (o, v) =>
            ValueParsers.TryParseSize(v[^1], out var b) ? Set(() => o.MaxPageSizeBytes = b) : $"--max-page-size '{v[^1]}': expected a size such as 64MB"),
        new("index-ttl", "how long an index page is served before it is revalidated upstream (default 5m)", false, (o, v) => Duration(v, "--index-ttl", t => o.IndexTtl = t)),
        new("connect-timeout", "upstream connect timeout (default 10s)", false, (o, v) => Duration(v, "--connect-timeout", t => o.ConnectTimeout = t)),
        new("first-byte-timeout", "upstream time to response headers (default 30s)", false, (o, v) => Duration(v, "--first-byte-timeout", t => o.FirstByteTimeout = t)),
        new("idle-timeout", "longest silence on an upstream body before it counts as broken (default 60s); there is no total timeout", false, (o, v) => Duration(v, "--idle-timeout", t => o.IdleTimeout = t)),
        new("index-retries", "retries with backoff for index requests (default 2); file downloads resume with Range instead", false, (o, v) =>
            int.TryParse(v[^1], out var n) && n is >= 0 and <= 10 ? Set(() => o.IndexRetries = n) : $"--index-retries '{v[^1]}': expected 0-10"),
        new("ca-bundle", "PEM file of extra CA certificates trusted for upstream TLS", false, (o, v) => { o.CaBundle = v[^1]; return null; }),
        new("admin-token-file", "file holding the bearer token (16+ characters) that admin endpoints such as purge require; without it they are disabled", false, (o, v) =>
            SecretFiles.TryRead("--admin-token-file", v[^1], 16, out var token) ?? Set(() => o.AdminToken = token)),
        new("credentials", "file of upstream credentials, one NAME=USER:TOKEN a line (keep it mode 0600): kept out of URLs and the command line", false, (o, v) => { o.CredentialsFile = v[^1]; return null; }),
        new("shutdown-timeout", "how long a stop (SIGTERM) waits for responses in flight before cutting them off (default 30s)", false, (o, v) => Duration(v, "--shutdown-timeout", t => o.ShutdownTimeout = t)),
        new("log-level", "trace, debug, information, warning or error (default information)", false, (o, v) => { o.LogLevel = v[^1]; return null; }),
        new("log-format", "text or json, for the application log and the access log (default text)", false, (o, v) => { o.LogFormat = v[^1].ToLowerInvariant(); return null; }),
        new("access-log", "one line per request to stdout, off, or a file path (default stdout)", false, (o, v) => { o.AccessLog = v[^1]; return null; }),
    ];

    /// <summary>Parses NAME=URL items into a list: replacing it, or adding to it with later names overriding.</summary>
    private static string? Named(IReadOnlyList<string> values, string flag, List<UpstreamSpec> into, bool replaceAll)
    {
        if (replaceAll)
        {
            into.Clear();
        }
        foreach (var item in values)
        {
            var err = UpstreamSpec.TryParse(item, nameRequired: true, out var spec, out _);
            if (err is not null)
            {
                return flag + " " + err;
            }
            into.RemoveAll(r => r.Name == spec!.Name);
            into.Add(spec!);
        }
        return null;
    }

    /// <summary>
    /// NAME=PATTERN items; an item that starts with refs/ continues the previous name's list, so both
    /// `--git-refs gh=refs/heads/*,refs/tags/*` and the comma-split HOARD_GIT_REFS read the same.
    /// </summary>
    private static string? GitRefs(HoardOptions o, IReadOnlyList<string> values)
    {
        o.GitRefs.Clear();
        string? name = null;
        foreach (var item in values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            var pattern = item;
            if (!item.StartsWith("refs/", StringComparison.Ordinal))
            {
                var parts = item.Split('=', 2, StringSplitOptions.TrimEntries);
                if (parts.Length != 2 || !UpstreamSpec.IsValidName(parts[0]))
                {
                    return $"--git-refs '{item}': expected NAME=refs/heads/*,refs/tags/*";
                }
                (name, pattern) = (parts[0], parts[1]);
                o.GitRefs[name] = new List<string>();
            }
            if (name is null || !IsRefPattern(pattern))
            {
                return $"--git-refs '{item}': expected NAME= then patterns such as refs/heads/* (letters, digits, ._-/ and at most one *)";
            }
            ((List<string>)o.GitRefs[name]).Add(pattern);
        }
        return null;
    }

    private static bool IsRefPattern(string pattern) =>
        pattern.StartsWith("refs/", StringComparison.Ordinal) && pattern.Length > 5 && pattern.Count(c => c == '*') <= 1
        && !pattern.Contains("..", StringComparison.Ordinal) && !pattern.Contains("//", StringComparison.Ordinal)
        && pattern.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/' or '*');

    private static string? Set(Action a)
    {
        a();
        return null;
    }

    private static string? Duration(IReadOnlyList<string> v, string flag, Action<TimeSpan> set) =>
        ValueParsers.TryParseDuration(v[^1], out var t) ? Set(() => set(t)) : $"{flag} '{v[^1]}': expected a duration such as 30s or 5m";

    /// <summary>Builds options from the three layers. Errors are returned, never thrown.</summary>
    public static (HoardOptions Options, List<string> Errors) Load(
        string? configFile, IDictionary<string, string?> environment, IReadOnlyDictionary<string, IReadOnlyList<string>> flags)
    {
        var errors = new List<string>();
        var layered = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        if (configFile is not null)
        {
            ReadConfigFile(configFile, layered, errors);
        }
        foreach (var s in All)
        {
            if (environment.TryGetValue(s.EnvVar, out var value) && !string.IsNullOrWhiteSpace(value))
            {
                layered[s.Name] = s.Repeatable
                    ? value.Split([',', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    : [value.Trim()];
            }
        }
        foreach (var (name, values) in flags)
        {
            layered[name] = values;
        }

        var options = new HoardOptions();
        foreach (var s in All)
        {
            if (layered.TryGetValue(s.Name, out var values) && values.Count > 0 && s.Apply(options, values) is { } error)
            {
                errors.Add(error);
            }
        }
        if (layered.ContainsKey("cluster-secret") && layered.ContainsKey("cluster-secret-file"))
        {
            errors.Add("--cluster-secret and --cluster-secret-file are both set: give one");
        }
        // Last: the credentials go to upstreams by name, whichever layer defined them.
        if (options.CredentialsFile is { } credentials)
        {
            errors.AddRange(UpstreamCredentials.Apply(options, credentials));
        }
        if (errors.Count == 0)
        {
            errors.AddRange(options.Validate());
        }
        return (options, errors);
    }

    private static void ReadConfigFile(string path, Dictionary<string, IReadOnlyList<string>> into, List<string> errors)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                var setting = All.FirstOrDefault(s => s.Name == prop.Name);
                if (setting is null)
                {
                    errors.Add($"{path}: unknown setting '{prop.Name}' (known: {string.Join(", ", All.Select(s => s.Name))})");
                    continue;
                }
                into[setting.Name] = prop.Value.ValueKind switch
                {
                    JsonValueKind.Array => prop.Value.EnumerateArray().Select(e => e.ToString()).ToArray(),
                    _ => [prop.Value.ToString()],
                };
            }
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException or InvalidOperationException)
        {
            errors.Add($"config file '{path}': {e.Message}");
        }
    }
}
