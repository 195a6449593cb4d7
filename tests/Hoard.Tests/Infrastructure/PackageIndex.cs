using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace Hoard.Tests.Infrastructure;

public sealed record BuiltWheel(string Project, string Version, string Filename, string Path, string Sha256, long Size, string Metadata);

/// <summary>
/// Builds real wheels and a static PEP 503 (HTML) or PEP 691 (JSON) index for nginx to serve.
/// Links are relative ("../../packages/x.whl") or absolute on another base URL.
/// </summary>
public sealed class PackageIndex(string root)
{
    private readonly List<BuiltWheel> _wheels = [];

    public string Root { get; } = root;
    public string PackagesDir => Directory.CreateDirectory(Path.Combine(Root, "packages")).FullName;

    public BuiltWheel AddWheel(string project, string version, long extraBytes = 0, string requiresPython = ">=3.7")
    {
        var module = project.Replace('-', '_');
        var dist = $"{module}-{version}";
        var filename = $"{dist}-py3-none-any.whl";
        var path = Path.Combine(PackagesDir, filename);
        var metadata = $"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\nRequires-Python: {requiresPython}\n\n";
        var files = new List<(string Name, byte[] Data)>
        {
            ($"{module}/__init__.py", Encoding.UTF8.GetBytes($"VERSION = \"{version}\"\n")),
            ($"{dist}.dist-info/METADATA", Encoding.UTF8.GetBytes(metadata)),
            ($"{dist}.dist-info/WHEEL", Encoding.UTF8.GetBytes("Wheel-Version: 1.0\nGenerator: hoard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n\n")),
        };
        if (extraBytes > 0)
        {
            var data = new byte[extraBytes];
            Random.Shared.NextBytes(data);
            files.Add(($"{module}/data.bin", data));
        }
        var record = new StringBuilder();
        foreach (var (name, data) in files)
        {
            var digest = Convert.ToBase64String(SHA256.HashData(data)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            record.Append($"{name},sha256={digest},{data.Length}\n");
        }
        record.Append($"{dist}.dist-info/RECORD,,\n");
        files.Add(($"{dist}.dist-info/RECORD", Encoding.UTF8.GetBytes(record.ToString())));
        File.Delete(path); // a rebuilt wheel replaces the old one, as on a private index
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            foreach (var (name, data) in files)
            {
                using var s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open();
                s.Write(data);
            }
        }
        File.WriteAllText(path + ".metadata", metadata);
        var bytes = File.ReadAllBytes(path);
        var wheel = new BuiltWheel(project, version, filename, path, Convert.ToHexStringLower(SHA256.HashData(bytes)), bytes.Length, metadata);
        _wheels.RemoveAll(w => w.Filename == wheel.Filename);
        _wheels.Add(wheel);
        return wheel;
    }

    /// <summary>Writes simple/&lt;project&gt;/index.html for every project, links relative or on <paramref name="fileBaseUrl"/>.</summary>
    public void WriteHtml(string? fileBaseUrl = null, Func<BuiltWheel, string>? hashOverride = null)
    {
        foreach (var group in _wheels.GroupBy(w => w.Project))
        {
            var sb = new StringBuilder("<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" content=\"1.0\"><title>Links</title></head><body>\n");
            foreach (var w in group)
            {
                var href = (fileBaseUrl is null ? "../../packages/" : fileBaseUrl.TrimEnd('/') + "/packages/") + w.Filename;
                var metaSha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(w.Metadata)));
                sb.Append($"<a href=\"{href}#sha256={hashOverride?.Invoke(w) ?? w.Sha256}\" data-requires-python=\"&gt;=3.7\" data-dist-info-metadata=\"sha256={metaSha}\" data-core-metadata=\"sha256={metaSha}\">{w.Filename}</a><br/>\n");
            }
            sb.Append("</body></html>\n");
            var dir = Directory.CreateDirectory(Path.Combine(Root, "simple", group.Key)).FullName;
            File.WriteAllText(Path.Combine(dir, "index.html"), sb.ToString());
        }
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(Path.Combine(Root, "simple")).FullName, "index.html"),
            "<html><body>" + string.Concat(_wheels.Select(w => w.Project).Distinct().Select(p => $"<a href=\"{p}/\">{p}</a>\n")) + "</body></html>");
    }

    /// <summary>Writes PEP 691 JSON pages (api 1.1 with PEP 700 size/upload-time/versions) with absolute links.</summary>
    public void WriteJson(string fileBaseUrl)
    {
        foreach (var group in _wheels.GroupBy(w => w.Project))
        {
            var files = string.Join(",", group.Select(w =>
            {
                var metaSha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(w.Metadata)));
                return "{\"filename\":\"" + w.Filename + "\",\"url\":\"" + fileBaseUrl.TrimEnd('/') + "/packages/" + w.Filename
                    + "\",\"hashes\":{\"sha256\":\"" + w.Sha256 + "\"},\"requires-python\":\">=3.7\",\"size\":" + w.Size
                    + ",\"upload-time\":\"2026-01-02T03:04:05.678901Z\",\"yanked\":false,\"core-metadata\":{\"sha256\":\"" + metaSha
                    + "\"},\"data-dist-info-metadata\":{\"sha256\":\"" + metaSha + "\"}}";
            }));
            var versions = string.Join(",", group.Select(w => $"\"{w.Version}\""));
            var json = $$"""{"meta":{"api-version":"1.1","_last-serial":42},"name":"{{group.Key}}","versions":[{{versions}}],"files":[{{files}}]}""";
            var dir = Directory.CreateDirectory(Path.Combine(Root, "simple", group.Key)).FullName;
            File.WriteAllText(Path.Combine(dir, "index.json"), json);
        }
    }
}
