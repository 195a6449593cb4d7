namespace Hoard.Core.Configuration;

/// <summary>Everything `hoard serve` is configured with, validated once at start-up.</summary>
public sealed class HoardOptions
{
    public const string DefaultListen = "http://0.0.0.0:8080";
    public const string DefaultPypi = "https://pypi.org/simple/";
    public const long DefaultMaxSize = 20_000_000_000;
    public const long DefaultMaxPageSize = 64L * 1024 * 1024;
    public const string DockerHub = "docker.io";
    public const string DockerHubUrl = "https://registry-1.docker.io/";

    /// <summary>Where to listen: http:// and https:// URLs, all served the same.</summary>
    public List<string> Listen { get; set; } = [DefaultListen];

    /// <summary>PEM certificate (leaf first, then intermediates) and key for https:// listeners; reloaded when the files change.</summary>
    public string? TlsCert { get; set; }
    public string? TlsKey { get; set; }

    /// <summary>The bearer token admin endpoints (purge) require; null: they are disabled.</summary>
    public string? AdminToken { get; set; }

    /// <summary>The --credentials file (NAME=USER:TOKEN lines), applied to the upstreams' URLs once all settings are read.</summary>
    public string? CredentialsFile { get; set; }

    /// <summary>How long a stop waits for responses in flight before it cuts them off.</summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);
    public string DataDir { get; set; } = DefaultDataDir();
    public long MaxSizeBytes { get; set; } = DefaultMaxSize;

    /// <summary>PyPI upstreams; the first is the default served at /simple/.</summary>
    public List<UpstreamSpec> Pypi { get; } = [new UpstreamSpec("pypi", new Uri(DefaultPypi))];
    public List<UpstreamSpec> Files { get; } = [];

    /// <summary>Git servers by name: /git/NAME/&lt;repo&gt; mirrors URL/&lt;repo&gt;.</summary>
    public List<UpstreamSpec> Git { get; } = [];

    /// <summary>Serve a mirrored repository from its last known refs when upstream is unreachable.</summary>
    public bool GitServeStale { get; set; } = true;

    /// <summary>At most this many git processes (upload-pack, mirror fetches) run at once.</summary>
    public int GitMaxProcesses { get; set; } = Math.Max(2, Environment.ProcessorCount * 2);

    /// <summary>
    /// The refs a mirror keeps, per git upstream name; others get <see cref="DefaultGitRefs"/>. Clones need heads and
    /// tags; GitHub's refs/pull/*, GitLab's refs/merge-requests/* and Gerrit's refs/changes/* are fetched on demand.
    /// </summary>
    public Dictionary<string, IReadOnlyList<string>> GitRefs { get; } = new(StringComparer.Ordinal);

    public static readonly IReadOnlyList<string> DefaultGitRefs = ["refs/heads/*", "refs/tags/*"];

    public IReadOnlyList<string> GitRefsOf(string upstream) => GitRefs.TryGetValue(upstream, out var refs) ? refs : DefaultGitRefs;

    /// <summary>A mirror clone or fetch that shows no progress for this long is killed; its clients go to upstream.</summary>
    public TimeSpan GitFetchIdleTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// A repository's clone bundle is made again at most this often (clients fetch what it lacks); zero: no
    /// bundles are served or advertised.
    /// </summary>
    public TimeSpan GitBundleInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>redis://HOST:PORT of the cluster's Redis; null: this node works alone.</summary>
    public string? ClusterRedis { get; set; }

    /// <summary>This node's URL as the other nodes reach it.</summary>
    public string? Advertise { get; set; }

    /// <summary>Shared secret that signs requests between nodes.</summary>
    public string? ClusterSecret { get; set; }

