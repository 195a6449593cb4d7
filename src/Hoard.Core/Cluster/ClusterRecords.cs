using System.Security.Cryptography;
using System.Text;
using StackExchange.Redis;

namespace Hoard.Core.Cluster;

/// <summary>
/// What the cluster's Redis holds about blobs, and the only code that writes it:
/// <list type="bullet">
/// <item><c>hoard:holders:{digest}</c> and <c>hoard:fetchers:{digest}</c>: sorted sets of node ids scored by the time
/// (Unix ms) each record expires. A node refreshes its records before they expire (it re-announces its store every
/// third of <see cref="RecordTtl"/>, its fetches with its lock), so a node that died without a word drops out by
/// itself, and a Redis that lost everything is filled again.</item>
/// <item><c>hoard:lock:{digest}</c>: the download lock, a value owned by one node id with an expiry. Taken, extended
/// and released only by its owner (StackExchange.Redis's LockTake/LockExtend/LockRelease compare the value), so a
/// slow node can never extend or delete a lock another node took over.</item>
/// <item>For an artifact known only by its key until downloaded (<see cref="Fetch.ArtifactRequest.SharedByKey"/>), the
/// same lock and fetcher records under the subject <c>key:{KeyId}</c> (<c>hoard:lock:key:{id}</c>,
/// <c>hoard:fetchers:key:{id}</c>), and once a node committed it <c>hoard:keydigest:{id}</c>: the digest the key turned
/// out to be, a string that expires after <see cref="RecordTtl"/> unless a node holding it re-announces it. The id is
/// the sha256 of the key: keys are long and say what clients fetch, and Redis needs neither.</item>
/// </list>
/// </summary>
public sealed class ClusterRecords(TimeSpan recordTtl, TimeSpan lockTtl, TimeProvider time)
{
    public TimeSpan RecordTtl { get; } = recordTtl;
    public TimeSpan LockTtl { get; } = lockTtl;

    private long NowMs => time.GetUtcNow().ToUnixTimeMilliseconds();

    public static RedisKey Holders(string digest) => "hoard:holders:" + digest;

    public static RedisKey Fetchers(string digest) => "hoard:fetchers:" + digest;

    public static RedisKey Lock(string digest) => "hoard:lock:" + digest;

    public static RedisKey KeyDigest(string keyId) => "hoard:keydigest:" + keyId;

    /// <summary>A key's name in Redis and in peer requests: the hex sha256 of the key.</summary>
    public static string KeyId(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>What locks and fetcher records are kept under for a key (a digest's are kept under the digest).</summary>
    public static string KeySubject(string key) => "key:" + KeyId(key);

    public static bool IsKeySubject(string subject) => subject.StartsWith("key:", StringComparison.Ordinal);

    public Task PublishKeyDigestAsync(IDatabaseAsync db, string keyId, string digest) => db.StringSetAsync(KeyDigest(keyId), digest, RecordTtl);

    /// <summary>The digest published for a key, or null (none, or not a digest: never used then).</summary>
    public static async Task<string?> KeyDigestAsync(IDatabaseAsync db, string keyId)
    {
        var value = (await db.StringGetAsync(KeyDigest(keyId))).ToString();
        return Fetch.FetchEngine.IsDigest(value) ? value : null;
    }

    public Task AddHolderAsync(IDatabaseAsync db, string digest, string node) => AddAsync(db, Holders(digest), node, RecordTtl);

    public Task AddFetcherAsync(IDatabaseAsync db, string digest, string node) => AddAsync(db, Fetchers(digest), node, LockTtl * 2);

    private async Task AddAsync(IDatabaseAsync db, RedisKey key, string node, TimeSpan ttl)
    {
        await db.SortedSetAddAsync(key, node, NowMs + (long)ttl.TotalMilliseconds);
        // The key itself goes when its newest record would have: nothing is left behind by nodes that vanished.
        await db.KeyExpireAsync(key, ttl);
    }

    public Task<bool> RemoveHolderAsync(IDatabaseAsync db, string digest, string node) => db.SortedSetRemoveAsync(Holders(digest), node);

    public Task<bool> RemoveFetcherAsync(IDatabaseAsync db, string digest, string node) => db.SortedSetRemoveAsync(Fetchers(digest), node);

    /// <summary>Node ids whose record has not expired.</summary>
    public async Task<string[]> LiveAsync(IDatabaseAsync db, RedisKey key)
    {
        var members = await db.SortedSetRangeByScoreAsync(key, NowMs, double.PositiveInfinity);
        return [.. members.Select(m => m.ToString()).Where(ClusterNode.IsNodeId)];
    }

    public Task<bool> TakeLockAsync(IDatabaseAsync db, string digest, string node) => db.LockTakeAsync(Lock(digest), node, LockTtl);

    public Task<bool> ExtendLockAsync(IDatabaseAsync db, string digest, string node) => db.LockExtendAsync(Lock(digest), node, LockTtl);

    public Task<bool> ReleaseLockAsync(IDatabaseAsync db, string digest, string node) => db.LockReleaseAsync(Lock(digest), node);

    public async Task<string?> LockOwnerAsync(IDatabaseAsync db, string digest)
    {
        var owner = await db.LockQueryAsync(Lock(digest));
        return owner.HasValue && ClusterNode.IsNodeId(owner.ToString()) ? owner.ToString() : null;
    }
}
