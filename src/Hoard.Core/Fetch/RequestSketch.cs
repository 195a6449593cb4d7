using System.Collections.Concurrent;

namespace Hoard.Core.Fetch;

/// <summary>
/// The most requested keys in fixed memory: a Space-Saving sketch (Metwally, Agrawal and El Abbadi, 2005) of a fixed
/// number of slots. Counting a key per request in the index would grow every record (BlobRecord has no bytes to
/// spare) and count nothing for keys not stored; a sketch costs a few hundred slots whatever the traffic.
///
/// A key that holds a slot is counted with one dictionary lookup and one interlocked add, no lock: that is nearly
/// every request once the popular keys hold slots. A key without one takes over the least counted slot (under a lock,
/// with a scan of the slots), inheriting its count as its error. Any key asked for more than one request in
/// <see cref="Capacity"/> is certain to hold a slot, and a slot's count minus its error is a count the key certainly
/// had: that is what is ranked and shown, so a key that has just taken a slot over does not pose as popular.
/// Counts that race with a takeover may be lost: the sketch is approximate by design, never unbounded.
/// </summary>
public sealed class RequestSketch
{
    private readonly ConcurrentDictionary<string, Slot> _byKey = new(StringComparer.Ordinal);

    /// <summary>The same slots, for the scan for the least counted; written under <see cref="_gate"/> only.</summary>
    private readonly Slot?[] _slots;

    private readonly Lock _gate = new();
    private int _used;

    public RequestSketch(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _slots = new Slot?[capacity];
    }

    public int Capacity => _slots.Length;

    /// <summary>Keys holding a slot now (never more than <see cref="Capacity"/>).</summary>
    public int Count => _byKey.Count;

    /// <summary>One request for <paramref name="key"/>, at <paramref name="nowMs"/> (Unix ms).</summary>
    public void Record(string key, long nowMs)
    {
        if (_byKey.TryGetValue(key, out var slot))
        {
            slot.Hit(nowMs);
            return;
        }
        lock (_gate)
        {
            if (_byKey.TryGetValue(key, out slot))
            {
                slot.Hit(nowMs);
                return;
            }
            if (_used < _slots.Length)
            {
                slot = new Slot(key, 1, 0, nowMs);
                _slots[_used++] = slot;
                _byKey[key] = slot;
                return;
            }
            var least = 0;
            var leastCount = long.MaxValue;
            for (var i = 0; i < _slots.Length; i++)
            {
                var count = _slots[i]!.Count;
                if (count < leastCount)
                {
                    least = i;
                    leastCount = count;
                }
            }
            _byKey.TryRemove(_slots[least]!.Key, out _);
            slot = new Slot(key, leastCount + 1, leastCount, nowMs);
            _slots[least] = slot;
            _byKey[key] = slot;
        }
    }

    /// <summary>
    /// The <paramref name="count"/> keys with the most requests they certainly had (count minus error), most first,
    /// with when each was last asked for.
    /// </summary>
    public List<(string Key, long Requests, long LastMs)> Top(int count)
    {
        Slot?[] slots;
        lock (_gate)
        {
            slots = (Slot?[])_slots.Clone();
        }
        return slots.OfType<Slot>()
            .Select(s => (s.Key, Requests: s.Count - s.Error, LastMs: s.LastMs))
            .OrderByDescending(s => s.Requests).ThenByDescending(s => s.LastMs).ThenBy(s => s.Key, StringComparer.Ordinal)
            .Take(count).ToList();
    }

    private sealed class Slot(string key, long count, long error, long lastMs)
    {
        private long _count = count;
        private long _lastMs = lastMs;

        public string Key { get; } = key;

        /// <summary>The count this key's slot had when the key took it over: what it may have been credited beyond its own.</summary>
        public long Error { get; } = error;

        public long Count => Interlocked.Read(ref _count);

        public long LastMs => Volatile.Read(ref _lastMs);

        public void Hit(long nowMs)
        {
            Interlocked.Increment(ref _count);
            // Written only when it moves (fewer writes to a popular key's slot); of two racing requests either time will do.
            if (nowMs > Volatile.Read(ref _lastMs))
            {
                Volatile.Write(ref _lastMs, nowMs);
            }
        }
    }
}
