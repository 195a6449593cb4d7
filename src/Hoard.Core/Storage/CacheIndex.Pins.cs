using Microsoft.Data.Sqlite;

namespace Hoard.Core.Storage;

/// <summary>A named pin: the blobs it keeps, how many of them are stored, and their bytes.</summary>
public sealed record PinRecord(string Name, string Kind, long CreatedUnixSeconds, int Blobs, int Missing, long Bytes);

/// <summary>
/// Pins: named sets of blobs an operator asked to keep (`hoard pin`), kept in SQLite (table pins, which layout 2
/// databases gain on open) and applied to the blobs in memory. A pinned blob is off the LRU list, so eviction never
/// looks at it; a blob stays pinned while any pin names it. Pinned bytes count toward --max-size like any, and
/// <see cref="TryPin"/> refuses a pin that would take the pinned total past what it is allowed.
/// </summary>
public sealed partial class CacheIndex
{
    private readonly Lock _pinLock = new();
    private readonly Dictionary<string, (string Kind, long Created, Sha256Digest[] Digests, string[] Units)> _pins = new(StringComparer.Ordinal);

    /// <summary>Pins naming each digest; written under _pinLock, read without it by a commit (which holds locks a pin takes after _pinLock).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Sha256Digest, int> _pinCounts = new();

    /// <summary>Pinned blobs whose key moved to another blob, queued under the index's locks (see <see cref="FollowMovedPins"/>).</summary>
    private readonly System.Collections.Concurrent.ConcurrentQueue<(Sha256Digest Old, Sha256Digest New)> _movedPins = new();

    /// <summary>
    /// The bytes of a unit outside the blob store a pin may keep (a git mirror, by its name in the mirror space), set by the engine with
    /// the space that holds them; null: units count as nothing.
    /// </summary>
    internal Func<string, long>? UnitBytes { get; set; }

    /// <summary>Every unit some pin keeps (a git mirror, by its name in the mirror space).</summary>
    public IReadOnlyCollection<string> PinnedUnits
    {
        get
        {
            lock (_pinLock)
            {
                return PinnedUnitsLocked();
            }
        }
    }

    /// <summary>
    /// Told the pinned units whenever pins change, under the pins' lock (so two changes can never land in the wrong
    /// order): the space that holds them stops offering them for eviction.
    /// </summary>
    internal Action<IReadOnlyCollection<string>>? UnitsChanged { get; set; }

    private List<string> PinnedUnitsLocked() => _pins.Values.SelectMany(p => p.Units).Distinct(StringComparer.Ordinal).ToList();

    private void DeletePinRows(string name)
    {
        lock (_writeLock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "DELETE FROM pins WHERE name = $n; DELETE FROM pin_units WHERE name = $n;";
            cmd.Parameters.AddWithValue("$n", name);
            cmd.ExecuteNonQuery();
        }
    }

    /// <summary>
    /// Pins follow their keys: a pin naming a blob whose key now leads to another (a project page after a new
    /// release, a tag moved upstream) names the new blob too, so what the key serves stays when upstream is down. The
    /// old blob stays pinned (another key, a manifest's digest, may still lead to it). Call with no lock held.
    /// </summary>
    public void FollowMovedPins()
    {
        if (_movedPins.IsEmpty)
        {
            return;
        }
        lock (_pinLock)
        {
            while (_movedPins.TryDequeue(out var moved))
            {
                foreach (var (name, pin) in _pins.Where(p => p.Value.Digests.Contains(moved.Old) && !p.Value.Digests.Contains(moved.New)).ToList())
                {
                    var digests = pin.Digests.Append(moved.New).ToArray();
                    lock (_writeLock)
                    {
                        using var cmd = _db.CreateCommand();
                        cmd.CommandText = "UPDATE pins SET digests = $d WHERE name = $n";
                        cmd.Parameters.AddWithValue("$n", name);
                        cmd.Parameters.Add("$d", SqliteType.Blob).Value = Pack(digests);
                        cmd.ExecuteNonQuery();
                    }
                    RemovePinLocked(name);
                    ApplyPinLocked(name, pin.Kind, pin.Created, digests, pin.Units);
                }
            }
        }
    }

    private long UnitsBytesLocked(IEnumerable<string> units) => UnitBytes is { } of ? units.Distinct(StringComparer.Ordinal).Sum(of) : 0;

    /// <summary>A blob's bytes while it is stored, 0 once it is not.</summary>
    private long StoredSize(Sha256Digest digest) => _blobs.Get(digest) is { IsEvicted: false } b ? b.Size : 0;

    /// <summary>What all pins keep: their distinct stored blobs and units.</summary>
    private long PinnedBytesLocked() => _pinCounts.Keys.Sum(StoredSize) + UnitsBytesLocked(_pins.Values.SelectMany(p => p.Units));

