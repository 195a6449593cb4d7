namespace Hoard.Core.Fetch;

/// <summary>The fetch engine's view of the other nodes of a cluster.</summary>
public interface IClusterPeers
{
    /// <summary>
    /// A response streaming the blob from a node that holds it or is fetching it, or null: then this node goes
    /// upstream itself (holding the cluster-wide lock for the digest if it could take it). The request says what the peers may give it (<see cref="ArtifactRequest.Access"/>): a peer never hands private
    /// bytes to a node that has not checked its client against upstream.
    /// </summary>
    Task<HttpResponseMessage?> TryPeersAsync(ArtifactRequest request, CancellationToken ct);

    /// <summary>
    /// After a peer's body broke off at <paramref name="offset"/>: a 206 response with the rest from another node
    /// that holds or is fetching the blob, or null (then the rest comes from upstream with Range).
    /// </summary>
    Task<HttpResponseMessage?> ResumeAsync(ArtifactRequest request, long offset, Uri? failed, CancellationToken ct);

    /// <summary>The download for a digest ended: release the lock, announce the blob if it was committed.</summary>
    void Finished(ArtifactRequest request, bool committed);

    /// <summary>The blob left this node's store.</summary>
    void Evicted(string digest);
}
