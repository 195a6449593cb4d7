using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>The real pip, in a fresh venv, isolated from this machine's pip configuration.</summary>
public sealed class Pip : IDisposable
{
    private readonly TempDir _dir = new("hoard-venv");

    private Pip()
    {
    }

    public string Python => Path.Combine(_dir.Path, "bin", "python");

    /// <summary>A fresh venv without its own pip; the machine's pip installs into it with --python (fast, offline).</summary>
    public static async Task<Pip> CreateAsync()
    {
        var pip = new Pip();
        var (code, output) = await RunAsync("python3", ["-m", "venv", "--without-pip", pip._dir.Path]);
        Assert.True(code == 0, "venv: " + output);
        return pip;
    }

    public Task<(int Code, string Output)> InstallAsync(string indexUrl, params string[] packages) =>
        RunAsync("python3", ["-m", "pip", "--python", Python, "install", "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--timeout", "20", "--retries", "0", "-i", indexUrl, .. packages]);

    /// <summary>`pip download` into a directory: fetches and hash-checks without installing.</summary>
    public static Task<(int Code, string Output)> DownloadAsync(string indexUrl, string dest, params string[] packages) =>
        RunAsync("python3", ["-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--timeout", "60", "--retries", "0", "-i", indexUrl, "-d", dest, .. packages]);

    public Task<(int Code, string Output)> RunPythonAsync(string code) => RunAsync(Python, ["-c", code]);

    public static async Task<(int Code, string Output)> RunAsync(string file, IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("PIP_", StringComparison.Ordinal)).ToList())
        {
            psi.Environment.Remove(key);
        }
        psi.Environment["PIP_CONFIG_FILE"] = "/dev/null";
        if (env is not null)
        {
            foreach (var (k, v) in env)
            {
                psi.Environment[k] = v;
            }
        }
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await stdout + await stderr);
    }

    public void Dispose() => _dir.Dispose();
}
