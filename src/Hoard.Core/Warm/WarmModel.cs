using System.Text.Json;
using System.Text.Json.Serialization;

namespace Hoard.Core.Warm;

/// <summary>
/// What `hoard warm` asks a node to fetch (POST /_hoard/warm). The CLI reads the user's files (requirements.txt,
/// pylock.toml, uv.lock, an image list) and sends only what they name; the node resolves it against its upstreams.
/// </summary>
public sealed record WarmRequest
{
    public List<WarmPackage> Packages { get; set; } = [];

    /// <summary>Image references as users write them: registry/repo:tag, repo@sha256:…, Docker Hub short names.</summary>
    public List<string> Images { get; set; } = [];

    /// <summary>Git repositories by their upstream URL (one under a configured --git upstream).</summary>
    public List<string> Git { get; set; } = [];

    /// <summary>Like pip download's --python-version: "3.12" (wheels for other Pythons are skipped). Empty: any.</summary>
    public List<string> PythonVersions { get; set; } = [];

    /// <summary>Like pip download's --platform: "manylinux_2_17_x86_64" ("any" wheels always match). Empty: any.</summary>
    public List<string> Platforms { get; set; } = [];

    /// <summary>Image platforms "os/arch[/variant]"; empty: every platform of an index.</summary>
    public List<string> ImagePlatforms { get; set; } = [];

    /// <summary>
    /// `hoard pin`: each item, once warmed whole, becomes a pin of its name (replacing one of that name): its blobs are
    /// never evicted. An item that failed, or would not fit, is not pinned (the reason is the item's error).
    /// </summary>
    public bool Pin { get; set; }
}

/// <summary>
/// One pinned distribution: project and exact version, from an index (its --pypi name; null: the first). When the
/// lock lists hashes or file names, exactly those files are fetched; otherwise every file of the version that the
/// Python/platform filters accept.
/// </summary>
public sealed record WarmPackage(string Project, string Version)
{
    public string? Index { get; init; }
    public List<string> Sha256 { get; set; } = [];
    public List<string> Files { get; set; } = [];
}

/// <summary>What a warm item is.</summary>
public enum WarmKind
{
    Package,
    Image,
    Git,
}

/// <summary>
/// One line of the NDJSON a warm streams back. <see cref="Type"/>: "item" (an item begins), "progress" (bytes so
/// far, at most a few times a second), "done" (the item ended; <see cref="Error"/> says why it failed), "summary" (last).
/// </summary>
public sealed record WarmEvent(string Type)
{
    public int Id { get; init; }
    public WarmKind? Kind { get; init; }
    public string? Name { get; init; }

    /// <summary>Bytes of this item's artifacts received so far (from upstream, a peer or the store).</summary>
    public long Bytes { get; init; }

    /// <summary>Bytes the item's artifacts add up to, when upstream said (page sizes, manifest descriptors).</summary>
    public long? Total { get; init; }

    /// <summary>Artifacts brought in now (from upstream or a peer).</summary>
    public int Fetched { get; init; }

    /// <summary>Artifacts this node already held.</summary>
    public int Cached { get; init; }

    public int Failed { get; init; }

    /// <summary>Bytes brought in now: what this warm saved the next client.</summary>
    public long FetchedBytes { get; init; }

    public string? Error { get; init; }

    /// <summary>With <see cref="WarmRequest.Pin"/>: the item is now pinned.</summary>
    public bool? Pinned { get; init; }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(WarmRequest))]
[JsonSerializable(typeof(WarmEvent))]
public sealed partial class WarmJson : JsonSerializerContext;