    /// <summary>Digests as the pins table stores them: 32 bytes each, one after another.</summary>
    private static byte[] Pack(Sha256Digest[] digests)
    {
        var packed = new byte[digests.Length * 32];
        for (var i = 0; i < digests.Length; i++)
        {
            digests[i].WriteTo(packed.AsSpan(i * 32, 32));
        }
        return packed;
    }

    private static Sha256Digest[] Unpack(byte[] packed)
    {
        var digests = new Sha256Digest[packed.Length / 32];
        for (var i = 0; i < digests.Length; i++)
        {
            digests[i] = Sha256Digest.FromBytes(packed.AsSpan(i * 32, 32));
        }
        return digests;
    }

    private void OpenPins()
    {
        Execute("""
            CREATE TABLE IF NOT EXISTS pins(name TEXT PRIMARY KEY, kind TEXT NOT NULL, created INTEGER NOT NULL, digests BLOB NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS pin_units(name TEXT NOT NULL, unit TEXT NOT NULL, PRIMARY KEY(name, unit)) WITHOUT ROWID;
            """);
        var units = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        using (var read = _db.CreateCommand())
        {
            read.CommandText = "SELECT name, unit FROM pin_units";
            using var u = read.ExecuteReader();
            while (u.Read())
            {
                (units.TryGetValue(u.GetString(0), out var list) ? list : units[u.GetString(0)] = []).Add(u.GetString(1));
            }
        }
        using var cmd = _db.CreateCommand();
        cmd.CommandText = "SELECT name, kind, created, digests FROM pins";
        using var r = cmd.ExecuteReader();
        while (r.Read())
        {
            ApplyPinLocked(r.GetString(0), r.GetString(1), r.GetInt64(2), Unpack((byte[])r.GetValue(3)), [.. units.GetValueOrDefault(r.GetString(0)) ?? []]);
        }
    }

    /// <summary>Bytes of the distinct stored blobs some pin keeps.</summary>
    public long PinnedBytes
    {
        get
        {
            lock (_pinLock)
            {
                return PinnedBytesLocked();
            }
        }
    }

    /// <summary>
    /// Pins these digests under <paramref name="name"/> (replacing a pin of that name). Refused, with the reason, when
    /// one is not stored, or when the pinned total would pass <paramref name="maxPinnedBytes"/>.
    /// </summary>
    public bool TryPin(string name, string kind, IReadOnlyCollection<string> digests, IReadOnlyCollection<string> units, long maxPinnedBytes, long nowMs, out string? refusal, out long bytes)
    {
        var unitIds = units.Distinct(StringComparer.Ordinal).ToArray();
        var values = digests.Select(Sha256Digest.Parse).Distinct().ToArray();
        lock (_pinLock)
        {
            var missing = values.Count(d => _blobs.Get(d) is not { IsEvicted: false });
            bytes = values.Sum(StoredSize);
            var previous = _pins.TryGetValue(name, out var old) ? old.Digests : [];
            var previousUnits = old.Units ?? [];
            var otherUnits = _pins.Where(p => p.Key != name).SelectMany(p => p.Value.Units).ToHashSet(StringComparer.Ordinal);
            bytes += UnitsBytesLocked(unitIds);
            var added = values.Except(previous).Where(d => !_pinCounts.ContainsKey(d)).Sum(StoredSize)
                + UnitsBytesLocked(unitIds.Where(u => !otherUnits.Contains(u) && !previousUnits.Contains(u)));
            var released = previous.Except(values).Where(d => _pinCounts.GetValueOrDefault(d) == 1).Sum(StoredSize)
                + UnitsBytesLocked(previousUnits.Where(u => !otherUnits.Contains(u) && !unitIds.Contains(u)));
            var total = PinnedBytesLocked();
            if (total - released + added > maxPinnedBytes)
            {
                refusal = Refusal(added, total, maxPinnedBytes);
                return false;
            }
            // Checked after the size: a pin too big for the store is also one whose first blobs the last ones evicted.
            if (missing > 0)
            {
                refusal = $"{missing} of its {values.Length} blobs are not stored (evicted while it was fetched?): run it again";
                return false;
            }
            lock (_writeLock)
            {
                using var tx = _db.BeginTransaction();
                using (var cmd = _db.CreateCommand())
                {
                    cmd.Transaction = tx;
                    cmd.CommandText = "INSERT OR REPLACE INTO pins(name, kind, created, digests) VALUES ($n, $k, $c, $d); DELETE FROM pin_units WHERE name = $n;";
                    cmd.Parameters.AddWithValue("$n", name);
                    cmd.Parameters.AddWithValue("$k", kind);
                    cmd.Parameters.AddWithValue("$c", nowMs / 1000);
                    cmd.Parameters.Add("$d", SqliteType.Blob).Value = Pack(values);
                    cmd.ExecuteNonQuery();
                }
                foreach (var unit in unitIds)
                {
                    using var cmd = _db.CreateCommand();
                    cmd.Transaction = tx;
                    cmd.CommandText = "INSERT INTO pin_units(name, unit) VALUES ($n, $u)";
                    cmd.Parameters.AddWithValue("$n", name);
                    cmd.Parameters.AddWithValue("$u", unit);
                    cmd.ExecuteNonQuery();
                }
                tx.Commit();
            }
            RemovePinLocked(name);
            ApplyPinLocked(name, kind, nowMs / 1000, values, unitIds);
            // Eviction does not take this lock: a blob may have gone between the check above and its flag. Flagged
            // now, none can go any more; one already gone fails the pin rather than leave it quietly incomplete.
            if (values.Any(d => _blobs.Get(d) is not { IsEvicted: false, Pinned: true }))
            {
                RemovePinLocked(name);
                DeletePinRows(name);
                refusal = "a blob was evicted while it was pinned: run it again";
                return false;
            }
            UnitsChanged?.Invoke(PinnedUnitsLocked());
            refusal = null;
            return true;
        }
    }

