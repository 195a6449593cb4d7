using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>Pins (`hoard pin`): named sets of stored blobs eviction never takes.</summary>
public sealed partial class FetchEngine
{
    /// <summary>
    /// Pins may hold up to the evictor's low-water mark (90% of --max-size): past it, eviction could never bring the
    /// store down to its target, and the rest of the cache would have no room to work in.
    /// </summary>
    public long MaxPinnedBytes => _options.MaxSizeBytes / 100 * 90;

    /// <summary>Pins these stored digests under a name; false and the reason when they are not all stored or do not fit.</summary>
    public bool Pin(string name, string kind, IReadOnlyCollection<string> digests, out string? refusal, out long bytes) =>
        _index.TryPin(name, kind, digests, MaxPinnedBytes, _time.GetUtcNow().ToUnixTimeMilliseconds(), out refusal, out bytes);

    public bool Unpin(string name) => _index.Unpin(name);

    public List<PinInfo> Pins() => _index.Pins();

    public long PinnedBytes => _index.PinnedBytes;
}
