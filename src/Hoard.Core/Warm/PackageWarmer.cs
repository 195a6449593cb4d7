using System.Text.Json;
using Hoard.Core.Configuration;
using Hoard.Core.PyPI;

namespace Hoard.Core.Warm;

/// <summary>
/// Warms a pinned distribution: the project's page from its index (so pip finds it when upstream is down), then the
/// chosen files and, where the page offers them (PEP 658), their metadata files, which pip reads before the file.
/// </summary>
public sealed class PackageWarmer(SelfClient self, HoardOptions options)
{
    /// <summary>A project page larger than this is not one (the biggest on the public index are a few MB).</summary>
    private const int PageLimit = 64 * 1024 * 1024;

    public async Task WarmAsync(WarmPackage package, WarmItem item, WarmRequest request, CancellationToken ct)
    {
        var index = package.Index is null ? options.DefaultPypiIndex : options.Pypi.FirstOrDefault(p => p.Name == package.Index);
        if (index is null)
        {
            item.Fail($"no PyPI index named '{package.Index}' is configured (configured: {string.Join(", ", options.Pypi.Select(p => p.Name))})");
            return;
        }
        if (!PypiNames.IsValidProject(package.Project))
        {
            item.Fail("not a valid project name");
            return;
        }
        var prefix = $"/pypi/{index.Name}/simple/{PypiNames.Normalize(package.Project)}/";
        var (answer, page) = await self.GetDocumentAsync(prefix, SimpleNegotiation.JsonType, PageLimit, ct);
        item.Keep(answer, prefix, SimpleNegotiation.JsonType);
        if (page is null)
        {
            item.Fail($"the project page: {answer.Error}");
            return;
        }
        List<PageFile> files;
        try
        {
            files = ParseFiles(page);
        }
        catch (JsonException e)
        {
            item.Fail("the project page is not PEP 691 JSON: " + e.Message);
            return;
        }
        var chosen = DistributionFiles.Select(files, f => f.Filename, f => f.Sha256, package, request.PythonVersions, request.Platforms);
        if (chosen.Count == 0)
        {
            item.Fail(files.Count == 0 ? "the index lists no files for this project"
                : $"no file of version {package.Version} matches{(package.Sha256.Count + package.Files.Count > 0 ? " the lock's hashes" : "")}{(request.PythonVersions.Count + request.Platforms.Count > 0 ? " the Python versions and platforms asked for" : "")}");
            return;
        }
        if (!item.Plan(chosen.Select(f => (f.Sha256, f.Size ?? 0))))
        {
            return;
        }
        foreach (var file in chosen)
        {
            ct.ThrowIfCancellationRequested();
            if (file.HasMetadata)
            {
                var (metadata, _) = await self.GetDocumentAsync(prefix + file.Href + ".metadata", null, PageLimit, ct);
                item.Keep(metadata, prefix + file.Href + ".metadata");
                if (!metadata.Ok)
                {
                    item.Fail($"{file.Filename}.metadata: {metadata.Error}");
                }
            }
            item.Count(await self.GetAsync(prefix + file.Href, null, item.Received, ct), file.Filename, prefix + file.Href);
        }
    }

    private sealed record PageFile(string Filename, string Href, string? Sha256, long? Size, bool HasMetadata);

    private static List<PageFile> ParseFiles(byte[] page)
    {
        using var doc = JsonDocument.Parse(page);
        var list = new List<PageFile>();
        if (!doc.RootElement.TryGetProperty("files", out var files) || files.ValueKind != JsonValueKind.Array)
        {
            return list;
        }
        foreach (var f in files.EnumerateArray())
        {
            if (f.TryGetProperty("filename", out var name) && name.ValueKind == JsonValueKind.String && f.TryGetProperty("url", out var url) && url.ValueKind == JsonValueKind.String)
            {
                var href = url.GetString()!;
                // Hoard's own page: every link is a relative file name (a fragment, if any, is not part of the path).
                var hash = href.IndexOf('#', StringComparison.Ordinal);
                href = hash < 0 ? href : href[..hash];
                if (href.Contains('/', StringComparison.Ordinal) || href.Length == 0)
                {
                    continue;
                }
                var sha = f.TryGetProperty("hashes", out var hashes) && hashes.ValueKind == JsonValueKind.Object && hashes.TryGetProperty("sha256", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
                long? size = f.TryGetProperty("size", out var sz) && sz.ValueKind == JsonValueKind.Number && sz.TryGetInt64(out var n) ? n : null;
                var metadata = (f.TryGetProperty("core-metadata", out var cm) || f.TryGetProperty("dist-info-metadata", out cm)) && cm.ValueKind is JsonValueKind.Object or JsonValueKind.True;
                list.Add(new PageFile(name.GetString()!, href, sha, size, metadata));
            }
        }
        return list;
    }
}