    /// <summary>Why blobs of these digests and sizes would not fit beside the other pins (null: they would).</summary>
    public string? PinRoomProblem(string name, IReadOnlyDictionary<string, long> planned, long maxPinnedBytes)
    {
        lock (_pinLock)
        {
            var kept = _pins.Where(p => p.Key != name).SelectMany(p => p.Value.Digests).ToHashSet();
            var total = _pinCounts.Keys.Where(kept.Contains).Sum(StoredSize)
                + UnitsBytesLocked(_pins.Where(p => p.Key != name).SelectMany(p => p.Value.Units));
            var added = planned.Where(p => !kept.Contains(Sha256Digest.Parse(p.Key))).Sum(p => p.Value);
            return total + added > maxPinnedBytes ? Refusal(added, total, maxPinnedBytes) : null;
        }
    }

    private static string Refusal(long added, long total, long maxPinnedBytes) =>
        $"it needs {Configuration.ValueParsers.FormatSize(added)} more pinned space; pins hold {Configuration.ValueParsers.FormatSize(total)} and may hold at most {Configuration.ValueParsers.FormatSize(maxPinnedBytes)} (raise --max-size, or unpin something)";

    /// <summary>Removes a pin; its blobs no other pin names go back to the LRU list as most recently used.</summary>
    public bool Unpin(string name)
    {
        lock (_pinLock)
        {
            if (!_pins.ContainsKey(name))
            {
                return false;
            }
            DeletePinRows(name);
            RemovePinLocked(name);
            UnitsChanged?.Invoke(PinnedUnitsLocked());
            return true;
        }
    }

    public List<PinRecord> Pins()
    {
        lock (_pinLock)
        {
            return _pins.Select(p =>
            {
                var stored = p.Value.Digests.Select(d => _blobs.Get(d)).Where(b => b is { IsEvicted: false }).ToList();
                return new PinRecord(p.Key, p.Value.Kind, p.Value.Created, p.Value.Digests.Length, p.Value.Digests.Length - stored.Count, stored.Sum(b => b!.Size) + UnitsBytesLocked(p.Value.Units));
            }).OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        }
    }

    /// <summary>A blob committed (again) whose digest a pin names: pinned before it joins the LRU list.</summary>
    private bool IsPinnedDigest(Sha256Digest digest) => _pinCounts.ContainsKey(digest);

    private void ApplyPinLocked(string name, string kind, long created, Sha256Digest[] digests, string[] units)
    {
        _pins[name] = (kind, created, digests, units);
        foreach (var d in digests)
        {
            _pinCounts[d] = _pinCounts.GetValueOrDefault(d) + 1;
            if (_blobs.Get(d) is { } blob)
            {
                // Under the digest's lock: an eviction of this blob is wholly before (it is gone) or after (it sees the flag).
                lock (LockFor(blob))
                {
                    blob.Pinned = true;
                }
                lock (_lruLock)
                {
                    LruRemoveLocked(blob);
                }
            }
        }
    }

    private void RemovePinLocked(string name)
    {
        if (!_pins.Remove(name, out var pin))
        {
            return;
        }
        foreach (var d in pin.Digests)
        {
            if (_pinCounts.GetValueOrDefault(d) <= 1)
            {
                _pinCounts.TryRemove(d, out _);
                // Under the digest's lock, looked up there: a commit of the same digest (which reads the pin count
                // and sets the flag under this lock) is wholly before or after, so no blob keeps a stale flag off the list.
                lock (_digestLocks[d.FirstByte])
                {
                    if (_blobs.Get(d) is { } blob)
                    {
                        blob.Pinned = false;
                        if (!blob.IsEvicted)
                        {
                            LruAdd(blob);
                        }
                    }
                }
            }
            else
            {
                _pinCounts[d]--;
            }
        }
    }
}
