using System.Text.Json;

namespace Hoard.Core.Warm;

/// <summary>
/// Warms an image as a pull would fetch it: the reference's manifest (by tag, so the tag resolves when upstream is
/// down), every platform's manifest of an index (or those asked for), and each one's config and layers.
/// </summary>
public sealed class ImageWarmer(SelfClient self)
{
    private const int ManifestLimit = 4 * 1024 * 1024;

    private const string ManifestAccept = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
        + "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

    public async Task WarmAsync(string reference, WarmItem item, WarmRequest request, CancellationToken ct)
    {
        if (ImageReference.Parse(reference) is not { } image)
        {
            item.Fail("not an image reference: expected [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST]");
            return;
        }
        var top = await ManifestAsync(image, image.Reference, item, ct);
        if (top is null)
        {
            return;
        }
        using var doc = top;
        var root = doc.RootElement;
        var seen = new HashSet<string>(StringComparer.Ordinal); // platforms share layers: each blob is asked for once
        if (root.TryGetProperty("manifests", out var children) && children.ValueKind == JsonValueKind.Array)
        {
            var chosen = children.EnumerateArray().Where(c => Fits(c, request.ImagePlatforms)).ToList();
            if (chosen.Count == 0)
            {
                item.Fail($"the index has no manifest for {string.Join(", ", request.ImagePlatforms)}");
                return;
            }
            foreach (var child in chosen)
            {
                if (Digest(child) is not { } digest)
                {
                    item.Fail("the index lists a manifest without a sha256 digest");
                    continue;
                }
                using var manifest = await ManifestAsync(image, digest, item, ct);
                if (manifest is not null)
                {
                    await BlobsAsync(image, manifest.RootElement, item, seen, ct);
                }
            }
        }
        else
        {
            await BlobsAsync(image, root, item, seen, ct);
        }
    }

    private async Task<JsonDocument?> ManifestAsync(ImageReference image, string reference, WarmItem item, CancellationToken ct)
    {
        var path = $"/v2/{image.Name}/manifests/{reference}";
        var (answer, body) = await self.GetDocumentAsync(path, ManifestAccept, ManifestLimit, ct);
        item.Count(answer, "manifest " + reference, path, ManifestAccept);
        if (body is null)
        {
            return null;
        }
        if (answer.Outcome != "HIT")
        {
            item.Received(body.Length); // a hit's size is counted with it
        }
        try
        {
            return JsonDocument.Parse(body);
        }
        catch (JsonException e)
        {
            item.Fail($"manifest {reference} is not JSON: {e.Message}");
            return null;
        }
    }

    /// <summary>The config and the layers of one image manifest (a foreign layer with URLs is fetched like any).</summary>
    private async Task BlobsAsync(ImageReference image, JsonElement manifest, WarmItem item, HashSet<string> seen, CancellationToken ct)
    {
        var blobs = new List<(string Digest, long Size)>();
        if (manifest.TryGetProperty("config", out var config) && Digest(config) is { } configDigest)
        {
            blobs.Add((configDigest, Size(config)));
        }
        if (manifest.TryGetProperty("layers", out var layers) && layers.ValueKind == JsonValueKind.Array)
        {
            blobs.AddRange(layers.EnumerateArray().Select(l => (Digest(l), Size(l))).Where(l => l.Item1 is not null).Select(l => (l.Item1!, l.Item2)));
        }
        blobs.RemoveAll(b => !seen.Add(b.Digest));
        if (!item.Plan(blobs.Select(b => ((string?)b.Digest[7..], b.Size))))
        {
            return;
        }
        foreach (var (digest, _) in blobs)
        {
            ct.ThrowIfCancellationRequested();
            var path = $"/v2/{image.Name}/blobs/{digest}";
            item.Count(await self.GetAsync(path, null, item.Received, ct), "blob " + digest, path);
        }
    }

    private static string? Digest(JsonElement descriptor) =>
        descriptor.ValueKind == JsonValueKind.Object && descriptor.TryGetProperty("digest", out var d) && d.ValueKind == JsonValueKind.String
        && d.GetString() is { } s && s.StartsWith("sha256:", StringComparison.Ordinal) && s.Length == 71 && s[7..].All(char.IsAsciiHexDigitLower) ? s : null;

    private static long Size(JsonElement descriptor) =>
        descriptor.TryGetProperty("size", out var s) && s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out var n) && n > 0 ? n : 0;

    /// <summary>Whether an index entry is one of the platforms asked for ("os/arch" or "os/arch/variant"; none: all).</summary>
    private static bool Fits(JsonElement child, IReadOnlyList<string> platforms)
    {
        if (platforms.Count == 0)
        {
            return true;
        }
        if (!child.TryGetProperty("platform", out var p) || p.ValueKind != JsonValueKind.Object)
        {
            return false;
        }
        string Get(string name) => p.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";
        var os = Get("os");
        var arch = Get("architecture");
        var variant = Get("variant");
        return platforms.Any(want =>
        {
            var parts = want.Split('/');
            return parts.Length >= 2 && parts[0] == os && parts[1] == arch && (parts.Length < 3 || parts[2] == variant);
        });
    }
}