    /// <summary>
    /// How long a node's records in Redis (which blobs it holds) live unless refreshed; a node re-announces its store
    /// every third of this, so records of a node that died without a word vanish by themselves.
    /// </summary>
    public TimeSpan ClusterRecordTtl { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>At most this many peers download one blob from this node at once; more are refused and look elsewhere.</summary>
    public int PeerFanout { get; set; } = 4;

    /// <summary>Container registries by name (the host as written in image references). Docker Hub is always there unless redefined.</summary>
    public List<UpstreamSpec> Registries { get; } = [new UpstreamSpec(DockerHub, new Uri(DockerHubUrl))];

    /// <summary>The registry for /v2/ requests that name none (docker's registry-mirrors).</summary>
    public string DefaultRegistry { get; set; } = DockerHub;

    /// <summary>How long a tag's digest is trusted before it is checked upstream again with HEAD.</summary>
    public TimeSpan TagTtl { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Generic upstreams whose files are mutable: revalidated after this TTL instead of kept forever.</summary>
    public Dictionary<string, TimeSpan> FilesTtl { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Hosts an upstream's redirects and absolute links may lead to although their addresses are loopback, link-local
    /// or private (configured upstreams are always allowed).
    /// </summary>
    public List<AllowedUpstreamHost> AllowUpstreamHosts { get; } = [];

    /// <summary>Largest index page (or API body read whole), counted after decompression: a gzip bomb stops here.</summary>
    public long MaxPageSizeBytes { get; set; } = DefaultMaxPageSize;

    public TimeSpan IndexTtl { get; set; } = TimeSpan.FromMinutes(5);
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan FirstByteTimeout { get; set; } = TimeSpan.FromSeconds(30);
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);
    public int IndexRetries { get; set; } = 2;
    public string? CaBundle { get; set; }
    public string LogLevel { get; set; } = "information";
    /// <summary>"stdout", "off", or a file to append to.</summary>
    public string AccessLog { get; set; } = "stdout";

    /// <summary>"text" or "json" (one JSON object per line, for log shippers).</summary>
    public string LogFormat { get; set; } = "text";

    /// <summary>Most new upstream fetches (misses, not hits or joins) one client address may start per minute; 0: no limit.</summary>
    public int MaxUpstreamFetchesPerClient { get; set; }

    /// <summary>Blobs at most this large are kept in memory once read, up to <see cref="HotCacheBytes"/> in all.</summary>
    public int HotBlobMaxBytes { get; set; } = 64 * 1024;
    public long HotCacheBytes { get; set; } = 64L * 1024 * 1024;

    public static string DefaultDataDir()
    {
        var env = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var baseDir = !string.IsNullOrEmpty(env) ? env : Path.Combine(string.IsNullOrEmpty(home) ? "." : home, ".cache");
        return Path.Combine(baseDir, "hoard");
    }

    public UpstreamSpec DefaultPypiIndex => Pypi[0];

    /// <summary>Checks what cannot be expressed by types. Returns every problem found.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        ValidateListen(errors);
        if (string.IsNullOrWhiteSpace(DataDir))
        {
            errors.Add("--data must not be empty");
        }
        if (MaxSizeBytes < 1_000_000)
        {
            errors.Add("--max-size must be at least 1MB");
        }
        if (MaxPageSizeBytes < 64 * 1024)
        {
            errors.Add("--max-page-size must be at least 64KB");
        }
        if (Pypi.Count == 0)
        {
            errors.Add("at least one --pypi upstream is needed");
        }
        foreach (var dup in Pypi.GroupBy(p => p.Name).Where(g => g.Count() > 1))
        {
            errors.Add($"--pypi: the name '{dup.Key}' is used twice");
        }
        foreach (var dup in Files.GroupBy(p => p.Name).Where(g => g.Count() > 1))
        {
            errors.Add($"--files: the name '{dup.Key}' is used twice");
        }
        foreach (var dup in Registries.GroupBy(p => p.Name).Where(g => g.Count() > 1))
        {
            errors.Add($"--registry: the name '{dup.Key}' is used twice");
        }
        if (Registries.All(r => r.Name != DefaultRegistry))
        {
            errors.Add($"--default-registry '{DefaultRegistry}': no --registry has that name (configured: {string.Join(", ", Registries.Select(r => r.Name))})");
        }
        foreach (var name in FilesTtl.Keys.Where(n => Files.All(f => f.Name != n)))
        {
            errors.Add($"--files-ttl: no --files upstream is named '{name}'");
        }
        if (IndexTtl < TimeSpan.Zero)
        {
            errors.Add("--index-ttl must not be negative");
        }
        foreach (var (name, t) in new[] { ("--connect-timeout", ConnectTimeout), ("--first-byte-timeout", FirstByteTimeout), ("--idle-timeout", IdleTimeout) })
        {
            if (t <= TimeSpan.Zero)
            {
                errors.Add($"{name} must be positive");
            }
        }
        if (CaBundle is not null && !File.Exists(CaBundle))
        {
            errors.Add($"--ca-bundle '{CaBundle}': no such file");
        }
        if (!Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(LogLevel, ignoreCase: true, out _))
        {
            errors.Add($"--log-level '{LogLevel}': expected trace, debug, information, warning, error or none");
        }
        if (ClusterRedis is not null)
        {
            if (Cluster.RedisUrl.Problem(ClusterRedis) is { } problem)
            {
                errors.Add($"--cluster-redis '{Cluster.RedisUrl.Redact(ClusterRedis)}': {problem}");
            }
            if (!Uri.TryCreate(Advertise, UriKind.Absolute, out var advertise) || advertise.Scheme is not ("http" or "https"))
            {
                errors.Add("--advertise http://THIS-NODE:PORT is required with --cluster-redis");
            }
            if (string.IsNullOrEmpty(ClusterSecret) || ClusterSecret.Length < 16)
            {
                errors.Add("--cluster-secret of at least 16 characters is required with --cluster-redis");
            }
        }
        if (LogFormat is not ("text" or "json"))
        {
            errors.Add($"--log-format '{LogFormat}': expected text or json");
        }
        if (string.IsNullOrWhiteSpace(AccessLog))
        {
            errors.Add("--access-log must be stdout, off or a file path");
        }
        foreach (var name in GitRefs.Keys.Where(n => !Git.Any(g => g.Name == n)))
        {
            errors.Add($"--git-refs {name}=...: no git upstream named '{name}' is configured (--git {name}=URL)");
        }
        if (GitFetchIdleTimeout <= TimeSpan.Zero)
        {
            errors.Add("--git-fetch-idle-timeout must be positive");
        }
        if (ShutdownTimeout < TimeSpan.Zero)
        {
            errors.Add("--shutdown-timeout must not be negative");
        }
        return errors;
    }

    private void ValidateListen(List<string> errors)
    {
        if (Listen.Count == 0)
        {
            errors.Add("--listen: at least one http:// or https:// URL is needed");
        }
        var https = false;
        foreach (var url in Listen)
        {
            if (ListenAddress.TryParse(url, out var address) is { } error)
            {
                errors.Add(error);
            }
            https |= address?.Https == true;
        }
        if (https && (TlsCert is null || TlsKey is null))
        {
            errors.Add("--listen https://…: needs --tls-cert FILE and --tls-key FILE (PEM)");
        }
        else if (!https && (TlsCert is not null || TlsKey is not null))
        {
            errors.Add("--tls-cert/--tls-key are set but no --listen URL is https://");
        }
        else if (https && Hosting.ServerCertificate.TryLoad(TlsCert!, TlsKey!, out _) is { } tlsError)
        {
            errors.Add(tlsError);
        }
    }
}
