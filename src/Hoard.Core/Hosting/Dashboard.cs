using System.Net;
using System.Text;
using Hoard.Core.Configuration;
using Hoard.Core.Fetch;
using Microsoft.AspNetCore.Http;

namespace Hoard.Core.Hosting;

/// <summary>The small page at /: what is configured, how full the store is, how the cache is doing.</summary>
public static class Dashboard
{
    public static string Render(HttpContext ctx, HoardOptions options, FetchEngine engine)
    {
        var baseUrl = $"{ctx.Request.Scheme}://{ctx.Request.Host}{ctx.Request.PathBase}";
        var stats = engine.Stats;
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Hoard</title>")
          .Append("<meta name=\"viewport\" content=\"width=device-width\"><style>").Append(Style).Append("</style></head><body>")
          .Append("<h1>Hoard</h1><p>A caching mirror. Every protocol on this one port. <span id=\"version\" class=\"muted\"></span></p>")
          .Append(Live);
        sb.Append("<h2>Store</h2><table>")
          .Append($"<tr><th>data</th><td><code>{E(options.DataDir)}</code></td></tr>")
          .Append($"<tr><th>size</th><td>{ValueParsers.FormatSize(stats.Bytes)} of {ValueParsers.FormatSize(options.MaxSizeBytes)}</td></tr>")
          .Append($"<tr><th>blobs / keys</th><td>{stats.Blobs} / {stats.Keys}</td></tr>")
          .Append("</table>");
        sb.Append("<h2>PyPI</h2><table>");
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
        sb.Append("<p><a href=\"metrics\">metrics</a> · <a href=\"healthz\">healthz</a> · <a href=\"_hoard/status\">status (JSON)</a></p>")
          .Append("<script>").Append(Script).Append("</script></body></html>");
        return sb.ToString();
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);

    private const string Style = """
        body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}td,th{padding:.2em 1em;text-align:left}
        code{background:#eee;padding:.1em .3em}.muted{color:#777}.cards{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}
        .card{border:1px solid #ddd;border-radius:6px;padding:.8em 1.2em;min-width:11em}.card b{display:block;font-size:1.8em}
        .bar{background:#eee;height:.6em;border-radius:3px;width:12em}.bar i{display:block;height:100%;background:#3a7;border-radius:3px}
        .bad{color:#b22}td.n{text-align:right;font-variant-numeric:tabular-nums}
        """;

    /// <summary>The live part: filled from /_hoard/status every 5 seconds by the script below (text only, never markup).</summary>
    private const string Live = """
        <div class="cards">
          <div class="card">hit ratio (requests)<b id="hit-ratio">…</b></div>
          <div class="card">hit ratio (bytes)<b id="byte-hit-ratio">…</b></div>
          <div class="card">bytes saved<b id="saved">…</b><span id="saved-hour" class="muted"></span></div>
          <div class="card">store<b id="fill">…</b><div class="bar"><i id="fill-bar" style="width:0"></i></div><span id="store" class="muted"></span></div>
          <div class="card">downloads in flight<b id="in-flight">…</b></div>
          <div class="card">cluster nodes<b id="cluster">…</b><span id="peers" class="muted"></span></div>
        </div>
        <h2>Cluster</h2><p id="cluster-note" class="muted"></p>
        <table id="nodes" hidden><tr><th>node</th><th>address</th><th>state</th><th>heartbeat</th><th>store</th><th>served to it</th><th>fetched from it</th></tr></table>
        <h2>Downloads in flight</h2><table id="downloads"><tr><th>artifact</th><th>progress</th><th>rate</th><th>clients</th><th>from</th></tr></table>
        <h2>Requests</h2><table id="requests"></table>
        <h2>Upstreams</h2><table id="upstreams"><tr><th>upstream</th><th>protocol</th><th>requests</th><th>failed</th><th>downloaded</th></tr></table>
        <h2>Most requested, largest and most recently used</h2><p id="artifacts-note" class="muted"></p>
        <table id="requested"><tr><th>most requested</th><th>requests</th><th>size</th><th>last used</th></tr></table>
        <table id="largest"><tr><th>largest artifacts</th><th>size</th><th>last used</th></tr></table>
        <table id="recent"><tr><th>recently used</th><th>size</th><th>last used</th></tr></table>
        <h2>Pinned</h2><p id="pins-note" class="muted"></p>
        <table id="pins"><tr><th>pin</th><th>kind</th><th>size</th><th>blobs</th><th>missing</th></tr></table>
        <h2>Recent problems</h2><table id="problems"><tr><th>when</th><th>what</th></tr></table>
        """;

