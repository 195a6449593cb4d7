using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>
/// A real nginx (Debian's nginx-light) serving a directory on a loopback port, as one process
/// (master_process off) so a test can kill it mid-transfer. Its access log counts upstream requests.
/// </summary>
public sealed class Nginx : ChildServer
{
        private readonly string _conf;

    public Nginx(string root, string extraServerConfig = "", int? port = null, string listenOptions = "")
        : base("hoard-nginx-")
    {
        Root = root;
        Port = port ?? Ports.Free();
        AccessLog = Path.Combine(Dir, "access.log");
        _conf = Path.Combine(Dir, "nginx.conf");
        File.WriteAllText(_conf, $$"""
            daemon off;
            master_process off;
            user root;
            pid {{Dir}}/nginx.pid;
            error_log {{Dir}}/error.log warn;
            events { worker_connections 512; }
            http {
              log_format counted '$request_method $request_uri $status $body_bytes_sent "$http_range" "$http_if_none_match"';
              access_log {{AccessLog}} counted;
              types { text/html html; application/vnd.pypi.simple.v1+json json; application/octet-stream whl gz bin metadata; }
              default_type application/octet-stream;
              client_body_temp_path {{Dir}}/body;
              proxy_temp_path {{Dir}}/proxy;
              fastcgi_temp_path {{Dir}}/fastcgi;
              uwsgi_temp_path {{Dir}}/uwsgi;
              scgi_temp_path {{Dir}}/scgi;
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
        foreach (var a in new[] { "-p", Dir, "-c", _conf, "-e", Path.Combine(Dir, "error.log") })
        {
            psi.ArgumentList.Add(a);
        }
        Process = Process.Start(psi)!;
        await Ports.WaitOpenAsync(Port, TimeSpan.FromSeconds(10));
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

}
