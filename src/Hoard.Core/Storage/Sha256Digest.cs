using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Hoard.Core.Storage;

/// <summary>
/// A sha256 as 32 bytes (four integers), not as a 64-character string: 32 bytes in a record instead of a 150-byte
/// string object. Hashes for tables are mixed with a per-process random seed, so content chosen to collide in a
/// table's low bits (cheap to grind for a sha256 prefix) cannot turn lookups into long probe chains.
/// </summary>
public readonly struct Sha256Digest : IEquatable<Sha256Digest>
{
    private static readonly ulong Seed = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1;

    private readonly ulong _a, _b, _c, _d;

    private Sha256Digest(ulong a, ulong b, ulong c, ulong d) => (_a, _b, _c, _d) = (a, b, c, d);

    public static Sha256Digest FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != 32)
        {
            throw new ArgumentException("a sha256 is 32 bytes", nameof(bytes));
        }
        return new(BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]), BinaryPrimitives.ReadUInt64BigEndian(bytes[24..]));
    }

    /// <summary>From 64 lower-case hex characters (what <see cref="ContentStore.IsDigest"/> accepts).</summary>
    public static Sha256Digest Parse(string hex)
    {
        Span<byte> bytes = stackalloc byte[32];
        if (hex.Length != 64 || Convert.FromHexString(hex, bytes, out _, out var written) != System.Buffers.OperationStatus.Done || written != 32)
        {
            throw new FormatException("not a sha256 in hex");
        }
        return FromBytes(bytes);
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, _a);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], _c);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], _d);
    }

    public byte[] ToBytes()
    {
        var bytes = new byte[32];
        WriteTo(bytes);
        return bytes;
    }

    /// <summary>Lower-case hex, as files are named.</summary>
    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[32];
        WriteTo(bytes);
        return Convert.ToHexStringLower(bytes);
    }

    /// <summary>The first byte: which of the 256 digest lock stripes (and blob directories) it falls in.</summary>
    public int FirstByte => (int)(_a >> 56);

    public bool Equals(Sha256Digest other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;

    public override bool Equals(object? obj) => obj is Sha256Digest other && Equals(other);

    public override int GetHashCode() => (int)((_b ^ Seed) * 0x9E3779B97F4A7C15UL >> 32);

    public static bool operator ==(Sha256Digest left, Sha256Digest right) => left.Equals(right);

    public static bool operator !=(Sha256Digest left, Sha256Digest right) => !left.Equals(right);
}

/// <summary>
/// A cache key as the first 16 bytes of its BLAKE3 hash: what the in-memory index holds instead of the key's string
/// (16 bytes instead of 60 to 250). A collision would serve one key's content for another, so the hash is a
/// cryptographic one: finding two keys with the same 128-bit hash takes about 2^64 hash computations. BLAKE3, not
/// sha256: it costs ~100 ns for a short key where .NET's sha256 (through OpenSSL) costs ~350 ns, on every hit.
/// The key's text is kept in SQLite only (purges by prefix).
/// </summary>
public readonly struct KeyHash : IEquatable<KeyHash>
{
    private static readonly ulong Seed = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)) | 1;

    private readonly ulong _a, _b;

    private KeyHash(ulong a, ulong b) => (_a, _b) = (a, b);

    public static KeyHash Of(string key)
    {
        // Keys are short (a URL path, bounded by the request line): hashed without a heap buffer.
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        Span<byte> utf8 = max > 1024 ? new byte[max] : stackalloc byte[max];
        var n = Encoding.UTF8.GetBytes(key, utf8);
        Span<byte> hash = stackalloc byte[16];
        Blake3.Hasher.Hash(utf8[..n], hash);
        return FromBytes(hash);
    }

    public static KeyHash FromBytes(ReadOnlySpan<byte> bytes) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));

    public byte[] ToBytes()
    {
        var bytes = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, _a);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), _b);
        return bytes;
    }

    public bool Equals(KeyHash other) => _a == other._a && _b == other._b;

    public override bool Equals(object? obj) => obj is KeyHash other && Equals(other);

    public override int GetHashCode() => (int)((_a ^ Seed) * 0x9E3779B97F4A7C15UL >> 32);

    public static bool operator ==(KeyHash left, KeyHash right) => left.Equals(right);

    public static bool operator !=(KeyHash left, KeyHash right) => !left.Equals(right);
}
