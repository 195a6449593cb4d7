using Hoard.Core.Fetch;
using Microsoft.Extensions.Time.Testing;

namespace Hoard.Tests.Unit;

/// <summary>A download's idle timeout: one source per transfer, pushed back by reads, driven here by a fake clock.</summary>
public sealed class IdleTimeoutTests
{
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(1);

    [Fact]
    public void It_fires_once_the_timeout_passes_with_no_read_and_says_it_timed_out()
    {
        var time = new FakeTimeProvider();
        using var idle = new IdleTimeoutPool(time).Start(Idle, CancellationToken.None);
        time.Advance(Idle - Tick);
        Assert.False(idle.Token.IsCancellationRequested);
        time.Advance(Tick);
        Assert.True(idle.Token.IsCancellationRequested);
        Assert.True(idle.TimedOut);
    }

    [Fact]
    public void It_does_not_fire_while_reads_keep_coming_however_long_the_transfer_and_keeps_one_source()
    {
        var time = new FakeTimeProvider();
        using var idle = new IdleTimeoutPool(time).Start(Idle, CancellationToken.None);
        var token = idle.Token;
        // 50 minutes, a chunk every 30 s.
        for (var i = 0; i < 100; i++)
        {
            time.Advance(TimeSpan.FromSeconds(30));
            idle.Reset();
            Assert.False(token.IsCancellationRequested);
        }
        Assert.Equal(token, idle.Token);
        time.Advance(Idle - Tick);
        Assert.False(token.IsCancellationRequested);
        time.Advance(Tick);
        Assert.True(idle.TimedOut);
    }

    [Fact]
    public void Reads_closer_together_than_the_resolution_leave_the_timer_alone_so_it_fires_at_most_that_much_early()
    {
        var time = new FakeTimeProvider();
        using var idle = new IdleTimeoutPool(time).Start(Idle, CancellationToken.None);
        var early = IdleTimeout.Resolution - Tick;
        time.Advance(early);
        idle.Reset(); // within the resolution of the start: the deadline stays where it was
        time.Advance(Idle - early - Tick);
        Assert.False(idle.Token.IsCancellationRequested);
        time.Advance(Tick);
        Assert.True(idle.TimedOut);
    }

    [Fact]
    public void The_linked_token_cancels_it_and_that_is_not_a_timeout()
    {
        var time = new FakeTimeProvider();
        using var shutdown = new CancellationTokenSource();
        using var idle = new IdleTimeoutPool(time).Start(Idle, shutdown.Token);
        shutdown.Cancel();
        Assert.True(idle.Token.IsCancellationRequested);
        Assert.False(idle.TimedOut);
        idle.Reset(); // the download is being stopped: nothing is renewed
        Assert.True(idle.Token.IsCancellationRequested);
    }

    [Fact]
    public void A_timeout_that_fired_after_the_last_read_had_its_data_gives_the_next_read_a_fresh_token()
    {
        var time = new FakeTimeProvider();
        using var idle = new IdleTimeoutPool(time).Start(Idle, CancellationToken.None);
        time.Advance(Idle);
        Assert.True(idle.TimedOut);
        idle.Reset();
        Assert.False(idle.Token.IsCancellationRequested);
        Assert.False(idle.TimedOut);
        time.Advance(Idle - Tick);
        Assert.False(idle.Token.IsCancellationRequested);
        time.Advance(Tick);
        Assert.True(idle.TimedOut);
    }

    [Fact]
    public void A_source_goes_back_to_the_pool_with_its_link_gone_and_the_next_transfer_reuses_it()
    {
        // The system clock: TryReset can only tell that a timer of its own never fired, so a source whose timer comes
        // from another TimeProvider is never reused (and nothing here waits for this clock).
        var pool = new IdleTimeoutPool(TimeProvider.System);
        using var firstShutdown = new CancellationTokenSource();
        var first = pool.Start(TimeSpan.FromHours(1), firstShutdown.Token);
        var token = first.Token;
        first.Dispose();
        firstShutdown.Cancel();
        Assert.False(token.IsCancellationRequested);

        using var second = pool.Start(TimeSpan.FromHours(1), CancellationToken.None);
        Assert.Equal(token, second.Token);
        Assert.False(second.Token.IsCancellationRequested);
    }

    [Fact]
    public void A_source_that_fired_is_not_reused()
    {
        var time = new FakeTimeProvider();
        var pool = new IdleTimeoutPool(time);
        var first = pool.Start(Idle, CancellationToken.None);
        var token = first.Token;
        time.Advance(Idle);
        first.Dispose();
        using var second = pool.Start(Idle, CancellationToken.None);
        Assert.NotEqual(token, second.Token);
        Assert.False(second.Token.IsCancellationRequested);
    }
}
