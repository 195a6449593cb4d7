using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A real nginx (Debian's nginx-light) serving a directory on a loopback port, as one process
/// (master_process off) so a test can kill it mid-transfer. Its access log counts upstream requests.
/// </summary>
public sealed class Nginx : IAsyncDisposable
{
    private readonly string _dir;
    private readonly string _conf;
    private Process? _process;

    public Nginx(string root, string extraServerConfig = "", int? port = null, string listenOptions = "")
    {
        Root = root;
        Port = port ?? Ports.Free();
        _dir = Directory.CreateTempSubdirectory("hoard-nginx-").FullName;
        AccessLog = Path.Combine(_dir, "access.log");
        _conf = Path.Combine(_dir, "nginx.conf");
        File.WriteAllText(_conf, $$"""
            daemon off;
            master_process off;
            user root;
            pid {{_dir}}/nginx.pid;
            error_log {{_dir}}/error.log warn;
            events { worker_connections 512; }
            http {
              log_format counted '$request_method $request_uri $status $body_bytes_sent "$http_range" "$http_if_none_match"';
              access_log {{AccessLog}} counted;
              types { text/html html; application/vnd.pypi.simple.v1+json json; application/octet-stream whl gz bin metadata; }
              default_type application/octet-stream;
              client_body_temp_path {{_dir}}/body;
              proxy_temp_path {{_dir}}/proxy;
              fastcgi_temp_path {{_dir}}/fastcgi;
              uwsgi_temp_path {{_dir}}/uwsgi;
              scgi_temp_path {{_dir}}/scgi;
              server {
                listen 127.0.0.1:{{Port}} {{listenOptions}};
                root {{root}};
                index index.html index.json;
                {{extraServerConfig}}
              }
            }
            """);
    }

    public string Root { get; }
    public int Port { get; }
    public string AccessLog { get; }
    public string BaseUrl => $"http://127.0.0.1:{Port}";

    public static string Binary => File.Exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo(Binary) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "-p", _dir, "-c", _conf, "-e", Path.Combine(_dir, "error.log") })
        {
            psi.ArgumentList.Add(a);
        }
        _process = Process.Start(psi)!;
        await Ports.WaitOpenAsync(Port, TimeSpan.FromSeconds(10));
    }

    public void Kill()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process = null;
    }

    /// <summary>Requests nginx logged whose path ends with the suffix (and method/status if given).</summary>
    public int Count(string pathSuffix, string method = "GET", int? status = null)
    {
        if (!File.Exists(AccessLog))
        {
            return 0;
        }
        return File.ReadAllLines(AccessLog).Count(l =>
        {
            var parts = l.Split(' ');
            return parts.Length >= 3 && parts[0] == method && parts[1].EndsWith(pathSuffix, StringComparison.Ordinal) && (status is null || parts[2] == status.ToString());
        });
    }

    public string[] Lines => File.Exists(AccessLog) ? File.ReadAllLines(AccessLog) : [];

    public ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
        return ValueTask.CompletedTask;
    }
}
