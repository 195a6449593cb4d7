using System.Collections.Concurrent;

namespace Hoard.Core.Fetch;

/// <summary>
/// The most requested keys in fixed memory: a Space-Saving sketch (Metwally, Agrawal and El Abbadi, 2005) of a fixed
/// number of slots. Counting a key per request in the index would grow every record (BlobRecord has no bytes to
/// spare) and count nothing for keys not stored; a sketch costs a few hundred slots whatever the traffic.
///
/// A key that holds a slot is counted with one dictionary lookup and one interlocked add, no lock: that is nearly
/// every request once the popular keys hold slots. A key without one takes over the least counted slot (under a lock,
/// with a scan of the counts, kept side by side in one array so the scan stays short), inheriting its count as its
/// error. Any key asked for more than one request in <see cref="Capacity"/> is certain to hold a slot, and a slot's
/// count minus its error is a count the key certainly had: that is what is ranked and shown, so a key that has just
/// taken a slot over does not pose as popular. A count racing with a takeover of its slot may be lost (or, in a window
/// of a few instructions, land on the key that took the slot over): the sketch is approximate by design, never unbounded.
/// </summary>
public sealed class RequestSketch
{
    private readonly ConcurrentDictionary<string, Slot> _byKey = new(StringComparer.Ordinal);

    /// <summary>Which key holds each slot; replaced under <see cref="_gate"/> only.</summary>
    private readonly Slot?[] _slots;

    /// <summary>Each slot's count (with the inherited error) and last request, in Unix ms, by slot number.</summary>
    private readonly long[] _counts;

    private readonly long[] _lastMs;

    private readonly Lock _gate = new();
    private int _used;

    public RequestSketch(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _slots = new Slot?[capacity];
        _counts = new long[capacity];
        _lastMs = new long[capacity];
    }

    public int Capacity => _slots.Length;

    /// <summary>Keys holding a slot now (never more than <see cref="Capacity"/>).</summary>
    public int Count => _byKey.Count;

    /// <summary>One request for <paramref name="key"/>, at <paramref name="nowMs"/> (Unix ms).</summary>
    public void Record(string key, long nowMs)
    {
        // The slot is checked to be still this key's: one taken over since the lookup is counted as a new key.
        if (_byKey.TryGetValue(key, out var slot) && ReferenceEquals(Volatile.Read(ref _slots[slot.Index]), slot))
        {
            Hit(slot.Index, nowMs);
            return;
        }
        lock (_gate)
        {
            if (_byKey.TryGetValue(key, out slot))
            {
                Hit(slot.Index, nowMs);
                return;
            }
            int index;
            long inherited = 0;
            if (_used < _slots.Length)
            {
                index = _used++;
            }
            else
            {
                index = 0;
                inherited = long.MaxValue;
                for (var i = 0; i < _counts.Length; i++)
                {
                    var count = Volatile.Read(ref _counts[i]);
                    if (count < inherited)
                    {
                        index = i;
                        inherited = count;
                    }
                }
                _byKey.TryRemove(_slots[index]!.Key, out _);
            }
            slot = new Slot(key, index, inherited);
            Volatile.Write(ref _counts[index], inherited + 1);
            Volatile.Write(ref _lastMs[index], nowMs);
            Volatile.Write(ref _slots[index], slot);
            _byKey[key] = slot;
        }
    }

    private void Hit(int index, long nowMs)
    {
        Interlocked.Increment(ref _counts[index]);
        // Written only when it moves (fewer writes for a popular key); of two racing requests either time will do.
        if (nowMs > Volatile.Read(ref _lastMs[index]))
        {
            Volatile.Write(ref _lastMs[index], nowMs);
        }
    }

    /// <summary>
    /// The <paramref name="count"/> keys with the most requests they certainly had (count minus error), most first,
    /// with when each was last asked for.
    /// </summary>
    public List<(string Key, long Requests, long LastMs)> Top(int count)
    {
        var slots = new List<(string Key, long Requests, long LastMs)>(_slots.Length);
        lock (_gate)
        {
            for (var i = 0; i < _used; i++)
            {
                slots.Add((_slots[i]!.Key, Volatile.Read(ref _counts[i]) - _slots[i]!.Error, Volatile.Read(ref _lastMs[i])));
            }
        }
        return slots.OrderByDescending(s => s.Requests).ThenByDescending(s => s.LastMs).ThenBy(s => s.Key, StringComparer.Ordinal).Take(count).ToList();
    }

    /// <param name="Error">The count this slot had when the key took it over: what it may have been credited beyond its own.</param>
    private sealed record Slot(string Key, int Index, long Error);
}
