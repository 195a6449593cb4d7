using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>Debian's redis-server on a loopback port, no persistence.</summary>
public sealed class RedisServer : ChildServer
{
    public RedisServer(int? port = null)
        : base("hoard-redis-")
    {
        Port = port ?? Ports.Free();
    }

    public int Port { get; }
    public string Url => $"redis://127.0.0.1:{Port}";

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", Dir })
        {
            psi.ArgumentList.Add(a);
        }
        Process = System.Diagnostics.Process.Start(psi)!;
        Process.OutputDataReceived += (_, _) => { };
        Process.ErrorDataReceived += (_, _) => { };
        Process.BeginOutputReadLine();
        Process.BeginErrorReadLine();
        await Ports.WaitOpenAsync(Port, TimeSpan.FromSeconds(10));
    }

    public async Task<string> CliAsync(params string[] args)
    {
        var (code, output) = await Pip.RunAsync("redis-cli", ["-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. args]);
        Assert.True(code == 0, output);
        return output.Trim();
    }
}
