namespace Hoard.Core.Fetch;

/// <summary>
/// What a key stores, as the engine recorded it: a copy (nothing pinned, nothing to release), for a front-end's
/// decisions (is this key stored, does it still name this digest, how old is this tag). Content is served through
/// <see cref="FetchEngine.GetAsync"/> or <see cref="FetchEngine.TryGetHit"/>, never read by way of this.
/// </summary>
/// <param name="Digest">The blob's sha256, lower-case hex.</param>
/// <param name="Size">The blob's size in bytes.</param>
/// <param name="ContentType">The Content-Type recorded with the key, if any.</param>
/// <param name="FetchedAtMs">When upstream last confirmed it (a fetch, a 304, a confirmed pointer), in Unix ms.</param>
public readonly record struct StoredEntry(string Digest, long Size, string? ContentType, long FetchedAtMs);

/// <summary>How full the cache is: bytes and blobs in the store, keys naming them.</summary>
public readonly record struct CacheStats(long Bytes, int Blobs, int Keys);
