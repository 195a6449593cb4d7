using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>The hoard executable as a child process (for kill -9, environment variables, the published build).</summary>
public sealed class HoardProcess : IAsyncDisposable
{
    private readonly Process _process;

    private HoardProcess(Process process) => _process = process;

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "hoard.dll");

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
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return new HoardProcess(p);
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
