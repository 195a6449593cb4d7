using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Hoard.Tests.Infrastructure;

/// <summary>An image pushed to a test registry: its top digest (manifest or index) and every blob digest it has.</summary>
public sealed record PushedImage(string Repository, string Tag, string Digest, IReadOnlyList<string> Blobs, IReadOnlyList<string> Manifests);

/// <summary>
/// Builds OCI image layouts with random layers, as skopeo reads them (oci:DIR:TAG): one single-platform image,
/// or a multi-platform index whose two manifests share a layer. skopeo pushes them with their digests preserved.
/// </summary>
public sealed class OciImages(string root)
{
    private readonly string _blobs = Directory.CreateDirectory(Path.Combine(root, "blobs", "sha256")).FullName;
    private readonly List<string> _blobDigests = [];
    private readonly List<string> _manifestDigests = [];

    /// <summary>The size of a blob of this layout, by digest.</summary>
    public long BlobSize(string digest) => new FileInfo(Path.Combine(_blobs, digest["sha256:".Length..])).Length;

    private (string Digest, long Size) Blob(byte[] bytes)
    {
        var hex = Convert.ToHexStringLower(SHA256.HashData(bytes));
        File.WriteAllBytes(Path.Combine(_blobs, hex), bytes);
        return ("sha256:" + hex, bytes.Length);
    }

    /// <summary>A gzipped tar layer with one random file; returns the blob and the uncompressed diff id.</summary>
    private (string Digest, long Size, string DiffId) Layer(int bytes)
    {
        var data = new byte[bytes];
        Random.Shared.NextBytes(data);
        using var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, $"data-{Guid.NewGuid():N}.bin") { DataStream = new MemoryStream(data) });
        }
        var diffId = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(tar.ToArray()));
        using var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(tar.ToArray());
        }
        var (digest, size) = Blob(gz.ToArray());
        _blobDigests.Add(digest);
        return (digest, size, diffId);
    }

    private (string Digest, long Size) Manifest(string arch, IEnumerable<(string Digest, long Size, string DiffId)> layers)
    {
        var list = layers.ToList();
        var config = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["architecture"] = arch,
            ["os"] = "linux",
            ["rootfs"] = new { type = "layers", diff_ids = list.Select(l => l.DiffId).ToArray() },
            ["config"] = new { },
        });
        var (configDigest, configSize) = Blob(config);
        _blobDigests.Add(configDigest);
        var manifest = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object>
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
            ["config"] = new { mediaType = "application/vnd.oci.image.config.v1+json", digest = configDigest, size = configSize },
            ["layers"] = list.Select(l => new { mediaType = "application/vnd.oci.image.layer.v1.tar+gzip", digest = l.Digest, size = l.Size }).ToArray(),
        });
        var m = Blob(manifest);
        _manifestDigests.Add(m.Digest);
        return m;
    }

    private void WriteLayout(string mediaType, (string Digest, long Size) top, string tag)
    {
        File.WriteAllText(Path.Combine(Root, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        var index = new
        {
            schemaVersion = 2,
            manifests = new[] { new Dictionary<string, object> { ["mediaType"] = mediaType, ["digest"] = top.Digest, ["size"] = top.Size, ["annotations"] = new Dictionary<string, string> { ["org.opencontainers.image.ref.name"] = tag } } },
        };
        File.WriteAllText(Path.Combine(Root, "index.json"), JsonSerializer.Serialize(index));
    }

    public PushedImage SinglePlatform(string repository, string tag, int layerBytes = 200_000, int layers = 2)
    {
        var built = Enumerable.Range(0, layers).Select(_ => Layer(layerBytes)).ToList();
        var manifest = Manifest("amd64", built);
        WriteLayout("application/vnd.oci.image.manifest.v1+json", manifest, tag);
        return new PushedImage(repository, tag, manifest.Digest, [.. _blobDigests], [.. _manifestDigests]);
    }

    public PushedImage MultiPlatform(string repository, string tag, int layerBytes = 150_000)
    {
        var shared = Layer(layerBytes);
        var amd = Manifest("amd64", [shared, Layer(layerBytes)]);
        var arm = Manifest("arm64", [shared, Layer(layerBytes)]);
        var index = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
        {
            schemaVersion = 2,
            mediaType = "application/vnd.oci.image.index.v1+json",
            manifests = new object[]
            {
                new { mediaType = "application/vnd.oci.image.manifest.v1+json", digest = amd.Digest, size = amd.Size, platform = new { architecture = "amd64", os = "linux" } },
                new { mediaType = "application/vnd.oci.image.manifest.v1+json", digest = arm.Digest, size = arm.Size, platform = new { architecture = "arm64", os = "linux" } },
            },
        }));
        var top = Blob(index);
        _manifestDigests.Add(top.Digest);
        WriteLayout("application/vnd.oci.image.index.v1+json", top, tag);
        return new PushedImage(repository, tag, top.Digest, [.. _blobDigests], [.. _manifestDigests]);
    }

    public string Root { get; } = root;
}

/// <summary>The real skopeo, over plain HTTP to loopback.</summary>
public static class Skopeo
{
    public static async Task PushAsync(OciImages layout, PushedImage image, Registry registry, string? creds = null)
    {
        List<string> args = ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false"];
        if (creds is not null)
        {
            args.AddRange(["--dest-creds", creds]);
        }
        args.AddRange([$"oci:{layout.Root}:{image.Tag}", $"docker://{registry.Host}/{image.Repository}:{image.Tag}"]);
        var (code, output) = await Pip.RunAsync("skopeo", args);
        Assert.True(code == 0, output);
    }

    /// <summary>Copies an image reference into a dir: layout; returns the exit code and output.</summary>
    public static Task<(int Code, string Output)> PullAsync(string reference, string dest, string? creds = null, bool all = false)
    {
        List<string> args = ["copy", "--src-tls-verify=false", "--retry-times", "0"];
        if (all)
        {
            args.Add("--all");
        }
        if (creds is not null)
        {
            args.AddRange(["--src-creds", creds]);
        }
        args.AddRange([$"docker://{reference}", $"dir:{dest}"]);
        return Pip.RunAsync("skopeo", args);
    }

    /// <summary>Every file skopeo wrote for a blob is named by its sha256 and hashes to it; returns the digests seen.</summary>
    public static HashSet<string> VerifyDir(string dir)
    {
        var seen = new HashSet<string>();
        foreach (var file in Directory.GetFiles(dir))
        {
            var name = Path.GetFileName(file);
            if (name.Length == 64)
            {
                Assert.Equal(name, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file))));
                seen.Add("sha256:" + name);
            }
        }
        return seen;
    }
}
