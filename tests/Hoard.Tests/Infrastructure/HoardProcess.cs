using System.Collections.Concurrent;
using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>The hoard executable as a child process (for kill -9, environment variables, the published build).</summary>
public sealed class HoardProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private HoardProcess(Process process) => _process = process;

    public int Pid => _process.Id;

    /// <summary>Resident memory now (VmRSS) and at its peak (VmHWM), in bytes, from /proc.</summary>
    public (long Rss, long Peak) Memory()
    {
        long Read(string field) => long.Parse(File.ReadLines($"/proc/{Pid}/status").First(l => l.StartsWith(field, StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        return (Read("VmRSS:"), Read("VmHWM:"));
    }

    /// <summary>Everything the process wrote to stdout and stderr so far (application log, access log).</summary>
    public string Output => string.Join('\n', _output);

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "hoard.dll");

    /// <summary>Runs a `hoard` command (warm, pin, status...) with this admin token in HOARD_ADMIN_TOKEN (empty: none).</summary>
    public static Task<(int Code, string Output)> RunCliAsync(string adminToken, params string[] args) =>
        Pip.RunAsync("dotnet", [Dll, .. args], new Dictionary<string, string> { ["HOARD_ADMIN_TOKEN"] = adminToken });

    /// <summary>Peak resident memory (VmHWM in /proc/PID/status), in bytes: what the process really took at its worst.</summary>
    public long PeakResidentBytes
    {
        get
        {
            var line = File.ReadLines($"/proc/{_process.Id}/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
            return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
    }

    /// <summary>Runs `dotnet hoard.dll ARGS`, or the given executable, with extra environment variables.</summary>
    public static HoardProcess Start(IEnumerable<string> args, IDictionary<string, string>? env = null, string? executable = null)
    {
        var psi = new ProcessStartInfo(executable ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (executable is null)
        {
            psi.ArgumentList.Add(Dll);
        }
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (k, v) in env ?? new Dictionary<string, string>())
        {
            psi.Environment[k] = v;
        }
        var p = Process.Start(psi)!;
        var hoard = new HoardProcess(p);
        p.OutputDataReceived += (_, e) => hoard.Collect(e.Data);
        p.ErrorDataReceived += (_, e) => hoard.Collect(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return hoard;
    }

    private void Collect(string? line)
    {
        if (line is not null)
        {
            _output.Enqueue(line);
        }
    }

    /// <summary>SIGTERM, as systemd, docker stop and Kubernetes send it: the graceful stop.</summary>
    public async Task TerminateAsync()
    {
        var (code, output) = await Pip.RunAsync("kill", ["-TERM", Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.True(code == 0, "kill -TERM: " + output);
    }

    /// <summary>The exit code, once the process has ended (fails the test if it does not end in time).</summary>
    public async Task<int> ExitCodeAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    /// <summary>SIGKILL: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process.Dispose();
    }
}
