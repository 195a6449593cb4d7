namespace Hoard.Core.Storage;

/// <summary>
/// Disk space beside the blob store that counts toward --max-size (git mirrors): made of units evicted whole,
/// least recently used first, in one order with blobs.
/// </summary>
public interface IEvictableSpace
{
    /// <summary>The bytes all units take on disk.</summary>
    long Bytes { get; }

    /// <summary>The least recently used unit that nothing is using now (unix ms of its last use), or null.</summary>
    (string Id, long LastUsedMs)? LeastRecentlyUsed();

    /// <summary>Removes the unit unless something started using it; false then.</summary>
    bool TryEvict(string id);

    /// <summary>The units pins keep (a pinned repository's mirror): never offered by <see cref="LeastRecentlyUsed"/>.</summary>
    void SetPinned(IReadOnlyCollection<string> ids);

    /// <summary>The bytes one unit takes (0 when there is no such unit).</summary>
    long BytesOf(string id);
}
