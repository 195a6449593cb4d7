using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Hoard.Core.PyPI;

/// <summary>
/// Writes project pages for clients. Every file link becomes relative — "{filename}#sha256=…" — so it resolves
/// to Hoard's own page URL whatever host, port or path prefix clients reach Hoard by; everything else is kept
/// as upstream gave it.
/// </summary>
public static class SimpleRenderer
{
    public static string FileHref(SimpleFile f) => Uri.EscapeDataString(f.Filename);

    public static byte[] RenderProject(SimplePage page, SimpleFormat format) =>
        format == SimpleFormat.Json ? ProjectJson(page) : ProjectHtml(page);

    private static byte[] ProjectJson(SimplePage page)
    {
        JsonObject root;
        if (page.UpstreamJson is { } upstream)
        {
            root = (JsonObject)upstream.DeepClone();
        }
        else
        {
            root = new JsonObject { ["meta"] = new JsonObject { ["api-version"] = "1.0" }, ["name"] = page.Name };
        }
        var files = new JsonArray();
        foreach (var f in page.Files)
        {
            var file = (JsonObject)f.Json.DeepClone();
            file["url"] = FileHref(f);
            files.Add(file);
        }
        root["files"] = files;
        return Encoding.UTF8.GetBytes(root.ToJsonString(SimpleParser.Output));
    }

    private static byte[] ProjectHtml(SimplePage page)
    {
        var sb = new StringBuilder(256 + page.Files.Count * 200);
        var version = page.RepositoryVersion ?? "1.0";
        var name = WebUtility.HtmlEncode(page.Name);
        sb.Append("<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"").Append(WebUtility.HtmlEncode(version))
          .Append("\">\n    <title>Links for ").Append(name).Append("</title>\n  </head>\n  <body>\n    <h1>Links for ").Append(name).Append("</h1>\n");
        foreach (var f in page.Files)
        {
            sb.Append("    <a href=\"").Append(WebUtility.HtmlEncode(FileHref(f)));
            // The parser keeps only hashlib names and hex values; encoded all the same, as everything upstream wrote.
            if (f.Json["hashes"] is JsonObject hashes && (hashes["sha256"] is not null ? "sha256" : hashes.FirstOrDefault().Key) is { } algo
                && hashes[algo] is JsonValue digest && digest.TryGetValue<string>(out var hex))
            {
                sb.Append('#').Append(WebUtility.HtmlEncode(algo)).Append('=').Append(WebUtility.HtmlEncode(hex));
            }
            sb.Append('"');
            foreach (var (key, value) in f.HtmlAttributes ?? JsonToAttributes(f.Json))
            {
                if (!SimpleParser.IsKnownAttribute(key))
                {
                    continue;
                }
                sb.Append(' ').Append(key);
                if (value is not null)
                {
                    sb.Append("=\"").Append(WebUtility.HtmlEncode(value)).Append('"');
                }
            }
            sb.Append('>').Append(WebUtility.HtmlEncode(f.Filename)).Append("</a><br />\n");
        }
        sb.Append("  </body>\n</html>\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    /// <summary>PEP 691 fields back to PEP 503/592/658/714 attributes.</summary>
    private static List<KeyValuePair<string, string?>> JsonToAttributes(JsonObject f)
    {
        var attributes = new List<KeyValuePair<string, string?>>();
        if (f["requires-python"] is JsonValue rp && rp.TryGetValue<string>(out var requires))
        {
            attributes.Add(new("data-requires-python", requires));
        }
        switch (f["yanked"])
        {
            case JsonValue v when v.TryGetValue<string>(out var reason):
                attributes.Add(new("data-yanked", reason));
                break;
            case JsonValue v when v.TryGetValue<bool>(out var yanked) && yanked:
                attributes.Add(new("data-yanked", ""));
                break;
        }
        var metadata = f["core-metadata"] ?? f["dist-info-metadata"];
        var attr = metadata switch
        {
            JsonObject o when o["sha256"] is JsonValue h && h.TryGetValue<string>(out var sha) => "sha256=" + sha,
            JsonObject o when o.FirstOrDefault() is { Value: JsonValue v } kv && v.TryGetValue<string>(out var digest) => kv.Key + "=" + digest,
            JsonValue v when v.TryGetValue<bool>(out var b) && b => "true",
            _ => null,
        };
        if (attr is not null)
        {
            attributes.Add(new("data-dist-info-metadata", attr));
            attributes.Add(new("data-core-metadata", attr));
        }
        return attributes;
    }

    public static byte[] RenderList(SimpleProjectList list, SimpleFormat format)
    {
        if (format == SimpleFormat.Json)
        {
            var projects = new JsonArray();
            foreach (var n in list.Names)
            {
                projects.Add(new JsonObject { ["name"] = n });
            }
            var root = new JsonObject { ["meta"] = list.Meta?.DeepClone() ?? new JsonObject { ["api-version"] = "1.0" }, ["projects"] = projects };
            return Encoding.UTF8.GetBytes(root.ToJsonString(SimpleParser.Output));
        }
        var sb = new StringBuilder(list.Names.Count * 40 + 200);
        sb.Append("<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.0\">\n    <title>Simple index</title>\n  </head>\n  <body>\n");
        foreach (var n in list.Names)
        {
            sb.Append("    <a href=\"").Append(WebUtility.HtmlEncode(Uri.EscapeDataString(PypiNames.Normalize(n)))).Append("/\">").Append(WebUtility.HtmlEncode(n)).Append("</a>\n");
        }
        sb.Append("  </body>\n</html>\n");
        return Encoding.UTF8.GetBytes(sb.ToString());
    }
}
