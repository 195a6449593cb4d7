namespace Hoard.Core.Storage;

/// <summary>
/// A hash table of records by a key each record holds itself: open addressing with linear probing over one array
/// of references (8 bytes a slot; 11 to 14 bytes a record at a load between 4/7 and 3/4), instead of a dictionary's
/// node object and copied key per record. Any length, not a power of two (a hash is mapped to a slot by
/// multiplication): a power of two would leave a table at 1M records half empty. One writer at a time (the caller holds a lock); readers take no lock: a
/// slot changes by one reference write, and a resize publishes a new array, so a reader sees either the record or not.
/// A removed record leaves a tombstone (or nothing, when the chain ends there) so later records stay reachable.
/// </summary>
internal sealed class RecordTable<TKey, TRecord>(Func<TRecord, TKey> keyOf) where TKey : struct, IEquatable<TKey> where TRecord : class
{
    private static readonly object Tombstone = new();
    private object?[] _slots = new object?[16];
    private int _count;
    private int _tombstones;

    public int Count => Volatile.Read(ref _count);

    public TRecord? Get(TKey key)
    {
        var slots = Volatile.Read(ref _slots);
        for (int i = Home(key, slots.Length), probes = 0; probes < slots.Length; i = Next(i, slots.Length), probes++)
        {
            switch (Volatile.Read(ref slots[i]))
            {
                case null:
                    return null;
                case TRecord record when keyOf(record).Equals(key):
                    return record;
            }
        }
        return null;
    }

    /// <summary>Writer only. Puts the record in its key's slot; returns the record it replaced, if any.</summary>
    public TRecord? Set(TRecord record)
    {
        var key = keyOf(record);
        var slots = _slots;
        var free = -1;
        var i = Home(key, slots.Length);
        for (var probes = 0; probes < slots.Length; i = Next(i, slots.Length), probes++)
        {
            var slot = slots[i];
            if (slot is null)
            {
                break;
            }
            if (ReferenceEquals(slot, Tombstone))
            {
                free = free < 0 ? i : free;
            }
            else if (keyOf((TRecord)slot).Equals(key))
            {
                Volatile.Write(ref slots[i], record);
                return (TRecord)slot;
            }
        }
        if (free >= 0)
        {
            _tombstones--;
            i = free;
        }
        Volatile.Write(ref slots[i], record);
        _count++;
        if ((_count + _tombstones) * 4L > slots.Length * 3L)
        {
            Resize();
        }
        return null;
    }

    /// <summary>Writer only. Removes the record stored under its key, if it is this very record.</summary>
    public bool Remove(TKey key, TRecord record)
    {
        var slots = _slots;
        for (int i = Home(key, slots.Length), probes = 0; probes < slots.Length; i = Next(i, slots.Length), probes++)
        {
            var slot = slots[i];
            if (slot is null)
            {
                return false;
            }
            if (ReferenceEquals(slot, record))
            {
                // The end of a chain can be emptied; inside one, a tombstone keeps the later records reachable.
                if (slots[Next(i, slots.Length)] is null)
                {
                    Volatile.Write(ref slots[i], null);
                }
                else
                {
                    Volatile.Write(ref slots[i], Tombstone);
                    _tombstones++;
                }
                _count--;
                return true;
            }
        }
        return false;
    }

    /// <summary>Every record at the time of the call (or about: readers of a table being written may miss the newest).</summary>
    public IEnumerable<TRecord> Records()
    {
        var slots = Volatile.Read(ref _slots);
        for (var i = 0; i < slots.Length; i++)
        {
            if (Volatile.Read(ref slots[i]) is TRecord record)
            {
                yield return record;
            }
        }
    }

    /// <summary>Writer only. Sizes the table for this many records up front (loading at start).</summary>
    public void EnsureCapacity(int records)
    {
        if ((long)(records + _tombstones) * 4 > _slots.Length * 3L)
        {
            Resize(records);
        }
    }

    private void Resize(int atLeast = 0)
    {
        // 4/7 full after a resize, 3/4 at the next: a resize every third more records, and few empty slots.
        var size = (int)Math.Min(Array.MaxLength, Math.Max(16, 7L * Math.Max(_count, atLeast) / 4));
        var slots = new object?[size];
        foreach (var slot in _slots)
        {
            if (slot is TRecord record)
            {
                var i = Home(keyOf(record), size);
                while (slots[i] is not null)
                {
                    i = Next(i, size);
                }
                slots[i] = record;
            }
        }
        _tombstones = 0;
        Volatile.Write(ref _slots, slots);
    }

    /// <summary>
    /// The first slot to look at: the hash scaled to the length (multiply and shift, no division). The scaling reads
    /// the hash's high bits, so the hash is mixed first (a key type whose hash is a small number would all land at 0).
    /// </summary>
    private static int Home(TKey key, int length) => (int)((uint)(key.GetHashCode() * -1640531535) * (ulong)(uint)length >> 32);

    private static int Next(int i, int length) => i + 1 == length ? 0 : i + 1;
}
