using System.Security.Cryptography;
using Hoard.Tests.Infrastructure;

namespace Hoard.Tests.Integration;

/// <summary>The hoard executable as a real process: kill -9 and restart, and the command line.</summary>
public sealed class ProcessTests
{
    [Fact]
    public async Task Kill_9_mid_download_leaves_nothing_partial_and_a_restart_cleans_up_and_serves_correct_bytes()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var data = new byte[20 * 1024 * 1024];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(Path.Combine(root, "big.bin"), data);
        var sha = Convert.ToHexStringLower(SHA256.HashData(data));
        await using var nginx = new Nginx(root, "limit_rate 4m;");
        await nginx.StartAsync();
        var dataDir = temp.Sub("data");
        var port = Ports.Free();
        string[] args = ["serve", "--listen", $"http://127.0.0.1:{port}", "--data", dataDir, "--files", $"up={nginx.BaseUrl}/"];

        await using (var hoard = HoardProcess.Start(args))
        {
            await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
            using var http = new HttpClient();
            using var response = await http.GetAsync($"http://127.0.0.1:{port}/files/up/big.bin", HttpCompletionOption.ResponseHeadersRead);
            await using var body = await response.Content.ReadAsStreamAsync();
            await body.ReadExactlyAsync(new byte[1024 * 1024]);
            Assert.NotEmpty(Directory.GetFiles(Path.Combine(dataDir, "tmp")));
            await hoard.KillAsync();
        }

        await using (HoardProcess.Start(args))
        {
            await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
            Assert.Empty(Directory.GetFiles(Path.Combine(dataDir, "tmp")));
            Assert.False(Directory.Exists(Path.Combine(dataDir, "blobs", "sha256", sha[..2])) && File.Exists(Path.Combine(dataDir, "blobs", "sha256", sha[..2], sha)));
            using var http = new HttpClient();
            using var again = await http.GetAsync($"http://127.0.0.1:{port}/files/up/big.bin");
            Assert.Equal("MISS", again.Headers.GetValues("X-Hoard-Cache").Single());
            Assert.Equal(sha, Convert.ToHexStringLower(SHA256.HashData(await again.Content.ReadAsByteArrayAsync())));
            using var hit = await http.GetAsync($"http://127.0.0.1:{port}/files/up/big.bin");
            Assert.Equal("HIT", hit.Headers.GetValues("X-Hoard-Cache").Single());
        }
    }

    [Fact]
    public async Task A_published_single_file_build_runs_and_serves()
    {
        using var temp = new TempDir();
        var repo = RepoFiles.Root;
        var output = temp.Sub("publish");
        var (code, log) = await Pip.RunAsync("dotnet", ["publish", Path.Combine(repo, "src", "Hoard"), "-c", "Release", "-r", "linux-x64", "--self-contained", "false", "-p:PublishSingleFile=true", "-o", output, "--nologo"]);
        Assert.True(code == 0, log);
        var binary = Path.Combine(output, "hoard");
        Assert.False(File.Exists(Path.Combine(output, "Hoard.Core.dll")), "single file: the core library is inside the executable");
        var port = Ports.Free();
        await using (HoardProcess.Start(["serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data")], executable: binary))
        {
            await Ports.WaitOpenAsync(port, TimeSpan.FromSeconds(30));
            using var http = new HttpClient();
            Assert.Equal("ok", (await http.GetStringAsync($"http://127.0.0.1:{port}/healthz")).Trim());
            Assert.True(File.Exists(Path.Combine(temp.Path, "data", "index.db")));
        }
    }

    [Fact]
    public async Task Config_pip_prints_pip_and_uv_settings_and_apply_writes_pip_conf_keeping_other_settings()
    {
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "pip", "--url", "http://mirror.example:8080"]);
        Assert.Equal(0, code);
        Assert.Contains("index-url = http://mirror.example:8080/simple/", output, StringComparison.Ordinal);
        Assert.Contains("trusted-host = mirror.example", output, StringComparison.Ordinal);
        Assert.Contains("UV_DEFAULT_INDEX=http://mirror.example:8080/simple/", output, StringComparison.Ordinal);

        using var temp = new TempDir();
        var conf = Path.Combine(temp.Path, "pip.conf");
        File.WriteAllText(conf, "[global]\ntimeout = 60\nindex-url = https://old.example/simple/\n\n[install]\nuser = false\n");
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "config", "pip", "--url", "http://mirror.example:8080", "--index", "internal", "--apply", "--file", conf]);
        Assert.True(code == 0, output);
        var text = File.ReadAllText(conf);
        Assert.Contains("index-url = http://mirror.example:8080/pypi/internal/simple/", text, StringComparison.Ordinal);
        Assert.Contains("timeout = 60", text, StringComparison.Ordinal);
        Assert.Contains("[install]", text, StringComparison.Ordinal);
        Assert.DoesNotContain("old.example", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_lists_every_command_and_flag_and_bad_settings_exit_2_with_a_message()
    {
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "--help"]);
        Assert.Equal(0, code);
        Assert.Contains("serve", output, StringComparison.Ordinal);
        Assert.Contains("config", output, StringComparison.Ordinal);
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "serve", "--help"]);
        foreach (var flag in new[] { "--listen", "--data", "--max-size", "--pypi", "--files", "--index-ttl", "--config", "HOARD_MAX_SIZE" })
        {
            Assert.Contains(flag, output, StringComparison.Ordinal);
        }
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "serve", "--max-size", "lots"]);
        Assert.Equal(2, code);
        Assert.Contains("--max-size 'lots'", output, StringComparison.Ordinal);
        (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "serve"], new Dictionary<string, string> { ["HOARD_PYPI"] = "ftp://nope" });
        Assert.Equal(2, code);
        Assert.Contains("expected an http(s) URL", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_port_in_use_is_one_line_and_exit_2_and_the_start_log_lists_every_upstream_git_included()
    {
        using var temp = new TempDir();
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var (code, output) = await Pip.RunAsync("dotnet", [HoardProcess.Dll, "serve", "--listen", $"http://127.0.0.1:{port}", "--data", temp.Sub("data"),
            "--git", "gh=https://github.com/", "--files", "rel=https://releases.example/"]);
        Assert.Equal(2, code);
        Assert.Contains($"hoard: Failed to bind to address http://127.0.0.1:{port}: address already in use; another program (or another Hoard) listens there", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", output, StringComparison.Ordinal);
        Assert.Contains("Upstream git gh = https://github.com/ (at /git/gh/<repo>)", output, StringComparison.Ordinal);
        Assert.Contains("Upstream files rel = https://releases.example/", output, StringComparison.Ordinal);
        Assert.Contains("Upstream pypi pypi = https://pypi.org/simple/", output, StringComparison.Ordinal);
    }
}
