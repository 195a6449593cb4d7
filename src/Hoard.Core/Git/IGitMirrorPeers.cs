namespace Hoard.Core.Git;

/// <summary>A cluster node holding a mirror: the URL of its mirror (git smart HTTP) and the header lines that sign requests to it.</summary>
public sealed record GitPeer(string Node, Uri Url, IReadOnlyList<string> Headers);

/// <summary>
/// Git mirrors shared between cluster nodes: a node making a mirror another node holds fetches from that node's
/// mirror first (git over the signed peer endpoint), then catches up with upstream.
/// </summary>
public interface IGitMirrorPeers
{
    /// <summary>Another live node that holds this repository's mirror, or null.</summary>
    Task<GitPeer?> FindMirrorAsync(string upstream, string repository);

    /// <summary>0 when a peer request for this mirror is signed by a cluster node for it; else the status to answer (401, 403).</summary>
    int CheckMirrorRequest(string? signature, string? purpose, string upstream, string repository);

    /// <summary>Records that this node now holds (or no longer holds) the mirror.</summary>
    void MirrorHeld(string upstream, string repository, bool held);
}
