using System.Net;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Hoard.Core.Metrics;
using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Hosting;

/// <summary>The small page at /: what is configured, how full the store is, how the cache is doing.</summary>
public static class Dashboard
{
    public static string Render(HttpContext ctx, HoardOptions options, FetchEngine engine, HoardMetrics metrics)
    {
        var baseUrl = $"{ctx.Request.Scheme}://{ctx.Request.Host}{ctx.Request.PathBase}";
        var stats = engine.Stats;
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Hoard</title>")
          .Append("<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}td,th{padding:.2em 1em;text-align:left}code{background:#eee;padding:.1em .3em}</style></head><body>")
          .Append("<h1>Hoard</h1><p>A caching mirror. Every protocol on this one port.</p>");
        sb.Append("<h2>Store</h2><table>")
          .Append($"<tr><th>data</th><td><code>{E(options.DataDir)}</code></td></tr>")
          .Append($"<tr><th>size</th><td>{ValueParsers.FormatSize(stats.Bytes)} of {ValueParsers.FormatSize(options.MaxSizeBytes)}</td></tr>")
          .Append($"<tr><th>blobs / keys</th><td>{stats.Blobs} / {stats.Keys}</td></tr>")
          .Append($"<tr><th>downloads in flight</th><td>{engine.InFlight}</td></tr></table>");
        sb.Append("<h2>Requests</h2><table><tr><th>protocol</th>");
        var outcomes = Enum.GetValues<CacheOutcome>().Skip(1).ToArray();
        foreach (var o in outcomes)
        {
            sb.Append($"<th>{o.ToString().ToLowerInvariant()}</th>");
        }
        sb.Append("</tr>");
        foreach (var p in HoardMetrics.Protocols)
        {
            sb.Append($"<tr><td>{p}</td>");
            foreach (var o in outcomes)
            {
                sb.Append($"<td>{metrics.GetRequests(p, o)}</td>");
            }
            sb.Append("</tr>");
        }
        sb.Append("</table><h2>PyPI</h2><table>");
        foreach (var p in options.Pypi)
        {
            var path = p == options.DefaultPypiIndex ? "/simple/" : $"/pypi/{p.Name}/simple/";
            sb.Append($"<tr><td>{E(p.Name)}</td><td><code>pip install -i {E(baseUrl + path)} PACKAGE</code></td><td>upstream {E(Upstream.UpstreamClient.Redact(p.Url))}</td></tr>");
        }
        sb.Append("</table>");
        if (options.Files.Count > 0)
        {
            sb.Append("<h2>Files</h2><table>");
            foreach (var f in options.Files)
            {
                sb.Append($"<tr><td><code>{E(baseUrl)}/files/{E(f.Name)}/…</code></td><td>{E(Upstream.UpstreamClient.Redact(f.Url))}</td></tr>");
            }
            sb.Append("</table>");
        }
        sb.Append("<h2>Container registries</h2><table>");
        foreach (var r in options.Registries)
        {
            sb.Append($"<tr><td>{E(r.Name)}</td><td><code>{E(ctx.Request.Host.ToString())}/{E(r.Name)}/IMAGE</code></td><td>upstream {E(Upstream.UpstreamClient.Redact(r.Url))}{(r.Name == options.DefaultRegistry ? " (default)" : "")}</td></tr>");
        }
        sb.Append("</table>");
        if (options.Git.Count > 0)
        {
            sb.Append("<h2>Git</h2><table>");
            foreach (var g in options.Git)
            {
                sb.Append($"<tr><td><code>git config --global url.{E(baseUrl)}/git/{E(g.Name)}/.insteadOf {E(Upstream.UpstreamClient.Redact(g.Url))}</code></td></tr>");
            }
            sb.Append("</table>");
        }
        sb.Append("<p><a href=\"metrics\">metrics</a> · <a href=\"healthz\">healthz</a></p></body></html>");
        return sb.ToString();
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);
}
