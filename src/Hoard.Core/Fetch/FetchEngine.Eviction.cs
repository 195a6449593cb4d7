using Hoard.Core.Storage;

namespace Hoard.Core.Fetch;

/// <summary>The engine's side of eviction (<see cref="Evictor"/>, in Storage/): what it tells the cluster and metrics.</summary>
public sealed partial class FetchEngine
{
    private readonly Evictor _evictor;

    /// <summary>Git mirrors: disk space that counts toward --max-size and is evicted with blobs; set at start-up.</summary>
    public IEvictableSpace? Mirrors
    {
        get => _evictor.Mirrors;
        set
        {
            _evictor.Mirrors = value;
            _index.UnitBytes = value is null ? null : value.BytesOf;
            _index.UnitsChanged = value is null ? null : value.SetPinned;
            value?.SetPinned(_index.PinnedUnits);
        }
    }

    /// <summary>Tests: called for each evicted blob after its row is gone and before its file is deleted.</summary>
    internal Action<string>? EvictionStep_ForTests
    {
        get => _evictor.Step_ForTests;
        set => _evictor.Step_ForTests = value;
    }

    private void MakeRoom(long written) => _evictor.MakeRoom(written);

    /// <summary>Wakes the background evictor when the store is past its high-water mark; never waits for it.</summary>
    public void EvictIfNeeded() => _evictor.EvictIfNeeded();
}
