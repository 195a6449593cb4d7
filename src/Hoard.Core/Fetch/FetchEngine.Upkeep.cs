using Hoard.Core.Configuration;
using Hoard.Core.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Hoard.Core.Fetch;

/// <summary>Start-up and upkeep of the store, for the host (Hosting/HoardApp.cs, Maintenance.cs), not for front-ends.</summary>
public sealed partial class FetchEngine
{
    /// <summary>Registers the engine with what only it touches: the blob store and the index.</summary>
    public static void Register(IServiceCollection services, HoardOptions options)
    {
        services.AddSingleton(_ => new ContentStore(options.DataDir));
        services.AddSingleton(sp => new CacheIndex(options.DataDir, sp.GetRequiredService<ILogger<CacheIndex>>()));
        services.AddSingleton<FetchEngine>();
    }

    public CacheStats Stats => new(_index.TotalBytes, _index.BlobCount, _index.EntryCount);

    /// <summary>Removes temp files a crash left behind (at start, before any download); how many.</summary>
    public int CleanTemp() => _store.CleanTemp();

    /// <summary>Makes the index agree with the blob files (see <see cref="CacheIndex.Reconcile"/>); runs while requests are served.</summary>
    public (int DroppedRows, int DeletedFiles) Reconcile(CancellationToken ct) => _index.Reconcile(_store, ct);

    /// <summary>Persists access times (LRU order across restarts).</summary>
    public int FlushAccessTimes() => _index.FlushAccessTimes();
}
