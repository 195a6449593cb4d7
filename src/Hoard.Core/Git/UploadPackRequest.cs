using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Hoard.Core.Configuration;

namespace Hoard.Core.Git;

/// <summary>Reading git upload-pack request bodies (pkt-lines): the command, the wants, the pack cache key.</summary>
public static class UploadPackRequest
{
    public static bool IsV2(string gitProtocol) => gitProtocol.Split(':').Any(p => p.Trim() == "version=2");

    /// <summary>
    /// The pack cache key: repository, protocol version, the request minus what identifies the session (agent,
    /// session-id), and the mirror's refs. Nothing identifying the user. Null when the response is not cacheable:
    /// want-ref (depends on refs by name), haves, a v0/v1 request without side-band (raw pack, progress not
    /// separable), or refs that moved while being read.
    /// </summary>
    public static string? PackCacheKey(UpstreamSpec spec, string repository, string mirror, IReadOnlyList<string> patterns, string gitProtocol, byte[] body)
    {
        var lines = PktLine.ReadAll(body);
        var v2 = IsV2(gitProtocol);
        // want-ref depends on refs by name. A request with `have` lines is an incremental fetch, whose pack fits
        // only clients at that very state: stored, it would almost never be asked for again. Clones and shallow
        // clones (no haves) are the requests that repeat, twenty CI jobs at a time.
        if (lines.Any(l => l.StartsWith("want-ref ", StringComparison.Ordinal) || l.StartsWith("have ", StringComparison.Ordinal)))
        {
            return null;
        }
        if (v2)
        {
            if (!lines.Contains("command=fetch"))
            {
                return null;
            }
            lines.RemoveAll(l => l.StartsWith("agent=", StringComparison.Ordinal) || l.StartsWith("session-id=", StringComparison.Ordinal));
        }
        else
        {
            var first = lines.FindIndex(l => l.StartsWith("want ", StringComparison.Ordinal));
            if (first < 0 || !lines[first].Contains(" side-band", StringComparison.Ordinal))
            {
                return null;
            }
            lines[first] = string.Join(' ', lines[first].Split(' ').Where(t => !t.StartsWith("agent=", StringComparison.Ordinal) && !t.StartsWith("session-id=", StringComparison.Ordinal)));
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{spec.Name}\n{repository}\n{(v2 ? 2 : 0)}\n{string.Join('\n', lines)}\n"));
        return AppendRefs(hash, mirror, patterns) ? Convert.ToHexStringLower(hash.GetHashAndReset()) : null;
    }

    /// <summary>
    /// The mirror's refs within its patterns (packed and loose): a fetch that moves one gives new keys; a pull request
    /// fetched on demand does not. False when they changed while being read (a fetch or pack-refs at that moment).
    /// </summary>
    internal static bool AppendRefs(IncrementalHash hash, string mirror, IReadOnlyList<string> patterns)
    {
        try
        {
            var packed = Path.Combine(mirror, "packed-refs");
            if (File.Exists(packed))
            {
                var included = false;
                foreach (var line in File.ReadAllLines(packed))
                {
                    // "<id> <name>", then "^<id>" for a tag's peeled value; "#" is the header.
                    included = line.StartsWith('^') ? included : line.Split(' ') is [_, var name] && Covers(patterns, name);
                    if (included)
                    {
                        hash.AppendData(Encoding.UTF8.GetBytes(line + "\n"));
                    }
                }
            }
            var refs = Path.Combine(mirror, "refs");
            foreach (var file in Directory.EnumerateFiles(refs, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                var name = "refs/" + Path.GetRelativePath(refs, file).Replace(Path.DirectorySeparatorChar, '/');
                if (Covers(patterns, name))
                {
                    hash.AppendData(Encoding.UTF8.GetBytes(name + "\n"));
                    hash.AppendData(File.ReadAllBytes(file));
                }
            }
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static bool IsCommand(byte[] body, string command) =>
        body.AsSpan().IndexOf(Encoding.ASCII.GetBytes("command=" + command + "\n")) is >= 4 and < 16;

    /// <summary>What a fetch wants: object ids, refs by name, and whether it wants something in a form Hoard does not fetch by.</summary>
    public sealed record Wants(List<string> Objects, List<string> Refs, bool Unsupported);

    /// <summary>
    /// want &lt;oid&gt; and want-ref &lt;ref&gt; lines from pkt-lines (v0/v1 and v2). Only a plain ref name goes on to a
    /// fetch refspec ("a:refs/heads/main" or "+refs/*" would be a client writing the mirror's refs), and only a SHA-1
    /// id to the mirror; anything else marks the request Unsupported, to be passed through to upstream as it is.
    /// </summary>
    public static Wants ParseWants(byte[] body)
    {
        var objects = new List<string>();
        var refs = new List<string>();
        var unsupported = false;
        foreach (var line in PktLine.ReadAll(body))
        {
            if (line.StartsWith("want-ref ", StringComparison.Ordinal))
            {
                var name = line[9..].Trim();
                // A clone with ref-in-want asks for HEAD by name too; the mirror's HEAD names a branch it holds.
                if (IsRefName(name) || name == "HEAD")
                {
                    refs.Add(name);
                }
                else
                {
                    unsupported = true;
                }
            }
            else if (line.StartsWith("want ", StringComparison.Ordinal))
            {
                var id = line.Length >= 45 ? line.AsSpan(5, 40) : default;
                if (id.Length == 40 && IsObjectId(id) && (line.Length == 45 || line[45] is ' ' or '\n'))
                {
                    objects.Add(id.ToString());
                }
                else
                {
                    unsupported = true;
                }
            }
        }
        return new(objects, refs, unsupported);
    }

    private static readonly System.Buffers.SearchValues<char> HexDigits = System.Buffers.SearchValues.Create("0123456789abcdef");

    private static bool IsObjectId(ReadOnlySpan<char> id) => !id.ContainsAnyExcept(HexDigits);

    /// <summary>A ref name safe to fetch by name: refs/..., no refspec syntax, no `..`, not Hoard's own refs.</summary>
    public static bool IsRefName(string name) =>
        name.Length is > 5 and <= 1024 && name.StartsWith("refs/", StringComparison.Ordinal) && !name.StartsWith("refs/hoard/", StringComparison.Ordinal)
        && !name.Contains("..", StringComparison.Ordinal) && !name.Contains("//", StringComparison.Ordinal) && !name.Contains("@{", StringComparison.Ordinal)
        && !name.EndsWith('/') && !name.EndsWith(".lock", StringComparison.Ordinal) && !name.Contains("/.", StringComparison.Ordinal)
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/' or '+' or '=' or ',');

    /// <summary>Whether a ref matches one of a mirror's patterns (`refs/heads/*`; a pattern without * is exact).</summary>
    public static bool Covers(IReadOnlyList<string> patterns, string refName) => patterns.Any(p =>
        p.IndexOf('*') is var star and >= 0
            ? refName.Length > p.Length - 1 && refName.StartsWith(p[..star], StringComparison.Ordinal) && refName.EndsWith(p[(star + 1)..], StringComparison.Ordinal)
            : refName == p);
}
