using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>Debian's redis-server on a loopback port, no persistence.</summary>
public sealed class RedisServer : ChildServer
{
    private readonly string? _password;

    public RedisServer(int? port = null, string? password = null)
        : base("hoard-redis-")
    {
        Port = port ?? Ports.Free();
        _password = password;
    }

    public int Port { get; }
    public string Url => $"redis://127.0.0.1:{Port}";

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true, RedirectStandardError = true };
        string[] auth = _password is null ? [] : ["--requirepass", _password];
        foreach (var a in new[] { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", Dir }.Concat(auth))
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
        string[] auth = _password is null ? [] : ["--no-auth-warning", "-a", _password];
        var (code, output) = await Pip.RunAsync("redis-cli", ["-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. auth, .. args]);
        Assert.True(code == 0, output);
        return output.Trim();
    }
}
