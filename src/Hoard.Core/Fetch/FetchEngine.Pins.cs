using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>Pins (`hoard pin`): named sets of stored blobs eviction never takes.</summary>
public sealed partial class FetchEngine
{
    /// <summary>
    /// Pins may hold up to 80% of --max-size: the rest (above all the 10% below the evictor's low-water mark) stays
    /// for what clients ask for meanwhile. Pins up to the low-water mark itself would leave eviction nothing to take,
    /// and a refused pin's blobs (fetched before the refusal) would not fit beside the others.
    /// </summary>
    public long MaxPinnedBytes => _options.MaxSizeBytes / 100 * 80;

    /// <summary>
    /// Pins these stored digests (and git mirrors, by their name in <see cref="Mirrors"/>) under a name; false and the
    /// reason when they are not all stored or do not fit.
    /// </summary>
    public bool Pin(string name, string kind, IReadOnlyCollection<string> digests, out string? refusal, out long bytes, IReadOnlyCollection<string>? mirrors = null) =>
        _index.TryPin(name, kind, digests, mirrors ?? [], MaxPinnedBytes, NowMs, out refusal, out bytes);

    /// <summary>
    /// Before a pin fetches anything: why blobs of these digests and sizes could not join the pins (what other pins
    /// already keep counts once), or null when they fit. The pin itself checks again, exactly, once they are stored.
    /// </summary>
    public string? PinRoomProblem(string name, IReadOnlyDictionary<string, long> planned) =>
        _index.PinRoomProblem(name, planned, MaxPinnedBytes);

    public bool Unpin(string name) => _index.Unpin(name);

    public List<PinInfo> Pins() => _index.Pins().Select(p => new PinInfo(p.Name, p.Kind, p.CreatedUnixSeconds, p.Blobs, p.Missing, p.Bytes)).ToList();

    public long PinnedBytes => _index.PinnedBytes;
}

/// <summary>A pin as the engine reports it: its name and kind, when it was made, its blobs, how many are missing, their bytes.</summary>
public sealed record PinInfo(string Name, string Kind, long CreatedUnixSeconds, int Blobs, int Missing, long Bytes);
