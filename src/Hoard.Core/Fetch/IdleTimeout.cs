using System.Collections.Concurrent;

namespace Hoard.Core.Fetch;

/// <summary>
/// Cancellation sources for idle timeouts, kept for reuse: a transfer's source goes back here when the transfer ends
/// and is reset with <see cref="CancellationTokenSource.TryReset"/>, timer and all (YARP pools its
/// ActivityCancellationTokenSource the same way). Every source's timer comes from this pool's <see cref="TimeProvider"/>.
/// </summary>
internal sealed class IdleTimeoutPool(TimeProvider time)
{
    private const int MaxKept = 1024;
    private readonly ConcurrentQueue<CancellationTokenSource> _free = new();
    private int _kept;

    public TimeProvider Time => time;

    /// <summary>An idle timeout of <paramref name="timeout"/>, running from now, that <paramref name="linked"/> also cancels.</summary>
    public IdleTimeout Start(TimeSpan timeout, CancellationToken linked) => new(this, timeout, linked);

    internal CancellationTokenSource Rent()
    {
        if (_free.TryDequeue(out var source))
        {
            Interlocked.Decrement(ref _kept);
            return source;
        }
        return new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
    }

    /// <summary>Keeps a source that was never cancelled (its timer stopped); disposes the others.</summary>
    internal void Return(CancellationTokenSource source)
    {
        if (source.TryReset())
        {
            if (Interlocked.Increment(ref _kept) <= MaxKept)
            {
                _free.Enqueue(source);
                return;
            }
            Interlocked.Decrement(ref _kept);
        }
        source.Dispose();
    }
}

/// <summary>
/// One idle timeout for a whole transfer: one cancellation source whose timer is pushed back before each read
/// (<see cref="Reset"/>), instead of a linked source and a timer per read. A timer update within
/// <see cref="Resolution"/> of the last is skipped, so the timeout may end up to that much early. Not thread-safe:
/// one transfer loop uses it; the timer and the linked token only cancel it.
/// </summary>
internal sealed class IdleTimeout : IDisposable
{
    /// <summary>How stale the deadline may get before a read pushes it back (YARP's activity timeout uses 20 ms too).</summary>
    public static readonly TimeSpan Resolution = TimeSpan.FromMilliseconds(20);

    private static readonly Action<object?> CancelSource = static s => ((CancellationTokenSource)s!).Cancel(throwOnFirstException: false);

    private readonly IdleTimeoutPool _pool;
    private readonly TimeSpan _timeout;
    private readonly CancellationToken _linked;
    private CancellationTokenSource _source;
    private CancellationTokenRegistration _link;
    private long _armedAt;

    internal IdleTimeout(IdleTimeoutPool pool, TimeSpan timeout, CancellationToken linked)
    {
        _pool = pool;
        _timeout = timeout;
        _linked = linked;
        _source = pool.Rent();
        Arm();
    }

    /// <summary>Cancelled when the timeout passes with no <see cref="Reset"/>, or when the linked token is.</summary>
    public CancellationToken Token => _source.Token;

    /// <summary>The timer cancelled <see cref="Token"/>, not the linked token.</summary>
    public bool TimedOut => _source.IsCancellationRequested && !_linked.IsCancellationRequested;

    /// <summary>
    /// Data moved (or is about to be waited for again): the timeout runs from now. A token the timer cancelled after
    /// the last read had its data, or that a read gave up on, is replaced by a fresh one.
    /// </summary>
    public void Reset()
    {
        var now = _pool.Time.GetTimestamp();
        if (_pool.Time.GetElapsedTime(_armedAt, now) >= Resolution)
        {
            _source.CancelAfter(_timeout);
            _armedAt = now;
        }
        if (TimedOut)
        {
            _link.Dispose();
            _source.Dispose();
            _source = _pool.Rent();
            Arm();
        }
    }

    private void Arm()
    {
        _link = _linked.UnsafeRegister(CancelSource, _source);
        _source.CancelAfter(_timeout);
        _armedAt = _pool.Time.GetTimestamp();
    }

    public void Dispose()
    {
        // After this the linked token's callback cannot run any more: the source may go to another transfer.
        _link.Dispose();
        _pool.Return(_source);
    }
}