    /// <summary>
    /// Polls the status and writes it with textContent only, so nothing an upstream or client named (a key, an upstream
    /// error) can become markup. The admin token, if given as #token=..., stays in the page (a fragment is never sent).
    /// </summary>
    private const string Script = """
        const token = new URLSearchParams(location.hash.slice(1)).get('token');
        const $ = id => document.getElementById(id);
        const size = b => { const u = ['B','KiB','MiB','GiB','TiB']; let i = 0; while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; } return (i ? b.toFixed(1) : b) + ' ' + u[i]; };
        const pct = r => r == null ? '—' : (r * 100).toFixed(1) + '%';
        const ago = ms => { const s = Math.max(0, (Date.now() - ms) / 1000); return s < 90 ? Math.round(s) + ' s ago' : s < 5400 ? Math.round(s / 60) + ' min ago' : Math.round(s / 3600) + ' h ago'; };
        const history = [];
        function rows(table, items, cells) {
          while (table.rows.length > 1) table.deleteRow(1);
          for (const item of items) { const tr = table.insertRow(); for (const c of cells(item)) { const td = tr.insertCell(); td.textContent = c; } }
        }
        async function refresh() {
          let s;
          try {
            const r = await fetch('_hoard/status?artifacts=1', { headers: token ? { Authorization: 'Bearer ' + token } : {}, cache: 'no-store' });
            s = await r.json();
          } catch (e) { $('version').textContent = 'status unavailable: ' + e; return; }
          const up = s.uptimeSeconds;
          $('version').textContent = 'hoard ' + s.version + (s.commit ? ' (' + s.commit.slice(0, 12) + ')' : '') + ', up ' + Math.floor(up / 86400) + 'd ' + Math.floor(up % 86400 / 3600) + 'h ' + Math.floor(up % 3600 / 60) + 'm';
          $('hit-ratio').textContent = pct(s.hitRatio);
          $('byte-hit-ratio').textContent = pct(s.byteHitRatio);
          $('saved').textContent = size(s.bytes.saved);
          history.push([Date.now(), s.bytes.saved]); while (history.length > 720) history.shift();
          const old = history.find(h => Date.now() - h[0] <= 3600e3);
          $('saved-hour').textContent = old ? size(s.bytes.saved - old[1]) + ' in the last hour seen' : '';
          const fill = s.store.maxBytes ? s.store.bytes / s.store.maxBytes : 0;
          $('fill').textContent = pct(fill);
          $('fill-bar').style.width = Math.min(100, fill * 100) + '%';
          $('store').textContent = size(s.store.bytes) + ' of ' + size(s.store.maxBytes) + ', ' + s.store.blobs + ' blobs';
          $('in-flight').textContent = s.downloadsInFlight;
          $('cluster').textContent = s.clusterNodes == null ? 'alone' : s.clusterNodes;
          $('peers').textContent = 'from peers ' + size(s.bytes.servedFromPeers);
          const c = s.cluster;
          $('nodes').hidden = !c;
          $('cluster-note').textContent = !c ? 'Single node: not in a cluster.'
            : (c.redisReachable ? '' : 'Redis cannot be reached: the nodes last seen, their state unknown. ') + 'Traffic is this node\'s with each peer since it started.';
          rows($('nodes'), c ? c.nodes : [], n => [n.id.slice(0, 8) + (n.self ? ' (this node)' : ''), n.url || '—', n.state,
            n.heartbeatAgeSeconds == null ? '—' : ago(Date.now() - n.heartbeatAgeSeconds * 1000),
            n.storeBytes == null ? '—' : size(n.storeBytes) + ', ' + n.storeBlobs + ' blobs',
            n.self ? '—' : size(n.servedToBytes), n.self ? '—' : size(n.fetchedFromBytes)]);
          for (const tr of [...$('nodes').rows].slice(1)) if (tr.cells[2].textContent !== 'alive') tr.cells[2].className = 'bad';
          rows($('downloads'), s.downloads, d => [d.key, size(d.bytes) + (d.length ? ' of ' + size(d.length) + ' (' + pct(d.bytes / d.length) + ')' : ''),
            size(d.seconds > 0 ? d.bytes / d.seconds : 0) + '/s', d.clients, d.fromPeer ? 'a peer' : d.upstream]);
          const outcomes = [...new Set(Object.values(s.requests).flatMap(o => Object.keys(o)))];
          const req = $('requests'); while (req.rows.length) req.deleteRow(0);
          const head = req.insertRow(); for (const h of ['protocol', ...outcomes]) { const th = document.createElement('th'); th.textContent = h; head.appendChild(th); }
          for (const [p, o] of Object.entries(s.requests)) { const tr = req.insertRow(); tr.insertCell().textContent = p; for (const k of outcomes) { const td = tr.insertCell(); td.className = 'n'; td.textContent = o[k] || 0; } }
          rows($('upstreams'), s.upstreams, u => [u.name, u.protocol, u.requests, u.failed, size(u.bytes)]);
          $('artifacts-note').textContent = s.artifacts ? '' : 'Artifact names are shown with the admin token: open this page as /#token=<the token in --admin-token-file>.';
          rows($('requested'), s.artifacts ? s.artifacts.mostRequested : [], a => [a.key, a.requests, a.size == null ? 'not stored' : size(a.size), ago(a.lastUsedMs)]);
          rows($('largest'), s.artifacts ? s.artifacts.largest : [], a => [a.key, size(a.size), ago(a.lastUsedMs)]);
          rows($('recent'), s.artifacts ? s.artifacts.recentlyUsed : [], a => [a.key, size(a.size), ago(a.lastUsedMs)]);
          $('pins-note').textContent = `${s.pins.count} pin(s) keeping ${size(s.pins.bytes)} of at most ${size(s.pins.maxBytes)} (never evicted; hoard pin / hoard unpin)`;
          rows($('pins'), s.pins.pins || [], p => [p.name, p.kind, size(p.bytes), p.blobs, p.missing]);
          rows($('problems'), s.problems, p => [new Date(p.at).toLocaleTimeString(), p.what]);
        }
        refresh(); setInterval(refresh, 5000);
        """;
}
