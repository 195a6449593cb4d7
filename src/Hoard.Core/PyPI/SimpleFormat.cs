using Microsoft.Extensions.Primitives;

namespace Hoard.Core.PyPI;

public enum SimpleFormat
{
    Html,
    Json,
}

/// <summary>PEP 691 content negotiation on Accept (with q-values) and the optional ?format= parameter.</summary>
public static class SimpleNegotiation
{
    public const string JsonType = "application/vnd.pypi.simple.v1+json";
    public const string HtmlType = "application/vnd.pypi.simple.v1+html";
    public const string UpstreamAccept = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01";

    /// <summary>Returns the format and the Content-Type to answer with, or null when nothing acceptable is on offer (406).</summary>
    public static (SimpleFormat Format, string ContentType)? Choose(StringValues accept, string? formatParameter)
    {
        if (!string.IsNullOrEmpty(formatParameter))
        {
            return formatParameter switch
            {
                JsonType or "application/vnd.pypi.simple.latest+json" => (SimpleFormat.Json, JsonType),
                HtmlType or "application/vnd.pypi.simple.latest+html" => (SimpleFormat.Html, HtmlType),
                "text/html" => (SimpleFormat.Html, "text/html; charset=utf-8"),
                _ => null,
            };
        }
        if (accept.Count == 0 || string.IsNullOrWhiteSpace(accept.ToString()))
        {
            return (SimpleFormat.Html, "text/html; charset=utf-8");
        }
        double json = 0, v1Html = 0, textHtml = 0, any = 0;
        foreach (var value in accept)
        {
            foreach (var part in (value ?? "").Split(','))
            {
                var pieces = part.Split(';', StringSplitOptions.TrimEntries);
                var type = pieces[0].ToLowerInvariant();
                var q = 1.0;
                foreach (var p in pieces.Skip(1))
                {
                    if (p.StartsWith("q=", StringComparison.OrdinalIgnoreCase) && double.TryParse(p[2..], System.Globalization.CultureInfo.InvariantCulture, out var parsed))
                    {
                        q = parsed;
                    }
                }
                switch (type)
                {
                    case JsonType or "application/vnd.pypi.simple.latest+json": json = Math.Max(json, q); break;
                    case HtmlType or "application/vnd.pypi.simple.latest+html": v1Html = Math.Max(v1Html, q); break;
                    case "text/html": textHtml = Math.Max(textHtml, q); break;
                    case "*/*" or "text/*" or "application/*": any = Math.Max(any, q); break;
                }
            }
        }
        if (json > 0 && json >= v1Html && json >= textHtml)
        {
            return (SimpleFormat.Json, JsonType);
        }
        if (v1Html > 0 && v1Html >= textHtml)
        {
            return (SimpleFormat.Html, HtmlType);
        }
        if (textHtml > 0 || any > 0)
        {
            return (SimpleFormat.Html, "text/html; charset=utf-8");
        }
        return null;
    }
}
