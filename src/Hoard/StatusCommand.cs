using System.CommandLine;
using StackExchange.Redis;

namespace Hoard;

/// <summary>`hoard status`: the cluster's live nodes and how many blobs each holds, read from its Redis.</summary>
public static class StatusCommand
{
    public static Command Build()
    {
        var command = new Command("status", "Show the cluster's live nodes and the blobs each holds (reads --cluster-redis / HOARD_CLUSTER_REDIS).");
        var redis = new Option<string>("--cluster-redis") { Description = "redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss://… (default HOARD_CLUSTER_REDIS)" };
        command.Options.Add(redis);
        command.SetAction(async (parse, ct) =>
        {
            var url = parse.GetValue(redis) ?? Environment.GetEnvironmentVariable("HOARD_CLUSTER_REDIS");
            if (url is null || Hoard.Core.Cluster.RedisUrl.Problem(url) is not null)
            {
                await Console.Error.WriteLineAsync("hoard: --cluster-redis redis://[USER:PASSWORD@]HOST:PORT[/DB] (or rediss:// for TLS) is needed");
                return 2;
            }
            try
            {
                var config = Hoard.Core.Cluster.RedisUrl.Parse(url);
                config.ConnectTimeout = 3000;
                await using var mux = await ConnectionMultiplexer.ConnectAsync(config);
                var nodes = await Hoard.Core.Cluster.ClusterNode.StatusAsync(mux.GetDatabase(), mux.GetServers()[0]);
                Console.WriteLine($"{nodes.Count} live node(s)");
                foreach (var (id, nodeUrl, blobs) in nodes)
                {
                    Console.WriteLine($"{id}  {nodeUrl}  {blobs} blob(s)");
                }
                return 0;
            }
            catch (RedisException e)
            {
                await Console.Error.WriteLineAsync("hoard: " + e.Message);
                return 1;
            }
        });
        return command;
    }
}
