using Hoard.Core.Cluster;
using Hoard.Tests.Infrastructure;
using StackExchange.Redis;

namespace Hoard.Tests.Integration;

/// <summary>What the cluster keeps in Redis: owner-checked locks, records that expire unless refreshed, the Redis URL.</summary>
[Collection(SerialCollection.Name)]
public sealed class ClusterRecordTests
{
    private const string Digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [Fact]
    public async Task A_node_whose_lock_was_taken_over_can_neither_extend_nor_release_it()
    {
        await using var redis = new RedisServer();
        await redis.StartAsync();
        await using var mux = await ConnectionMultiplexer.ConnectAsync(RedisUrl.Parse(redis.Url));
        var db = mux.GetDatabase();
        var records = new ClusterRecords(TimeSpan.FromMinutes(30), TimeSpan.FromSeconds(15), TimeProvider.System);

        Assert.True(await records.TakeLockAsync(db, Digest, "node-a"));
        Assert.False(await records.TakeLockAsync(db, Digest, "node-b"));
        // Node B finds A unreachable and releases A's lock (only A's), then takes it.
        Assert.True(await records.ReleaseLockAsync(db, Digest, "node-a"));
        Assert.True(await records.TakeLockAsync(db, Digest, "node-b"));
        // A was only slow: its timer and its end of download must not touch B's lock.
        Assert.False(await records.ExtendLockAsync(db, Digest, "node-a"));
        Assert.False(await records.ReleaseLockAsync(db, Digest, "node-a"));
        Assert.Equal("node-b", await records.LockOwnerAsync(db, Digest));
        Assert.True(await records.ExtendLockAsync(db, Digest, "node-b"));
        Assert.True(await records.ReleaseLockAsync(db, Digest, "node-b"));
        Assert.Null(await records.LockOwnerAsync(db, Digest));
        // Whatever sits in Redis under a lock or a record, a node id that is not one is never used.
        await db.StringSetAsync(ClusterRecords.Lock(Digest), new string('x', 5000));
        Assert.Null(await records.LockOwnerAsync(db, Digest));
        await db.SortedSetAddAsync(ClusterRecords.Holders(Digest), "bad id\r\nwith newlines", double.MaxValue);
        Assert.Empty(await records.LiveAsync(db, ClusterRecords.Holders(Digest)));
    }

    [Fact]
    public async Task Holder_records_of_a_node_that_stopped_expire_and_those_of_a_live_node_are_renewed()
    {
        using var temp = new TempDir();
        var root = temp.Sub("up");
        var data = System.Security.Cryptography.RandomNumberGenerator.GetBytes(100_000);
        File.WriteAllBytes(Path.Combine(root, "a.bin"), data);
        var sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(data));
        await using var nginx = new Nginx(root);
        await nginx.StartAsync();
        // Redis with a password and a database other than 0: the URL keeps both.
        await using var redis = new RedisServer(password: "redis-secret");
        await redis.StartAsync();
        var url = $"redis://:redis-secret@127.0.0.1:{redis.Port}/3";

        Task<HoardHost> Node(string name) => HoardHost.StartAsync(temp.Sub(name), o =>
        {
            var port = Ports.Free();
            o.Advertise = $"http://127.0.0.1:{port}";
            o.Listen = [o.Advertise];
            o.ClusterRedis = url;
            o.ClusterSecret = "record-test-cluster-secret-01";
            o.ClusterRecordTtl = TimeSpan.FromSeconds(3);
            PipTests.SetFiles(o, "up=" + nginx.BaseUrl + "/");
        });
        await using var live = await Node("live");
        var leaving = await Node("leaving");
        using var http = new HttpClient();
        Assert.Equal(data, await http.GetByteArrayAsync(leaving.BaseUrl + "/files/up/a.bin"));
        Assert.Equal(data, await http.GetByteArrayAsync(live.BaseUrl + "/files/up/a.bin"));
        var key = "hoard:holders:" + sha;
        async Task<int> LiveHolders() =>
            (await redis.CliAsync("-n", "3", "ZRANGEBYSCORE", key, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture), "+inf"))
                .Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        await FetchEngineTests.WaitUntil(() => LiveHolders().Result == 2, TimeSpan.FromSeconds(10));

        // One node stops without a word (its records stay behind in Redis): they lapse by themselves, while the
        // live node's are renewed (it re-announces its store every third of the record lifetime).
        await leaving.DisposeAsync();
        await FetchEngineTests.WaitUntil(() => LiveHolders().Result == 1, TimeSpan.FromSeconds(10));
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.Equal(1, await LiveHolders());
        Assert.Equal("0", await redis.CliAsync("EXISTS", key)); // nothing in database 0
    }
}
