using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Hoard.Tests.Infrastructure;

/// <summary>Debian's docker-registry (CNCF distribution 2.8) on a loopback port, optionally behind htpasswd basic auth.</summary>
public sealed partial class Registry : ChildServer
{
        private readonly string _config;
    private readonly List<string> _log = [];

    public Registry(string? user = null, string? password = null, int? port = null, TokenServer? tokens = null)
        : base("hoard-registry-")
    {
        Port = port ?? Ports.Free();
        Storage = Path.Combine(Dir, "storage");
        var auth = "";
        if (user is not null)
        {
            var (code, output) = Pip.RunAsync("htpasswd", ["-Bbn", user, password!]).GetAwaiter().GetResult();
            Assert.True(code == 0, output);
            File.WriteAllText(Path.Combine(Dir, "htpasswd"), output.Trim() + "\n");
            auth = $"auth:\n  htpasswd:\n    realm: hoard-test\n    path: {Dir}/htpasswd\n";
        }
        if (tokens is not null)
        {
            auth = $"auth:\n  token:\n    realm: {tokens.Realm}\n    service: {TokenServer.Service}\n    issuer: {TokenServer.Issuer}\n    rootcertbundle: {tokens.CertBundle}\n";
        }
        _config = Path.Combine(Dir, "config.yml");
        File.WriteAllText(_config, $"""
            version: 0.1
            log:
              level: info
              accesslog:
                disabled: false
            storage:
              filesystem:
                rootdirectory: {Storage}
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:{Port}
            {auth}
            """);
    }

    public int Port { get; }
    public string Storage { get; }
    public string Host => $"127.0.0.1:{Port}";
    public string BaseUrl => $"http://{Host}";

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo("docker-registry") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("serve");
        psi.ArgumentList.Add(_config);
        Process = Process.Start(psi)!;
        Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (_log) { _log.Add(e.Data); } } };
        Process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (_log) { _log.Add(e.Data); } } };
        Process.BeginErrorReadLine();
        Process.BeginOutputReadLine();
        await Ports.WaitOpenAsync(Port, TimeSpan.FromSeconds(20));
    }

    [GeneratedRegex("\"(GET|HEAD) (/v2/[^ ]+) HTTP/1\\.1\" (\\d+)")]
    private static partial Regex AccessLine();

    /// <summary>Requests the registry's access log shows for a path ending with the suffix.</summary>
    public int Count(string method, string pathSuffix, int status = 200)
    {
        lock (_log)
        {
            return _log.Select(l => AccessLine().Match(l)).Count(m => m.Success && m.Groups[1].Value == method
                && m.Groups[2].Value.EndsWith(pathSuffix, StringComparison.Ordinal) && m.Groups[3].Value == status.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
    }


}
