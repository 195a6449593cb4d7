using System.Text.Json.Nodes;

namespace Hoard.Core.PyPI;

/// <summary>One file of a project page, as upstream described it.</summary>
public sealed class SimpleFile(string filename, Uri url, JsonObject json, List<KeyValuePair<string, string?>>? htmlAttributes)
{
    public string Filename { get; } = filename;

    /// <summary>Absolute upstream URL, fragment removed.</summary>
    public Uri Url { get; } = url;

    /// <summary>The PEP 691 file object (for an HTML upstream, built from the anchor's attributes). Its "url" is replaced on output.</summary>
    public JsonObject Json { get; } = json;

    /// <summary>For an HTML upstream: the anchor's attributes in order, href excluded, so HTML goes out as it came in.</summary>
    public List<KeyValuePair<string, string?>>? HtmlAttributes { get; } = htmlAttributes;

    public string? Sha256 => Json["hashes"]?["sha256"]?.GetValue<string>()?.ToLowerInvariant();

    public long? Size => Json["size"] is JsonValue v && v.TryGetValue<long>(out var s) ? s : null;

    /// <summary>PEP 658/714: whether upstream serves "{url}.metadata", and its sha256 when given.</summary>
    public (bool Available, string? Sha256) Metadata
    {
        get
        {
            var node = Json["core-metadata"] ?? Json["dist-info-metadata"] ?? Json["data-dist-info-metadata"];
            return node switch
            {
                JsonObject o => (true, o["sha256"]?.GetValue<string>()?.ToLowerInvariant()),
                JsonValue v when v.TryGetValue<bool>(out var b) => (b, null),
                _ => (false, null),
            };
        }
    }
}

/// <summary>A parsed project page: either format in, either format out.</summary>
public sealed class SimplePage(string name, List<SimpleFile> files, JsonObject? upstreamJson, string? repositoryVersion)
{
    public string Name { get; } = name;
    public List<SimpleFile> Files { get; } = files;

    /// <summary>The upstream's whole JSON document, when it spoke JSON: everything but file URLs is passed on unchanged.</summary>
    public JsonObject? UpstreamJson { get; } = upstreamJson;
    public string? RepositoryVersion { get; } = repositoryVersion;

    private Dictionary<string, SimpleFile>? _byName;

    public SimpleFile? Find(string filename)
    {
        _byName ??= Files.GroupBy(f => f.Filename, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        return _byName.GetValueOrDefault(filename);
    }
}

/// <summary>The /simple/ root: project names.</summary>
public sealed class SimpleProjectList(List<string> names, JsonObject? meta)
{
    public List<string> Names { get; } = names;
    public JsonObject? Meta { get; } = meta;
}
