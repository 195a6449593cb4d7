using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A private containerd daemon (Debian's), with its own root, state and socket, as a node of its own would run it;
/// `ctr` talks to it. Killed and cleaned up on dispose.
/// </summary>
public sealed class Containerd : ChildServer
{
    public Containerd()
        : base("hoard-containerd-")
    {
        Socket = Path.Combine(Dir, "containerd.sock");
    }

    public string Socket { get; }

    public async Task StartAsync()
    {
        var config = Path.Combine(Dir, "config.toml");
        await File.WriteAllTextAsync(config, $"version = 2\nroot = \"{Dir}/root\"\nstate = \"{Dir}/state\"\n[grpc]\n  address = \"{Socket}\"\n");
        var psi = new ProcessStartInfo("containerd") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("--config");
        psi.ArgumentList.Add(config);
        Process = System.Diagnostics.Process.Start(psi)!;
        Process.ErrorDataReceived += (_, _) => { };
        Process.OutputDataReceived += (_, _) => { };
        Process.BeginErrorReadLine();
        Process.BeginOutputReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!File.Exists(Socket))
        {
            Assert.True(DateTime.UtcNow < deadline, "containerd did not open its socket");
            await Task.Delay(50);
        }
    }

    /// <summary>`ctr` against this daemon, in a namespace of its own (a fresh namespace has none of the content).</summary>
    public Task<(int Code, string Output)> CtrAsync(string ns, params string[] args) =>
        Pip.RunAsync("ctr", ["--address", Socket, "-n", ns, .. args]);
}
