using System.Text.RegularExpressions;
using Hoard.Core.Configuration;

namespace Hoard.Core.Oci;

public enum OciKind
{
    Manifest,
    Blob,
    TagsList,
}

/// <summary>A parsed /v2/ request: which registry, repository and object.</summary>
public sealed record OciTarget(UpstreamSpec Registry, string Repository, OciKind Kind, string Reference)
{
    public bool IsDigest => Reference.StartsWith("sha256:", StringComparison.Ordinal);
    public string DigestHex => Reference["sha256:".Length..];
}

/// <summary>
/// Parses the three mirror dialects at once: containerd's ?ns=HOST, the path prefix /v2/HOST/NAME/… (podman,
/// CRI-O, skopeo), and neither (docker's registry-mirrors: the default registry, with library/ for Docker Hub).
/// Only configured registries come out of here; anything else is an error, before any outbound request.
/// </summary>
public static partial class OciRoute
{
    [GeneratedRegex(@"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex("^sha256:[a-f0-9]{64}$")]
    private static partial Regex DigestPattern();

    /// <summary>Returns the target, or an OCI error (code, status, message).</summary>
    public static (OciTarget? Target, OciError? Error) Parse(string rest, string? ns, HoardOptions options)
    {
        OciKind kind;
        string name, reference;
        if (rest.EndsWith("/tags/list", StringComparison.Ordinal))
        {
            kind = OciKind.TagsList;
            name = rest[..^"/tags/list".Length];
            reference = "";
        }
        else if (LastSplit(rest, "/manifests/") is { } m)
        {
            (kind, name, reference) = (OciKind.Manifest, m.Name, m.Reference);
        }
        else if (LastSplit(rest, "/blobs/") is { } b)
        {
            if (b.Reference.StartsWith("uploads", StringComparison.Ordinal))
            {
                return (null, new OciError("UNSUPPORTED", 405, "Hoard is a pull-through mirror: push to the registry itself"));
            }
            (kind, name, reference) = (OciKind.Blob, b.Name, b.Reference);
        }
        else
        {
            return (null, new OciError("UNSUPPORTED", 404, "not a registry API path: expected /v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest> or /v2/<name>/tags/list"));
        }

        UpstreamSpec? registry;
        if (!string.IsNullOrEmpty(ns))
        {
            registry = Find(options, ns);
            if (registry is null)
            {
                return (null, new OciError("NAME_UNKNOWN", 404, $"registry '{ns}' is not configured in this Hoard (configured: {Configured(options)})"));
            }
        }
        else
        {
            var slash = name.IndexOf('/', StringComparison.Ordinal);
            var first = slash < 0 ? "" : name[..slash];
            registry = first.Length > 0 ? Find(options, first) : null;
            if (registry is not null)
            {
                name = name[(slash + 1)..];
            }
            else if (first.Contains('.', StringComparison.Ordinal) || first.Contains(':', StringComparison.Ordinal) || first == "localhost")
            {
                return (null, new OciError("NAME_UNKNOWN", 404, $"registry '{first}' is not configured in this Hoard (configured: {Configured(options)})"));
            }
            else
            {
                registry = options.Registries.First(r => r.Name == options.DefaultRegistry);
            }
        }
        if (registry.Name == HoardOptions.DockerHub && !name.Contains('/', StringComparison.Ordinal))
        {
            name = "library/" + name;
        }
        if (name.Length > 255 || !NamePattern().IsMatch(name))
        {
            return (null, new OciError("NAME_INVALID", 400, $"invalid repository name '{Truncate(name)}'"));
        }
        if (kind == OciKind.Blob && !DigestPattern().IsMatch(reference))
        {
            return (null, new OciError("DIGEST_INVALID", 400, $"invalid digest '{Truncate(reference)}': expected sha256:<64 hex digits>"));
        }
        if (kind == OciKind.Manifest && !DigestPattern().IsMatch(reference) && !TagPattern().IsMatch(reference))
        {
            return reference.Contains(':', StringComparison.Ordinal)
                ? (null, new OciError("DIGEST_INVALID", 400, $"invalid digest '{Truncate(reference)}': expected sha256:<64 hex digits>"))
                : (null, new OciError("MANIFEST_INVALID", 400, $"invalid tag '{Truncate(reference)}'"));
        }
        return (new OciTarget(registry, name, kind, reference), null);
    }

    /// <summary>A registry by NAME, or by its URL's host[:port].</summary>
    public static UpstreamSpec? Find(HoardOptions options, string nameOrHost)
    {
        var key = nameOrHost.ToLowerInvariant();
        return options.Registries.FirstOrDefault(r => r.Name == key)
            ?? options.Registries.FirstOrDefault(r => r.Url.Authority.Equals(key, StringComparison.OrdinalIgnoreCase) || (key == "registry-1.docker.io" && r.Name == HoardOptions.DockerHub));
    }

    private static string Configured(HoardOptions options) => string.Join(", ", options.Registries.Select(r => r.Name));

    private static (string Name, string Reference)? LastSplit(string rest, string marker)
    {
        var at = rest.LastIndexOf(marker, StringComparison.Ordinal);
        return at <= 0 ? null : (rest[..at], rest[(at + marker.Length)..]);
    }

    private static string Truncate(string s) => s.Length > 80 ? s[..80] + "…" : s;
}

/// <summary>An error in the distribution spec's shape.</summary>
public sealed record OciError(string Code, int Status, string Message);
