namespace Hoard.Tests.Infrastructure;

/// <summary>
/// Tests that load the whole machine (100,000 requests, floods) or start many processes at once (clusters of nodes,
/// registries, git servers): they run one at a time, after the others, so the load one makes is not mistaken by a
/// timing-sensitive test running beside it for a fault of its own. On 2 cores this costs well under a minute.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "alone";
}
