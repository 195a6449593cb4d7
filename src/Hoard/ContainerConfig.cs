using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hoard.Core.Configuration;

namespace Hoard;

/// <summary>
/// Client configuration for the registry mirror: docker's daemon.json, containerd's hosts.toml per registry,
/// and a registries.conf drop-in for podman, CRI-O, skopeo and buildah.
/// </summary>
public static class ContainerConfig
{
    /// <summary>daemon.json: registry-mirrors (Docker Hub only, by docker's design) and, for plain HTTP, insecure-registries.</summary>
    public static string DockerDaemonJson(Uri hoard, string? existing)
    {
        var root = (existing is null ? null : JsonNode.Parse(existing) as JsonObject) ?? [];
        var mirror = hoard.GetLeftPart(UriPartial.Authority);
        Add(root, "registry-mirrors", mirror);
        if (hoard.Scheme == "http")
        {
            Add(root, "insecure-registries", hoard.Authority);
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    private static void Add(JsonObject root, string key, string value)
    {
        if (root[key] is not JsonArray array)
        {
            array = [];
            root[key] = array;
        }
        if (!array.Any(v => v?.GetValue<string>() == value))
        {
            array.Add(value);
        }
    }

    /// <summary>containerd: one hosts.toml per registry; Hoard first, the real registry as fallback; containerd adds ?ns=.</summary>
    public static IEnumerable<(string Registry, string Content)> ContainerdHosts(Uri hoard, IEnumerable<UpstreamSpec> registries)
    {
        foreach (var r in registries)
        {
            var server = Hoard.Core.Upstream.UrlCredentials.WithoutUserInfo(r.Url).GetLeftPart(UriPartial.Authority);
            var sb = new StringBuilder();
            sb.Append($"# {r.Name}: pull through Hoard, fall back to the registry itself if Hoard is down\n");
            sb.Append($"server = \"{server}\"\n\n");
            sb.Append($"[host.\"{hoard.GetLeftPart(UriPartial.Authority)}\"]\n");
            sb.Append("  capabilities = [\"pull\", \"resolve\"]\n");
            sb.Append("  dial_timeout = \"500ms\"\n");
            yield return (r.Name, sb.ToString());
        }
    }

    /// <summary>
    /// containers-registries.conf(5): a mirror per registry, namespaced by path on Hoard. The registry itself stays the
    /// location, so clients fall back to it when Hoard is down; `insecure = true` lets them speak plain HTTP to
    /// whichever of the two is http:// (without it they insist on TLS, and that fallback fails).
    /// </summary>
    public static string RegistriesConf(Uri hoard, IEnumerable<UpstreamSpec> registries)
    {
        var sb = new StringBuilder("# Hoard mirrors for podman, CRI-O, skopeo and buildah (/etc/containers/registries.conf.d/hoard.conf)\n");
        foreach (var r in registries)
        {
            // Docker Hub's API host is not the name in image references: clients know docker.io, not Hoard's default URL.
            var location = r.Name == HoardOptions.DockerHub && r.Url.Authority == new Uri(HoardOptions.DockerHubUrl).Authority ? HoardOptions.DockerHub : r.Url.Authority;
            sb.Append($"\n[[registry]]\nprefix = \"{r.Name}\"\nlocation = \"{location}\"\n");
            AppendInsecure(sb, r.Url);
            sb.Append($"\n[[registry.mirror]]\nlocation = \"{hoard.Authority}/{r.Name}\"\n");
            AppendInsecure(sb, hoard);
        }
        return sb.ToString();
    }

    private static void AppendInsecure(StringBuilder sb, Uri url)
    {
        if (url.Scheme == Uri.UriSchemeHttp)
        {
            sb.Append("insecure = true\n");
        }
    }
}
