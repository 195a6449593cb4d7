using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A real git server: nginx + fcgiwrap + git http-backend (Debian's), serving bare repositories the test makes,
/// push enabled. nginx's access log counts upload-pack POSTs. With a user, every request needs Basic auth.
/// </summary>
public sealed class GitUpstream : IAsyncDisposable
{
    private readonly TempDir _dir = new("hoard-gitup");
    private Process? _fcgi;
    private Nginx? _nginx;

    /// <param name="privatePrefix">With a user: only paths under this prefix need credentials (e.g. "/secret").</param>
    public GitUpstream(string? user = null, string? password = null, string? privatePrefix = null, int? lfsPort = null)
    {
        Root = _dir.Sub("repos");
        Socket = Path.Combine(_dir.Path, "fcgi.sock");
        var auth = "";
        if (user is not null)
        {
            var (code, output) = Pip.RunAsync("htpasswd", ["-bn", user, password!]).GetAwaiter().GetResult();
            Assert.True(code == 0, output);
            File.WriteAllText(Path.Combine(_dir.Path, "htpasswd"), output.Trim() + "\n");
            auth = $"auth_basic \"git\"; auth_basic_user_file {_dir.Path}/htpasswd;";
        }
        var fastcgi = $$"""
              fastcgi_pass unix:{{Socket}};
              include /etc/nginx/fastcgi_params;
              fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
              fastcgi_param GIT_PROJECT_ROOT {{Root}};
              fastcgi_param GIT_HTTP_EXPORT_ALL "";
              fastcgi_param PATH_INFO $uri;
              fastcgi_param REMOTE_USER $remote_user;
              fastcgi_param GIT_PROTOCOL $http_git_protocol;
            """;
        if (privatePrefix is not null)
        {
            Config = $"client_max_body_size 0;\nlocation / {{ {fastcgi} }}\nlocation {privatePrefix} {{ {auth} {fastcgi} }}\n";
            return;
        }
        var lfs = lfsPort is null ? "" : $"location ~ /info/lfs/ {{ proxy_pass http://127.0.0.1:{lfsPort}; }}";
        Config = $"client_max_body_size 0;\n{lfs}\nlocation / {{ {auth} {fastcgi} }}\n";
    }

    public string Root { get; }
    private string Socket { get; }
    private string Config { get; }
    public int Port => _nginx!.Port;
    public string BaseUrl => _nginx!.BaseUrl;
    public Nginx Nginx => _nginx!;

    /// <summary>Bytes nginx sent for upload-pack POSTs (fetches and v2 ls-refs) so far.</summary>
    public long UploadPackBytes() => Nginx.Lines
        .Where(l => l.StartsWith("POST ", StringComparison.Ordinal) && l.Contains("/git-upload-pack ", StringComparison.Ordinal))
        .Sum(l => long.Parse(l.Split(' ')[3], System.Globalization.CultureInfo.InvariantCulture));

    public async Task StartAsync(int? port = null)
    {
        if (_fcgi is null)
        {
            var psi = new ProcessStartInfo("fcgiwrap") { RedirectStandardError = true, RedirectStandardOutput = true };
            psi.ArgumentList.Add("-s");
            psi.ArgumentList.Add("unix:" + Socket);
            _fcgi = Process.Start(psi)!;
            await FetchWait(() => File.Exists(Socket));
        }
        _nginx = new Nginx(Root, Config, port);
        await _nginx.StartAsync();
    }

    public async Task StopNginxAsync()
    {
        if (_nginx is not null)
        {
            await _nginx.DisposeAsync();
        }
    }

    private static async Task FetchWait(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "fcgiwrap did not start");
            await Task.Delay(50);
        }
    }

    /// <summary>A bare repository with a few commits on main, a branch and a tag, pushable over HTTP.</summary>
    public async Task<string> CreateRepositoryAsync(string name, int commits = 3, int bigFileBytes = 0)
    {
        var work = _dir.Sub("work-" + Guid.NewGuid().ToString("N"));
        await Git(work, "init", "-q", "-b", "main");
        for (var i = 0; i < commits; i++)
        {
            File.WriteAllText(Path.Combine(work, $"file{i}.txt"), $"content {i} {Guid.NewGuid()}\n");
            await Git(work, "add", ".");
            await Git(work, "commit", "-q", "-m", $"commit {i}");
        }
        if (bigFileBytes > 0)
        {
            var data = new byte[bigFileBytes];
            Random.Shared.NextBytes(data);
            File.WriteAllBytes(Path.Combine(work, "big.bin"), data);
            await Git(work, "add", ".");
            await Git(work, "commit", "-q", "-m", "big file");
        }
        await Git(work, "branch", "feature");
        await Git(work, "tag", "v1.0");
        var bare = Path.Combine(Root, name);
        await Git(Root, "clone", "-q", "--bare", work, bare);
        await Git(bare, "config", "http.receivepack", "true");
        await Git(bare, "config", "uploadpack.allowFilter", "true");
        return work;
    }

    /// <summary>
    /// A GitHub-style repository: heads and tags as <see cref="CreateRepositoryAsync"/> makes them, plus
    /// <paramref name="pullRequests"/> refs/pull/N/head. Most point at main; every <paramref name="uniqueEvery"/>th
    /// (and N = 7) at a commit of its own, with <paramref name="uniqueBytes"/> of random data, reachable only from that
    /// ref. Returns the unique pull requests' heads.
    /// </summary>
    public async Task<Dictionary<int, string>> CreatePullRequestRepositoryAsync(string name, int pullRequests, int uniqueEvery, int uniqueBytes)
    {
        var work = await CreateRepositoryAsync(name);
        var bare = Path.Combine(Root, name);
        var main = (await Git(work, "rev-parse", "main")).Trim();
        var heads = new Dictionary<int, string>();
        var refs = new System.Text.StringBuilder();
        for (var n = 1; n <= pullRequests; n++)
        {
            if (n % uniqueEvery != 0 && n != 7)
            {
                refs.Append($"create refs/pull/{n}/head {main}\n");
                continue;
            }
            await Git(work, "checkout", "-q", "-b", $"pr{n}", "main");
            var data = new byte[uniqueBytes];
            Random.Shared.NextBytes(data);
            File.WriteAllBytes(Path.Combine(work, $"pr{n}.bin"), data);
            await Git(work, "add", ".");
            await Git(work, "commit", "-q", "-m", $"pull request {n}");
            heads[n] = (await Git(work, "rev-parse", "HEAD")).Trim();
            await Git(work, "checkout", "-q", "main");
            refs.Append($"create refs/pull/{n}/head {heads[n]}\n");
        }
        await Git(bare, "fetch", "-q", work, "refs/heads/pr*:refs/hoard-test/pr*");
        var input = Path.Combine(_dir.Path, "refs-" + name.Replace('/', '-'));
        File.WriteAllText(input, refs.ToString());
        var (code, output) = await Pip.RunAsync("sh", ["-c", $"git -C '{bare}' update-ref --stdin < '{input}' && git -C '{bare}' for-each-ref --format='delete %(refname)' refs/hoard-test | git -C '{bare}' update-ref --stdin"]);
        Assert.True(code == 0, output);
        return heads;
    }

    /// <summary>Commits in a work tree and pushes it straight to the bare repository (not through anyone).</summary>
    public async Task<string> CommitUpstreamAsync(string work, string name)
    {
        File.WriteAllText(Path.Combine(work, "new.txt"), Guid.NewGuid().ToString());
        await Git(work, "add", ".");
        await Git(work, "commit", "-q", "-m", "new upstream commit");
        await Git(work, "push", "-q", Path.Combine(Root, name), "main");
        return (await Git(work, "rev-parse", "HEAD")).Trim();
    }

    public static async Task<string> Git(string dir, params string[] args)
    {
        var (code, output) = await Pip.RunAsync("git", ["-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=test", .. args],
            new Dictionary<string, string> { ["GIT_TERMINAL_PROMPT"] = "0" });
        Assert.True(code == 0, $"git {string.Join(' ', args)}: {output}");
        return output;
    }

    public async ValueTask DisposeAsync()
    {
        await StopNginxAsync();
        if (_fcgi is { HasExited: false })
        {
            _fcgi.Kill(entireProcessTree: true);
        }
        _fcgi?.Dispose();
        _dir.Dispose();
    }
}
