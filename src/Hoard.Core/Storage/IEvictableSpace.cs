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

    /// <summary>
    /// The units pins keep (a pinned repository's mirror), by <see cref="NameOf"/>: never offered by
    /// <see cref="LeastRecentlyUsed"/>.
    /// </summary>
    void SetPinned(IReadOnlyCollection<string> names);

    /// <summary>The bytes one unit takes, by <see cref="NameOf"/> (0 when there is no such unit).</summary>
    long BytesOf(string name);

    /// <summary>A unit's name that stays the same wherever the data directory is mounted (what pins record).</summary>
    string NameOf(string id);
}
