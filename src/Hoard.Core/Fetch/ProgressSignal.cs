using System.Threading.Tasks.Sources;

namespace Hoard.Core.Fetch;

/// <summary>
/// Wakes the readers of a growing download on every chunk without allocating per chunk: a version the writer bumps,
/// and one reusable waiter per reader (a <see cref="ManualResetValueTaskSourceCore{TResult}"/>) that sleeps until
/// the version has moved past the one the reader last looked at. Any number of readers; one leaving (its token
/// cancelled, its waiter disposed) does not disturb the others.
/// </summary>
internal sealed class ProgressSignal
{
    private readonly Lock _lock = new();
    private long _version;
    private Waiter[] _waiters = [];

    /// <summary>Read before looking at what the signal guards; hand it to <see cref="Waiter.WaitAsync"/> if there was nothing new.</summary>
    public long Version => Volatile.Read(ref _version);

    internal int WaiterCount => Volatile.Read(ref _waiters).Length;

    /// <summary>What the signal guards has changed (written before this call): every waiting reader looks again.</summary>
    public void Signal()
    {
        // A full fence, as is the reader's parking: either the reader sees the new version or this sees it parked.
        Interlocked.Increment(ref _version);
        foreach (var waiter in Volatile.Read(ref _waiters))
        {
            waiter.Wake();
        }
    }

    /// <summary>A reader's waiter for all of its waits; it leaves by disposing it.</summary>
    public Waiter Register(CancellationToken ct)
    {
        var waiter = new Waiter(this, ct);
        lock (_lock)
        {
            _waiters = [.. _waiters, waiter];
        }
        return waiter;
    }

    private void Unregister(Waiter waiter)
    {
        lock (_lock)
        {
            _waiters = Array.FindAll(_waiters, w => w != waiter);
        }
    }

    internal sealed class Waiter : IValueTaskSource, IDisposable
    {
        private static readonly Action<object?> WakeCancelled = static s => ((Waiter)s!).Wake(cancelled: true);

        private readonly ProgressSignal _signal;
        private readonly CancellationToken _ct;
        private readonly CancellationTokenRegistration _registration;
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };

        /// <summary>1 while a wait is pending: whoever changes it back to 0 (a signal, the token, the waiter itself) completes it.</summary>
        private int _parked;

        internal Waiter(ProgressSignal signal, CancellationToken ct)
        {
            _signal = signal;
            _ct = ct;
            _registration = ct.UnsafeRegister(WakeCancelled, this);
        }

        /// <summary>
        /// Completes when the version is no longer <paramref name="seen"/> (at once if it already moved on), or fails
        /// with <see cref="OperationCanceledException"/> when the reader's token is cancelled. One wait at a time.
        /// </summary>
        public ValueTask WaitAsync(long seen)
        {
            if (_ct.IsCancellationRequested)
            {
                return ValueTask.FromCanceled(_ct);
            }
            _core.Reset();
            Interlocked.Exchange(ref _parked, 1);
            if ((_signal.Version != seen || _ct.IsCancellationRequested) && Interlocked.CompareExchange(ref _parked, 0, 1) == 1)
            {
                return _ct.IsCancellationRequested ? ValueTask.FromCanceled(_ct) : ValueTask.CompletedTask;
            }
            return new ValueTask(this, _core.Version);
        }

        internal void Wake(bool cancelled = false)
        {
            if (Interlocked.CompareExchange(ref _parked, 0, 1) != 1)
            {
                return;
            }
            if (cancelled)
            {
                _core.SetException(new OperationCanceledException(_ct));
            }
            else
            {
                _core.SetResult(true);
            }
        }

        void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

        ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

        void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public void Dispose()
        {
            // Waits for a cancellation callback that is running: none can touch the waiter after this.
            _registration.Dispose();
            _signal.Unregister(this);
        }
    }
}
