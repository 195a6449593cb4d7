using Hoard.Core.Fetch;
using Microsoft.Extensions.Hosting;

namespace Hoard.Core.Hosting;

/// <summary>Every 30 seconds: persist access times (for LRU across restarts) and enforce the size limit.</summary>
public sealed class Maintenance(FetchEngine engine, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(30), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                engine.EvictIfNeeded();
                engine.FlushAccessTimes();
            }
        }
        catch (OperationCanceledException)
        {
        }
        engine.FlushAccessTimes();
    }
}
