namespace Hoard.Core.Fetch;

/// <summary>The fetch engine's view of the other nodes of a cluster.</summary>
public interface IClusterPeers
{
    /// <summary>
    /// A response streaming the artifact from a node that holds it or is fetching it, or null: then this node goes
    /// upstream itself (holding the cluster-wide lock for the digest, or for the key when the digest is unknown
    /// (<see cref="ArtifactRequest.SharedByKey"/>), if it could take it). The request says what the peers may give it
    /// (<see cref="ArtifactRequest.Access"/>): a peer never hands private bytes to a node that has not checked its
    /// client against upstream, and a request known only by its key is given that key's content (or public blobs).
    /// </summary>
    Task<PeerStream?> TryPeersAsync(ArtifactRequest request, CancellationToken ct);

    /// <summary>
    /// After a peer's body broke off at <paramref name="offset"/>: a 206 response with the rest from another node
    /// that holds or is fetching it, or null (then the rest comes from upstream with Range). <paramref name="digest"/>:
    /// what the body must hash to, if known.
    /// </summary>
    Task<PeerStream?> ResumeAsync(ArtifactRequest request, string? digest, long offset, Uri? failed, CancellationToken ct);

    /// <summary>
    /// The download ended: release the lock, announce the blob if it was committed as <paramref name="digest"/> (and,
    /// for a request known by its key, which digest that key turned out to be).
    /// </summary>
    void Finished(ArtifactRequest request, string? digest, bool committed);

    /// <summary>The blob left this node's store.</summary>
    void Evicted(string digest);
}

/// <summary>
/// A peer's answer: the response, and the digest the body must hash to when the cluster knows it (always for a
/// digest's blob; for a key, once a node committed it and published which digest it was). Null while a key's first
/// download is still running: then the body is what that node is streaming from upstream.
/// </summary>
public sealed record PeerStream(HttpResponseMessage Response, string? Digest);
