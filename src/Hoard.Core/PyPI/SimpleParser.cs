using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Hoard.Core.PyPI;

/// <summary>Reads upstream simple-index pages, PEP 503 HTML or PEP 691 JSON, with relative or absolute links.</summary>
public static partial class SimpleParser
{
    [GeneratedRegex(@"<a\s([^>]*)>(.*?)</a\s*>", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex Anchor();

    [GeneratedRegex(@"([^\s=""'/>]+)(?:\s*=\s*(?:""([^""]*)""|'([^']*)'|([^\s""'>]+)))?", RegexOptions.Singleline)]
    private static partial Regex Attribute();

    [GeneratedRegex(@"<base\s[^>]*href\s*=\s*[""']([^""']+)[""']", RegexOptions.IgnoreCase)]
    private static partial Regex BaseHref();

    [GeneratedRegex(@"<meta\s[^>]*name\s*=\s*[""']pypi:repository-version[""'][^>]*content\s*=\s*[""']([^""']+)[""']", RegexOptions.IgnoreCase)]
    private static partial Regex RepositoryVersion();

    [GeneratedRegex("<[^>]+>")]
    private static partial Regex Tags();

    /// <summary>hashlib names: sha256, blake2b, sha3_256, shake_128.</summary>
    [GeneratedRegex("^[a-z0-9_]{1,32}$")]
    private static partial Regex HashName();

    [GeneratedRegex("^[0-9a-fA-F]{1,256}$")]
    private static partial Regex HexDigest();

    /// <summary>
    /// The anchor attributes the simple API defines (PEP 503, 592, 658, 714); everything else an upstream writes
    /// in an anchor (onfocus, style, autofocus) is dropped, never passed on to a client's page.
    /// </summary>
    private static readonly HashSet<string> KnownAttributes = new(StringComparer.Ordinal)
    {
        "data-requires-python", "data-gpg-sig", "data-yanked", "data-dist-info-metadata", "data-core-metadata",
    };

    public static bool IsKnownAttribute(string name) => KnownAttributes.Contains(name);

    public static bool IsJson(string? contentType) => contentType is not null && contentType.Contains("json", StringComparison.OrdinalIgnoreCase);

    public static SimplePage ParseProject(string project, ReadOnlySpan<byte> body, string? contentType, Uri pageUrl) =>
        IsJson(contentType) ? ParseProjectJson(project, body, pageUrl) : ParseProjectHtml(project, Encoding.UTF8.GetString(body), pageUrl);

    private static SimplePage ParseProjectJson(string project, ReadOnlySpan<byte> body, Uri pageUrl)
    {
        var root = JsonNode.Parse(body) as JsonObject ?? throw new FormatException("the JSON page is not an object");
        var files = new List<SimpleFile>();
        if (root["files"] is JsonArray array)
        {
            foreach (var node in array)
            {
                if (node is not JsonObject file || file["url"] is not JsonValue hrefNode || !hrefNode.TryGetValue<string>(out var href)
                    || Resolve(pageUrl, href, out _) is not { } url)
                {
                    continue;
                }
                var filename = file["filename"] is JsonValue f && f.TryGetValue<string>(out var given) ? given : FilenameOf(url);
                file["hashes"] = CleanHashes(file["hashes"]);
                foreach (var metadata in (string[])["core-metadata", "dist-info-metadata"])
                {
                    if (file[metadata] is JsonObject)
                    {
                        file[metadata] = CleanHashes(file[metadata]);
                    }
                }
                files.Add(new SimpleFile(filename, url, file, null));
            }
        }
        var name = root["name"]?.GetValue<string>() ?? project;
        return new SimplePage(name, files, root, root["meta"]?["api-version"]?.GetValue<string>());
    }

    private static SimplePage ParseProjectHtml(string project, string html, Uri pageUrl)
    {
        if (BaseHref().Match(html) is { Success: true } b && Uri.TryCreate(pageUrl, WebUtility.HtmlDecode(b.Groups[1].Value), out var baseUrl))
        {
            pageUrl = baseUrl;
        }
        var files = new List<SimpleFile>();
        foreach (Match a in Anchor().Matches(html))
        {
            var attributes = new List<KeyValuePair<string, string?>>();
            string? href = null;
            foreach (Match attr in Attribute().Matches(a.Groups[1].Value))
            {
                var key = attr.Groups[1].Value.ToLowerInvariant();
                string? value = attr.Groups[2].Success ? attr.Groups[2].Value : attr.Groups[3].Success ? attr.Groups[3].Value : attr.Groups[4].Success ? attr.Groups[4].Value : null;
                value = value is null ? null : WebUtility.HtmlDecode(value);
                if (key == "href")
                {
                    href = value;
                }
                else if (IsKnownAttribute(key))
                {
                    attributes.Add(new(key, value));
                }
            }
            if (string.IsNullOrEmpty(href) || Resolve(pageUrl, href, out var fragment) is not { } url)
            {
                continue;
            }
            var text = WebUtility.HtmlDecode(Tags().Replace(a.Groups[2].Value, "")).Trim();
            var filename = text.Length > 0 ? text : FilenameOf(url);
            files.Add(new SimpleFile(filename, url, HtmlToJson(filename, url, fragment, attributes), attributes));
        }
        var version = RepositoryVersion().Match(html) is { Success: true } m ? m.Groups[1].Value : null;
        return new SimplePage(project, files, null, version);
    }

    /// <summary>Maps PEP 503/592/658/714 anchor attributes to the PEP 691 file object.</summary>
    private static JsonObject HtmlToJson(string filename, Uri url, string? fragment, List<KeyValuePair<string, string?>> attributes)
    {
        var hashes = new JsonObject();
        if (fragment is not null && fragment.IndexOf('=', StringComparison.Ordinal) is var eq and > 0)
        {
            AddHash(hashes, fragment[..eq].ToLowerInvariant(), fragment[(eq + 1)..]);
        }
        var json = new JsonObject { ["filename"] = filename, ["url"] = url.ToString(), ["hashes"] = hashes };
        foreach (var (key, value) in attributes)
        {
            switch (key)
            {
                case "data-requires-python":
                    json["requires-python"] = value;
                    break;
                case "data-yanked":
                    json["yanked"] = string.IsNullOrEmpty(value) ? JsonValue.Create(true) : JsonValue.Create(value);
                    break;
                case "data-dist-info-metadata":
                    json["dist-info-metadata"] = MetadataNode(value);
                    break;
                case "data-core-metadata":
                    json["core-metadata"] = MetadataNode(value);
                    break;
            }
        }
        return json;
    }

    private static JsonNode MetadataNode(string? value)
    {
        if (value is not null && value.IndexOf('=', StringComparison.Ordinal) is var eq and > 0)
        {
            var hashes = new JsonObject();
            AddHash(hashes, value[..eq].ToLowerInvariant(), value[(eq + 1)..]);
            return hashes;
        }
        return JsonValue.Create(!string.Equals(value, "false", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>
    /// Keeps a hash only when its name is a hashlib name and its value hex: both end up in clients' pages (inside
    /// an href and attribute values), and the sha256 names the blob in the store and in the cluster.
    /// </summary>
    private static void AddHash(JsonObject hashes, string name, string value)
    {
        if (HashName().IsMatch(name) && HexDigest().IsMatch(value))
        {
            hashes[name] = value;
        }
    }

    private static JsonObject CleanHashes(JsonNode? node)
    {
        var clean = new JsonObject();
        if (node is JsonObject hashes)
        {
            foreach (var (name, value) in hashes)
            {
                if (value is JsonValue v && v.TryGetValue<string>(out var digest))
                {
                    AddHash(clean, name, digest);
                }
            }
        }
        return clean;
    }

    public static SimpleProjectList ParseList(ReadOnlySpan<byte> body, string? contentType)
    {
        var names = new List<string>();
        if (IsJson(contentType))
        {
            var root = JsonNode.Parse(body) as JsonObject ?? throw new FormatException("the JSON page is not an object");
            foreach (var p in root["projects"] as JsonArray ?? [])
            {
                if (p?["name"]?.GetValue<string>() is { } n)
                {
                    names.Add(n);
                }
            }
            return new SimpleProjectList(names, root["meta"] as JsonObject);
        }
        foreach (Match a in Anchor().Matches(Encoding.UTF8.GetString(body)))
        {
            var text = WebUtility.HtmlDecode(Tags().Replace(a.Groups[2].Value, "")).Trim();
            if (text.Length > 0)
            {
                names.Add(text);
            }
        }
        return new SimpleProjectList(names, null);
    }

    /// <summary>The link's absolute URL without its fragment, or null for a link that is not http(s) (javascript:, data:, file:) or not a URL.</summary>
    private static Uri? Resolve(Uri page, string href, out string? fragment)
    {
        fragment = null;
        if (!Uri.TryCreate(page, href, out var url) || url.Scheme is not ("http" or "https"))
        {
            return null;
        }
        fragment = url.Fragment.Length > 1 ? Uri.UnescapeDataString(url.Fragment[1..]) : null;
        return fragment is null ? url : new Uri(url.GetLeftPart(UriPartial.Query));
    }

    private static string FilenameOf(Uri url) => Uri.UnescapeDataString(url.AbsolutePath[(url.AbsolutePath.LastIndexOf('/') + 1)..]);

    /// <summary>Serializes JSON with the same options everywhere (no escaping of '+' or '&lt;' beyond what JSON needs).</summary>
    internal static readonly JsonSerializerOptions Output = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}
