using Hoard.Core.Git;

namespace Hoard.Core.Cluster;

/// <summary>
/// Git mirrors in the cluster: who holds which (holder records under "git:" subjects, announced with the store), and
/// the signature of peer git requests. Git makes several requests per fetch (info/refs, then upload-pack) with one
/// set of headers, so a signature covers the mirror's path prefix, not one request path.
/// </summary>
public sealed partial class ClusterNode : IGitMirrorPeers
{
    private const string GitPath = "/_hoard/peer/git/";

    /// <summary>Names ("upstream\nrepository") of the mirrors this node holds, for announcements; set at start-up.</summary>
    public Func<IEnumerable<(string Upstream, string Repository)>>? HeldMirrors { get; set; }

    private static string MirrorSubject(string upstream, string repository) => "git:" + ClusterRecords.KeyId(upstream + "\n" + repository);

    private static string MirrorPath(string upstream, string repository) => $"{GitPath}{upstream}/{repository}";

    private static string MirrorPurpose(string upstream, string repository) => $"git {upstream}/{repository}";

    public async Task<GitPeer?> FindMirrorAsync(string upstream, string repository)
    {
        var subject = MirrorSubject(upstream, repository);
        var holders = await Redis(db => _records.LiveAsync(db, ClusterRecords.Holders(subject))) ?? [];
        foreach (var node in holders.Where(n => n != Id && IsNodeId(n)))
        {
            var url = (await Redis(db => db.StringGetAsync($"hoard:node:{node}"))).ToString();
            if (string.IsNullOrEmpty(url) || !Uri.TryCreate(url + "/", UriKind.Absolute, out var baseUrl) || baseUrl.Scheme is not ("http" or "https"))
            {
                await ForgetAsync(node, subject);
                continue;
            }
            var path = MirrorPath(upstream, repository);
            var purpose = MirrorPurpose(upstream, repository);
            return new GitPeer(node, new Uri(baseUrl, path.TrimStart('/')),
                [$"{PeerSignature.ForHeader}: {purpose}", $"{PeerSignature.Header}: {_signature.Sign("GIT", path, null, purpose, Id, node)}"]);
        }
        return null;
    }

    public int CheckMirrorRequest(string? signature, string? purpose, string upstream, string repository) =>
        _signature.Verify(signature, "GIT", MirrorPath(upstream, repository), null, purpose ?? "", Id, out _) switch
        {
            PeerSignature.Check.Malformed => 401,
            PeerSignature.Check.Expired or PeerSignature.Check.Forged => 403,
            // Signed, and for this mirror: the signature covers the purpose, which must name this very mirror.
            _ => purpose == MirrorPurpose(upstream, repository) ? 0 : 400,
        };

    public void MirrorHeld(string upstream, string repository, bool held)
    {
        var subject = MirrorSubject(upstream, repository);
        _ = held ? Redis(db => _records.AddHolderAsync(db, subject, Id)) : Redis(db => _records.RemoveHolderAsync(db, subject, Id));
    }

    /// <summary>The mirrors' holder records, renewed with the store's.</summary>
    private List<string> HeldMirrorSubjects() => HeldMirrors?.Invoke().Select(m => MirrorSubject(m.Upstream, m.Repository)).ToList() ?? [];
}
